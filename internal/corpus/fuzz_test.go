package corpus_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

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
