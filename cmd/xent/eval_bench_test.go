package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"

	"github.com/xentlab/xent/batch"
	"github.com/xentlab/xent/cpu"
	"github.com/xentlab/xent/device"
	"github.com/xentlab/xent/internal/corpus/corpustest"
	"github.com/xentlab/xent/internal/gen"
	"github.com/xentlab/xent/internal/npyfile"
)

// BenchmarkEval is the main job end to end: xent eval of a float32 .npy
// dump in the page cache (5000×50257, 1 GB; XENT_EVAL_ROWS sets the rows,
// XENT_EVAL_DUMP names a dump of your own), beside a plain sequential read
// of the same file (4 MiB reads) and the kernel alone on the matrix in
// memory, all as MB/s of the file, so that eval's fraction of the slower
// of the two reads off one run:
//
//	go test -run XXX -bench Eval -benchtime 10x ./cmd/xent
func BenchmarkEval(b *testing.B) {
	logits, targets := dump(b)
	f, err := os.Open(logits)
	if err != nil {
		b.Fatal(err)
	}
	// In the page cache, as a dump that was just read is.
	size, err := io.Copy(io.Discard, f)
	f.Close()
	if err != nil {
		b.Fatal(err)
	}
	b.Run("read", func(b *testing.B) {
		b.SetBytes(size)
		buf := make([]byte, 4<<20)
		for b.Loop() {
			f, err := os.Open(logits)
			if err != nil {
				b.Fatal(err)
			}
			for {
				if _, err := f.Read(buf); err == io.EOF {
					break
				} else if err != nil {
					b.Fatal(err)
				}
			}
			f.Close()
		}
	})
	tids, tlp := teacherFiles(b, logits, 20)
	for _, c := range []struct {
		name  string
		flags []string
	}{{"eval", nil}, {"eval/calibration", []string{"--calibration"}}, {"eval/topk", []string{"--topk=1,5,10"}},
		{"eval/temperature", []string{"--temperature=0.7"}}, {"eval/teacher", []string{"--teacher-ids", tids, "--teacher-logprobs", tlp}}} {
		b.Run(c.name, func(b *testing.B) { // the flags' cost: beside eval in one run
			b.SetBytes(size)
			args := append([]string{"--logits", logits, "--targets", targets, "--device", "cpu", "--json"}, c.flags...)
			for b.Loop() {
				if err := eval(context.Background(), args, io.Discard, io.Discard); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("kernel", func(b *testing.B) {
		b.SetBytes(size)
		lf, err := npyfile.Open(logits)
		if err != nil {
			b.Fatal(err)
		}
		defer lf.Close()
		rows, cols, err := lf.Matrix()
		if err != nil {
			b.Fatal(err)
		}
		x := make([]float32, rows*cols)
		if err := lf.Rows(x, 0, rows); err != nil {
			b.Fatal(err)
		}
		tg, err := npyfile.Read(targets, (*npyfile.File).Targets)
		if err != nil {
			b.Fatal(err)
		}
		ce, err := batch.New(device.NewCPU(cpu.Default()))
		if err != nil {
			b.Fatal(err)
		}
		m := batch.NewMatrix(x, rows, cols)
		for b.Loop() {
			if _, err := ce.Forward(context.Background(), m, tg); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// teacherFiles writes a teacher's top-k for the rows of the dump logits:
// k distinct random classes a row and their log-probabilities (a random
// distribution over them and a tail), as .npy files, and returns their
// paths.
func teacherFiles(b *testing.B, logits string, k int) (ids, logprobs string) {
	lf, err := npyfile.Open(logits)
	if err != nil {
		b.Fatal(err)
	}
	rows, cols, err := lf.Matrix()
	lf.Close()
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 4))
	ti, tl := make([][]int64, rows), make([][]float32, rows)
	for i := range rows {
		ti[i], tl[i] = make([]int64, k), make([]float32, k)
		seen := map[int64]bool{}
		for j := range k {
			c := int64(r.IntN(cols))
			for seen[c] {
				c = int64(r.IntN(cols))
			}
			seen[c] = true
			ti[i][j], tl[i][j] = c, float32(-4-3*r.Float64()) // at most 20·e^-4 = 0.37 of the mass
		}
	}
	dir := b.TempDir()
	ids, logprobs = filepath.Join(dir, "ids.npy"), filepath.Join(dir, "lp.npy")
	corpustest.SaveNpy(b, ids, ti)
	corpustest.SaveNpy(b, logprobs, tl)
	return ids, logprobs
}

// dump returns the paths of the benchmark's logits (cachedDump, or the
// user's) and of targets drawn for its rows.
func dump(b *testing.B) (logits, targets string) {
	rows, cols := 5000, 50257
	if v, err := strconv.Atoi(os.Getenv("XENT_EVAL_ROWS")); err == nil && v > 0 {
		rows = v
	}
	dir := b.TempDir()
	logits = os.Getenv("XENT_EVAL_DUMP")
	if logits != "" {
		lf, err := npyfile.Open(logits)
		if err != nil {
			b.Fatal(err)
		}
		rows, cols, err = lf.Matrix()
		lf.Close()
		if err != nil {
			b.Fatal(err)
		}
	} else if logits = cachedDump(b, rows, cols, 1); logits == "" {
		b.Fatal("no dump")
	}
	t64 := make([]int64, rows)
	for i, t := range gen.Targets(rows, cols, 2) {
		t64[i] = int64(t)
	}
	targets = filepath.Join(dir, "targets.npy")
	if err := saveNpy(targets, t64); err != nil {
		b.Fatal(err)
	}
	runtime.GC() // the generated matrix is garbage now
	return logits, targets
}

func cachedDump(b *testing.B, rows, cols int, seed int) string {
	return corpustest.CachedDump(b, rows, cols, seed)
}

// saveNpy writes v to path as the commands write their outputs.
func saveNpy(path string, v any) error {
	outs, err := plan(nil, named{"(benchmark)", path})
	if err != nil {
		return err
	}
	return writeNpy(outs[0], v)
}

// BenchmarkManifest is a corpus's evaluation: 8 files of 1024 × 32000
// float32 logits in the page cache (written once into the user's cache
// directory), and 8 files of 1024 × 768 hidden states through one
// 32000 × 768 classifier, each evaluated by one xent eval per file
// ("single", the files one after another) and by one xent eval --manifest
// ("manifest"), so that the manifest's cost over the single runs reads off
// one run:
//
//	go test -run XXX -bench Manifest -benchtime 3x ./cmd/xent
func BenchmarkManifest(b *testing.B) {
	const files, rows, vocab, features = 8, 1024, 32000, 768
	dir := b.TempDir()
	var logits, hidden, singles, hiddenSingles [][]string
	tg := make([]int64, rows)
	for i, t := range gen.Targets(rows, vocab, 3) {
		tg[i] = int64(t)
	}
	targets := filepath.Join(dir, "t.npy")
	if err := saveNpy(targets, tg); err != nil {
		b.Fatal(err)
	}
	w := filepath.Join(dir, "w.npy")
	h := filepath.Join(dir, "h.npy")
	r := rand.New(rand.NewPCG(4, 5))
	hd, wd, _ := gen.Linear(r, rows, features, vocab, 1, 0.04)
	if err := saveNpy(w, rowsOf(batch.NewMatrix(wd, vocab, features))); err != nil {
		b.Fatal(err)
	}
	if err := saveNpy(h, rowsOf(batch.NewMatrix(hd, rows, features))); err != nil {
		b.Fatal(err)
	}
	for k := range files {
		l := cachedDump(b, rows, vocab, 10+k)
		logits = append(logits, []string{"logits", l})
		singles = append(singles, []string{"--logits", l, "--targets", targets})
		hidden = append(hidden, []string{"hidden", h})
		hiddenSingles = append(hiddenSingles, []string{"--hidden", h, "--weight", w, "--targets", targets})
	}
	manifest := func(name string, lines [][]string, extra string) string {
		var text string
		for _, l := range lines {
			text += fmt.Sprintf("{%q: %q, \"targets\": %q%s}\n", l[0], l[1], targets, extra)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			b.Fatal(err)
		}
		return p
	}
	ml := manifest("logits.jsonl", logits, "")
	mh := manifest("hidden.jsonl", hidden, fmt.Sprintf(", \"weight\": %q", w))
	for _, f := range append(logits, []string{"", w}) { // into the page cache
		if _, err := os.ReadFile(f[1]); err != nil {
			b.Fatal(err)
		}
	}
	run := func(b *testing.B, args ...string) {
		if err := eval(context.Background(), append(args, "--device", "cpu", "--json"), io.Discard, io.Discard); err != nil {
			b.Fatal(err)
		}
	}
	for _, c := range []struct {
		name     string
		singles  [][]string
		manifest string
	}{{"logits", singles, ml}, {"hidden", hiddenSingles, mh}} {
		b.Run(c.name+"/single", func(b *testing.B) {
			for b.Loop() {
				for _, s := range c.singles {
					run(b, s...)
				}
			}
		})
		b.Run(c.name+"/manifest", func(b *testing.B) {
			for b.Loop() {
				run(b, "--manifest", c.manifest)
			}
		})
	}
}
