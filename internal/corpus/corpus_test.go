package corpus_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/batch"
	"github.com/xentlab/xent/cpu"
	"github.com/xentlab/xent/device"
	"github.com/xentlab/xent/internal/corpus"
	"github.com/xentlab/xent/internal/corpus/corpustest"
	"github.com/xentlab/xent/internal/seed"
)

// run evaluates lines with cfg on the CPU and returns their merged
// statistics.
func run(t *testing.T, cfg corpus.Config, lines []corpus.Line) batch.Stats {
	st, _ := runPositions(t, cfg, lines)
	return st
}

// runPositions is run, and the loss by position with cfg.SeqLen.
func runPositions(t *testing.T, cfg corpus.Config, lines []corpus.Line) (batch.Stats, *corpus.Positions) {
	t.Helper()
	ev := corpus.New(cfg)
	defer ev.Close()
	dev := device.NewCPU(cpu.Default())
	var total corpus.Total
	for _, l := range lines {
		_, err := ev.Check(l)
		require.NoError(t, err)
	}
	for _, l := range lines {
		r, err := ev.Eval(context.Background(), dev, l)
		require.NoError(t, err)
		require.Nil(t, r.Rows, "the rows kept for the positions alone are dropped")
		require.Equal(t, cfg.SeqLen > 0, r.Positions != nil)
		require.NoError(t, total.Add(r))
	}
	require.Equal(t, len(lines), total.Files)
	return total.Stats, total.Positions
}

// TestPositions: the mean loss at each position t = row mod T of each
// file is the float64 reference's (token weights and ignored rows
// included; a position where nothing counts is NaN), for T longer and
// shorter than the files; the partials of 3 shards merge into the single
// run's.
func TestPositions(t *testing.T) {
	dir := t.TempDir()
	path, weight, want := corpustest.Write(t, dir, seed.New(t))
	m, err := corpus.ReadManifest(path, weight)
	require.NoError(t, err)
	for _, n := range []int{1, 5, 64} {
		cfg := corpus.Config{IgnoreIndex: batch.DefaultIgnoreIndex, SeqLen: n}
		st, pos := runPositions(t, cfg, m.Lines)
		want.Check(t, st, 1e-5)
		ref := want.ByPosition(n)
		got := pos.Means()
		require.Len(t, got, n)
		for k := range ref {
			if math.IsNaN(ref[k]) {
				require.True(t, math.IsNaN(got[k]), "position %d of %d: %v, want NaN (nothing counts)", k, n, got[k])
				continue
			}
			require.InEpsilon(t, ref[k], got[k], 1e-5, "position %d of %d", k, n)
		}
		if n == 64 {
			require.True(t, math.IsNaN(got[63]), "no file has 64 rows")
		}
		var ps []corpus.Partial
		for i := range 3 {
			_, p := runPositions(t, cfg, m.Shard(i, 3))
			ps = append(ps, corpus.Partial{Format: corpus.Format, Manifest: m.SHA256, Lines: len(m.Lines), Shard: i, Shards: 3,
				Files: len(m.Shard(i, 3)), Flags: cfg.Flags(weight), Positions: p})
		}
		merged, err := corpus.Merge(ps, []string{"a", "b", "c"})
		require.NoError(t, err)
		for k, v := range merged.Positions.Means() {
			if !math.IsNaN(got[k]) {
				require.InEpsilon(t, got[k], v, 1e-12, "position %d of %d", k, n)
			}
		}
	}
	// Partials with and without positions do not merge; of other lengths
	// (sequences of files of other shapes), they merge position by
	// position, in either order; sums and denominators of other lengths
	// are refused.
	p := func(pos *corpus.Positions) corpus.Partial {
		return corpus.Partial{Format: corpus.Format, Lines: 2, Shards: 2, Files: 1, Positions: pos}
	}
	b := p(&corpus.Positions{Sum: []corpus.Float{10, 20, 30}, Denom: []corpus.Float{2, 2, 2}})
	b.Shard = 1
	_, err = corpus.Merge([]corpus.Partial{p(nil), b}, []string{"a", "b"})
	require.ErrorContains(t, err, "b: a total with the loss by position merged with one without (merging with a)")
	for _, order := range [][2]int{{0, 1}, {1, 0}} {
		two := p(&corpus.Positions{Sum: []corpus.Float{1, 2}, Denom: []corpus.Float{1, 1}})
		ps := []corpus.Partial{two, b}
		merged, err := corpus.Merge([]corpus.Partial{ps[order[0]], ps[order[1]]}, []string{"a", "b"})
		require.NoError(t, err)
		require.Equal(t, []corpus.Float{11, 22, 30}, merged.Positions.Sum)
		require.Equal(t, []corpus.Float{3, 3, 2}, merged.Positions.Denom)
		require.Equal(t, []float64{11. / 3, 22. / 3, 15}, merged.Positions.Means())
	}
	_, err = corpus.Merge([]corpus.Partial{p(&corpus.Positions{Sum: []corpus.Float{1, 2}, Denom: []corpus.Float{1}}), b}, []string{"a", "b"})
	require.ErrorContains(t, err, "with one of 2 and 1")
}

// TestManifest: the seven lines evaluated in one run give the float64
// reference's statistics, in every row-chunk size (the float64 line is
// streamed); 1, 2, 3 and 7 shards' partials, merged in any order, give
// the single run's: counts exactly, sums within 1e-12.
func TestManifest(t *testing.T) {
	dir := t.TempDir()
	path, weight, want := corpustest.Write(t, dir, seed.New(t))
	m, err := corpus.ReadManifest(path, weight)
	require.NoError(t, err)
	require.Len(t, m.Lines, want.Lines)
	require.Equal(t, 5, m.Lines[3].N, "the blank line counts in line numbers")
	cfg := corpus.Config{IgnoreIndex: batch.DefaultIgnoreIndex}
	var whole batch.Stats
	for _, chunk := range []int{corpus.ChunkBytes, 4 * corpustest.Classes * 3, 1} {
		func() {
			defer func(old int) { corpus.ChunkBytes = old }(corpus.ChunkBytes)
			corpus.ChunkBytes = chunk
			st := run(t, cfg, m.Lines)
			want.Check(t, st, 1e-5)
			whole = st
		}()
	}
	flags := cfg.Flags(weight)
	for _, n := range []int{1, 2, 3, 7} {
		ps := make([]corpus.Partial, n)
		names := make([]string, n)
		for i := range n {
			ls := m.Shard(i, n)
			// Written out and read back: the JSON carries the sums exactly.
			p := corpus.Partial{Format: corpus.Format, Manifest: m.SHA256, Lines: len(m.Lines), Shard: i, Shards: n,
				Files: len(ls), Flags: flags, Stats: corpus.StatsOf(run(t, cfg, ls)), Device: "cpu"}
			k := n - 1 - i // merged in reverse
			names[k] = filepath.Join(dir, fmt.Sprintf("S%d-%d.json", n, i))
			writePartial(t, names[k], p)
			ps[k], err = corpus.ReadPartial(names[k])
			require.NoError(t, err)
			require.Equal(t, p, ps[k])
		}
		merged, err := corpus.Merge(ps, names)
		require.NoError(t, err, "%d shards", n)
		got := merged.Stats.Batch()
		require.Equal(t, whole.Rows, got.Rows)
		require.Equal(t, whole.Counted, got.Counted)
		require.Equal(t, whole.Correct, got.Correct)
		require.InEpsilon(t, whole.Sum, got.Sum, 1e-12, "%d shards", n)
		require.InEpsilon(t, whole.Denom, got.Denom, 1e-12, "%d shards", n)
		require.Equal(t, want.Lines, merged.Files)
		require.Equal(t, 1, merged.Shards)
	}
}

func writePartial(t *testing.T, path string, p corpus.Partial) {
	b, err := json.Marshal(p)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, b, 0o644))
}

// TestMergeRefuses: partials of another manifest or other flags, and a
// missing or repeated shard, are refused, each naming the file.
func TestMergeRefuses(t *testing.T) {
	flags := corpus.Config{IgnoreIndex: -100}.Flags("")
	p := func(shard, shards int) corpus.Partial {
		return corpus.Partial{Format: corpus.Format, Manifest: "abc", Lines: 4, Shard: shard, Shards: shards,
			Files: 4 / shards, Flags: flags, Stats: corpus.Stats{Rows: 3, Counted: 2, Sum: 1.5, Denom: 2, Correct: 1}}
	}
	other := p(1, 2)
	other.Manifest = "abd"
	smoothed := p(1, 2)
	smoothed.Flags = corpus.Config{IgnoreIndex: -100, Smoothing: 0.1}.Flags("")
	tempered := p(1, 2)
	tempered.Flags = corpus.Config{IgnoreIndex: -100, Temperature: 2}.Flags("")
	shifted := p(1, 2)
	shifted.Flags = corpus.Config{IgnoreIndex: -100, Shift: true}.Flags("")
	require.Equal(t, flags, corpus.Config{IgnoreIndex: -100, Temperature: 1}.Flags(""), "τ = 1 is no temperature")
	for _, c := range []struct {
		ps   []corpus.Partial
		want string
	}{
		{[]corpus.Partial{p(0, 2), other}, "b.json: of another manifest"},
		{[]corpus.Partial{p(0, 2), smoothed}, "b.json: flags"},
		{[]corpus.Partial{p(0, 2), tempered}, "b.json: flags"},
		{[]corpus.Partial{p(0, 2), shifted}, "b.json: flags"},
		{[]corpus.Partial{p(0, 2), p(0, 2)}, "b.json: shard 0/2 again (it is also a.json)"},
		{[]corpus.Partial{p(0, 2)}, "shard 1/2 is missing"},
		{[]corpus.Partial{p(0, 2), p(1, 4)}, "b.json: shard 1/4, a.json is of 2 shards"},
		{nil, "no partial statistics"},
	} {
		_, err := corpus.Merge(c.ps, []string{"a.json", "b.json"}[:len(c.ps)])
		require.ErrorContains(t, err, c.want)
	}
	m, err := corpus.Merge([]corpus.Partial{p(1, 2), p(0, 2)}, []string{"a.json", "b.json"})
	require.NoError(t, err)
	require.Equal(t, corpus.Stats{Rows: 6, Counted: 4, Sum: 3, Denom: 4, Correct: 2}, m.Stats)
}

// TestFloatJSON: NaN and the infinities survive the JSON, and every
// float64 reads back to its bits.
func TestFloatJSON(t *testing.T) {
	for _, v := range []float64{math.NaN(), math.Inf(1), math.Inf(-1), 0, math.Copysign(0, -1), 1.0 / 3, math.MaxFloat64, 5e-324, -123.456e7} {
		b, err := corpus.Float(v).MarshalJSON()
		require.NoError(t, err)
		var f corpus.Float
		require.NoError(t, f.UnmarshalJSON(b))
		if math.IsNaN(v) {
			require.True(t, math.IsNaN(float64(f)))
			continue
		}
		require.Equal(t, math.Float64bits(v), math.Float64bits(float64(f)), "%s", b)
	}
	var f corpus.Float
	require.Error(t, f.UnmarshalJSON([]byte(`"12"`)), "a number as a string is not what Marshal writes")
}

// TestManifestHostile: every bad line is refused with the manifest's
// name and the line's number.
func TestManifestHostile(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ text, want string }{
		{"", "no lines"},
		{"\n\n", "no lines"},
		{`{"logits": "a.npy"}`, `:1: "targets" is required`},
		{"{\"logits\": \"a.npy\", \"targets\": \"t.npy\"}\n[1]", ":2: not a manifest line"},
		{`{"logits": "a.npy", "targets": "t.npy", "labels": "x"}`, `:1: not a manifest line (a JSON object with the keys "logits", "logits_shards", "hidden", "weight", "weight_shards", "bias", "targets", "weights", "teacher_ids", "teacher_logprobs", "bytes", "words"): json: unknown field "labels"`},
		{`{"logits": "a.npy", "targets": "t.npy"} {}`, ":1: more than one JSON value"},
		{`{"logits": "a.npy", "hidden": "h.npy", "targets": "t.npy"}`, `:1: "logits" goes without "hidden"`},
		{`{"hidden": "h.npy", "targets": "t.npy"}`, `:1: "hidden" needs "weight"`},
		{`{"targets": "t.npy"}`, `:1: "logits", "logits_shards" or "hidden" is required`},
		{`{"hidden": "h.npy", "weight_shards": ["a.npy"], "targets": "t.npy"}`, `:1: "weight_shards" names 1 files: a classifier split across files names two or more (one is "weight")`},
		{`{"hidden": "h.npy", "weight_shards": ["a.npy", ""], "targets": "t.npy"}`, `:1: "weight_shards" names an empty path`},
		{`{"hidden": "h.npy", "weight": "w.npy", "weight_shards": ["a.npy", "b.npy"], "targets": "t.npy"}`, `:1: "weight_shards" goes with "hidden", without "weight"`},
		{`{"weight_shards": ["a.npy", "b.npy"], "targets": "t.npy"}`, `:1: "weight_shards" goes with "hidden", without "weight"`},
		{`{"logits": "l.npy", "weight_shards": ["a.npy", "b.npy"], "targets": "t.npy"}`, `:1: "logits" goes without "hidden", "weight", "weight_shards" and "bias"`},
		{`{"logits_shards": ["a.npy"], "targets": "t.npy"}`, `:1: "logits_shards" names 1 files: a vocabulary split across files names two or more (one is "logits")`},
		{`{"logits_shards": [], "targets": "t.npy"}`, `:1: "logits_shards" names 0 files`},
		{`{"logits_shards": ["a.npy", ""], "targets": "t.npy"}`, `:1: "logits_shards" names an empty path`},
		{`{"logits_shards": ["a.npy", "b.npy"], "logits": "c.npy", "targets": "t.npy"}`, `:1: "logits_shards" goes without "logits", "hidden", "weight", "weight_shards" and "bias"`},
		{`{"logits_shards": ["a.npy", "b.npy"]}`, `:1: "targets" is required with "logits_shards"`},
		{`{"logits_shards": "a.npy", "targets": "t.npy"}`, ":1: not a manifest line"},
		{`{"logits": 3, "targets": "t.npy"}`, ":1: not a manifest line"},
		{`{"logits": "a.npy", "targets": "t.npy", "bytes": 2.5}`, ":1: not a manifest line"},
		{`{"logits": "a.npy", "targets": "t.npy", "bytes": -1}`, `:1: "bytes" -1: want the text's length in bytes, > 0 (or no "bytes")`},
		{"{\"logits\": \"a.npy\", \"targets\": \"t.npy\"}\n{\"logits\": \"a.npy\", \"targets\": \"t.npy\", \"bytes\": 9}", `:2: "bytes" on some lines only (line 1 has none)`},
		{"{\"logits\": \"a.npy\", \"targets\": \"t.npy\", \"bytes\": 9, \"words\": 2}\n{\"logits\": \"a.npy\", \"targets\": \"t.npy\", \"bytes\": 9}", `:2: "words" on some lines only (line 1 has them): a measure of the whole text needs every line's`},
		{`{"logits": "a.npy", "targets": "t.npy", "words": -2}`, `:1: "words" -2: want the text's length in words, > 0 (or no "words")`},
	} {
		path := filepath.Join(dir, "M.jsonl")
		require.NoError(t, os.WriteFile(path, []byte(c.text), 0o644))
		_, err := corpus.ReadManifest(path, "")
		require.ErrorContains(t, err, c.want, "%q", c.text)
		require.True(t, strings.HasPrefix(err.Error(), path), err.Error())
	}
	_, err := corpus.ReadManifest(filepath.Join(dir, "missing.jsonl"), "")
	require.ErrorContains(t, err, "missing.jsonl")
}

// TestShardParse: i/n with 0 ≤ i < n, nothing else.
func TestShardParse(t *testing.T) {
	i, n, err := corpus.ParseShard("2/7")
	require.NoError(t, err)
	require.Equal(t, [2]int{2, 7}, [2]int{i, n})
	for _, s := range []string{"7/7", "-1/2", "1/0", "1", "a/b", "1/2/3", "01/2", " 1/2", "1/2 "} {
		_, _, err := corpus.ParseShard(s)
		require.Error(t, err, s)
	}
}

// TestLineEncode: a line with every field set comes back from Encode
// through DecodeLine whole (what xent-beam's workers get of it).
func TestLineEncode(t *testing.T) {
	l := corpus.Line{From: "m.jsonl", N: 7, Logits: "l.npy", Shards: []string{"s0.npy", "s1.npy"}, Hidden: "h.npy", Weight: "w.npy",
		WeightShards: []string{"w0.npy", "w1.safetensors:lm_head.weight"}, Bias: "b.npy", Targets: "t.npy", Weights: "tw.npy",
		TeacherIDs: "i.npy", TeacherLogProbs: "lp.npy", Text: corpus.Text{Bytes: 40, Words: 9}}
	v := reflect.ValueOf(l)
	for i := range v.NumField() {
		require.False(t, v.Field(i).IsZero(), "the test's line leaves %s unset", v.Type().Field(i).Name)
	}
	got, err := corpus.DecodeLine(l.Encode())
	require.NoError(t, err)
	require.Equal(t, l, got)
}
