package pipeline_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/runners/prism"

	"github.com/xentlab/xent/batch"
	"github.com/xentlab/xent/beam/pipeline"
	"github.com/xentlab/xent/cpu"
	"github.com/xentlab/xent/device"
	"github.com/xentlab/xent/internal/corpus"
	"github.com/xentlab/xent/internal/corpus/corpustest"
)

// BenchmarkPipeline is BenchmarkManifest's corpus (./cmd/xent: 8 files of
// 1024 × 32000 float32 logits in the page cache) evaluated by the
// pipeline on prism, in this process, and by the manifest's loop (what
// xent eval --manifest runs), side by side:
//
//	go test -run XXX -bench Pipeline -benchtime 3x ./pipeline
func BenchmarkPipeline(b *testing.B) {
	const files, rows, vocab = 8, 1024, 32000
	dir := b.TempDir()
	tg := make([]int32, rows)
	for i := range tg {
		tg[i] = int32(i * 7919 % vocab)
	}
	targets := filepath.Join(dir, "t.npy")
	corpustest.SaveNpy(b, targets, tg)
	var text string
	for k := range files {
		l := corpustest.CachedDump(b, rows, vocab, 10+k)
		if _, err := os.ReadFile(l); err != nil { // into the page cache
			b.Fatal(err)
		}
		text += fmt.Sprintf("{\"logits\": %q, \"targets\": %q}\n", l, targets)
	}
	path := filepath.Join(dir, "M.jsonl")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		b.Fatal(err)
	}
	m, err := corpus.ReadManifest(path, "")
	if err != nil {
		b.Fatal(err)
	}
	cfg := corpus.Config{IgnoreIndex: batch.DefaultIgnoreIndex}
	b.Run("manifest", func(b *testing.B) {
		for b.Loop() {
			ev := corpus.New(cfg)
			dev := device.NewCPU(cpu.Default())
			for _, l := range m.Lines {
				if _, err := ev.Eval(context.Background(), dev, l); err != nil {
					b.Fatal(err)
				}
			}
			ev.Close()
		}
	})
	b.Run("prism", func(b *testing.B) {
		for b.Loop() {
			p, s := beam.NewPipelineWithRoot()
			if err := pipeline.Build(s, m, cfg, "cpu", pipeline.Out{Report: filepath.Join(dir, "R.json")}); err != nil {
				b.Fatal(err)
			}
			if _, err := prism.Execute(context.Background(), p); err != nil {
				b.Fatal(err)
			}
		}
	})
}
