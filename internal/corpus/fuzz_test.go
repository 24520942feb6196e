package corpus_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/xentlab/xent/batch"
	"github.com/xentlab/xent/internal/corpus"
)

// FuzzManifest: any bytes as a manifest are lines that make one job each
// or an error naming the manifest, never a panic: every line read names
// its rows and targets' files (or a file that holds them), its shards two
// or more and non-empty, a classifier for hidden states; its paths are
// absolute or under the manifest's directory; and it comes back whole
// through Encode and DecodeLine (what xent-beam's workers get).
func FuzzManifest(f *testing.F) {
	for _, s := range []string{
		`{"logits": "a.npy", "targets": "t.npy"}`,
		`{"logits": "a.safetensors:logits"}`,
		`{"logits_shards": ["a.npy", "b.npy"], "targets": "t.npy", "teacher_ids": "i.npy", "teacher_logprobs": "l.npy"}`,
		`{"hidden": "h.npy", "weight_shards": ["w0.npy", "w1.safetensors:lm_head.weight"], "bias": "b.npy", "targets": "t.npy", "bytes": 40, "words": 9}`,
		"{\"hidden\": \"h.npy\", \"targets\": \"t.npy\"}\n\n{\"hidden\": \"/abs/h.npy\", \"weight\": \"model/\", \"targets\": \"t.npy\", \"weights\": \"tw.npy\"}",
		`{"logits": "a.npy", "targets": "t.npy", "bytes": 1e3}`,
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(dir, "m.jsonl")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		m, err := corpus.ReadManifest(p, "w.npy")
		if err != nil {
			if !strings.HasPrefix(err.Error(), p) {
				t.Fatalf("an error not naming the manifest: %v", err)
			}
			return
		}
		if len(m.Lines) == 0 {
			t.Fatal("a manifest of no lines read without an error")
		}
		for _, l := range m.Lines {
			rows := l.RowsFile()
			switch {
			case rows == "":
				t.Fatalf("line %d: no rows' file: %+v", l.N, l)
			case l.Targets == "" && l.Logits == "":
				t.Fatalf("line %d: no targets: %+v", l.N, l)
			case l.Shards != nil && (len(l.Shards) < 2 || slices.Contains(l.Shards, "") || l.Logits != "" || l.Hidden != ""):
				t.Fatalf("line %d: logits shards that make no vocabulary: %+v", l.N, l)
			case l.WeightShards != nil && (len(l.WeightShards) < 2 || slices.Contains(l.WeightShards, "") || l.Hidden == "" || l.Weight != ""):
				t.Fatalf("line %d: classifier shards that make no classifier: %+v", l.N, l)
			case l.Hidden != "" && l.Weight == "" && l.WeightShards == nil:
				t.Fatalf("line %d: hidden states without a classifier: %+v", l.N, l)
			case l.Bytes < 0 || l.Words < 0:
				t.Fatalf("line %d: negative text counts: %+v", l.N, l)
			}
			for _, f := range l.Files() {
				if f == "" || (!filepath.IsAbs(f) && f != "w.npy") {
					t.Fatalf("line %d: a path neither absolute nor the default weight's: %q", l.N, f)
				}
			}
			got, err := corpus.DecodeLine(l.Encode())
			if err != nil {
				t.Fatalf("line %d: %v", l.N, err)
			}
			if !linesEqual(got, l) {
				t.Fatalf("line %d: %+v came back as %+v", l.N, l, got)
			}
		}
	})
}

// linesEqual compares two lines field by field (a nil and an empty list
// of shards are not the same line).
func linesEqual(a, b corpus.Line) bool {
	return a.From == b.From && a.N == b.N && a.Logits == b.Logits && slices.Equal(a.Shards, b.Shards) && (a.Shards == nil) == (b.Shards == nil) &&
		a.Hidden == b.Hidden && a.Weight == b.Weight && slices.Equal(a.WeightShards, b.WeightShards) && (a.WeightShards == nil) == (b.WeightShards == nil) &&
		a.Bias == b.Bias && a.Targets == b.Targets && a.Weights == b.Weights && a.TeacherIDs == b.TeacherIDs && a.TeacherLogProbs == b.TeacherLogProbs && a.Text == b.Text
}

// FuzzPartials: any bytes as two shards' partial statistics (xent eval
// --stats-out, xent compare's) are read, merged and reported, or refused
// with an error (ReadPartial's naming the file), never a panic; what
// merges gives a report JSON writes. The seeds are an evaluation's two
// shards with every sum (the loss by position with its spreads, the
// standard errors', the calibration, the ranks, a teacher's KL) and a
// comparison's.
func FuzzPartials(f *testing.F) {
	sp := func(n int64) corpus.Spread { return corpus.Spread{Clusters: n, S: 3, W: 4, SS: 5, SW: 6, WW: 7} }
	rs, err := batch.NewRankStats([]int{1, 5})
	if err != nil {
		f.Fatal(err)
	}
	rs.TopK[0], rs.TopK[1], rs.RR, rs.Counted = 2, 3, 2.5, 4
	total := func(seq int) corpus.Total {
		p := corpus.NewPositions(seq)
		p.Spread = make([]corpus.Spread, seq)
		for t := range seq {
			p.Sum[t], p.Denom[t], p.Spread[t] = 1.5, 2, sp(2)
		}
		s, a, kl, mr, en := sp(2), sp(2), sp(2), sp(2), sp(2)
		return corpus.Total{Stats: batch.Stats{Rows: 6, Counted: 4, Sum: 5.5, Denom: 4, Correct: 2, KL: 0.75}, Positions: p, Spread: &s, AccSpread: &a,
			TopKSpread: []corpus.Spread{sp(2), sp(2)}, MRRSpread: &mr, EntSpread: &en, KLSpread: &kl, Calibration: &batch.Calibration{}, Ranks: &rs, Distill: true, Files: 1}
	}
	flags := map[string]string{"stderr": "1"}
	var seeds [][2][]byte
	for _, seqs := range [][2]int{{3, 3}, {3, 5}} {
		a, err := json.Marshal(corpus.PartialOf(total(seqs[0]), "sha", 2, 0, 2, flags, "cpu"))
		if err != nil {
			f.Fatal(err)
		}
		b, err := json.Marshal(corpus.PartialOf(total(seqs[1]), "sha", 2, 1, 2, flags, "cpu"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(a, b)
		seeds = append(seeds, [2][]byte{a, b})
	}
	pair := func(shard int) []byte {
		t := total(4)
		t.Distill, t.KLSpread, t.Stats.KL = false, nil, 0
		dp := corpus.NewPositions(4)
		dp.Spread = make([]corpus.Spread, 4)
		mr := sp(2)
		q := corpus.Pair{A: t, B: t, Diffs: corpus.Diffs{Diff: sp(2), AccDiff: sp(2), TopKDiff: []corpus.Spread{sp(2), sp(2)}, MRRDiff: &mr, DiffPositions: dp, Lower: 1}}
		b, err := json.Marshal(corpus.PartialOfPair(q, "a", "b", 2, shard, 2, flags, "cpu"))
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	f.Add(pair(0), pair(1))
	seeds = append(seeds, [2][]byte{pair(0), pair(1)})
	dir := f.TempDir()
	for _, seed := range seeds {
		if _, err := mergeReport(dir, seed[0], seed[1]); err != nil {
			f.Fatalf("a seed does not merge: %v", err)
		}
	}
	f.Fuzz(func(t *testing.T, a, b []byte) {
		_, err := mergeReport(dir, a, b)
		var read *readError
		if errors.As(err, &read) && !strings.HasPrefix(read.err.Error(), read.name) {
			t.Fatalf("an error not naming the file: %v", read.err)
		}
	})
}

// A readError is ReadPartial's error of the file name.
type readError struct {
	name string
	err  error
}

func (e *readError) Error() string { return e.err.Error() }

// mergeReport writes a and b as two partial statistics files in dir,
// reads and merges them, and returns the merged statistics' report as
// JSON, or the first error (ReadPartial's as a *readError).
func mergeReport(dir string, a, b []byte) ([]byte, error) {
	var ps []corpus.Partial
	var names []string
	for i, data := range [][]byte{a, b} {
		name := filepath.Join(dir, fmt.Sprintf("S%d.json", i))
		if err := os.WriteFile(name, data, 0o644); err != nil {
			return nil, err
		}
		p, err := corpus.ReadPartial(name)
		if err != nil {
			return nil, &readError{name, err}
		}
		ps, names = append(ps, p), append(names, name)
	}
	m, err := corpus.Merge(ps, names)
	if err != nil {
		return nil, err
	}
	var report any
	if m.Pair != nil {
		q, err := m.PairOf()
		if err != nil {
			return nil, err
		}
		report = corpus.PairReportOf(q, m.Device)
	} else {
		tot, err := m.Total()
		if err != nil {
			return nil, err
		}
		report = corpus.ReportOf(tot, m.Device)
	}
	return json.Marshal(report)
}
