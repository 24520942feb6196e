package pipeline_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/options/jobopts"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/runners/prism"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/runners/universal"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/runners/vet"
	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/batch"
	"github.com/xentlab/xent/beam/pipeline"
	"github.com/xentlab/xent/cpu"
	"github.com/xentlab/xent/device"
	"github.com/xentlab/xent/internal/corpus"
	"github.com/xentlab/xent/internal/corpus/corpustest"
	"github.com/xentlab/xent/internal/seed"
)

func TestMain(m *testing.M) {
	flag.Parse()
	beam.Init()
	os.Exit(m.Run())
}

// single evaluates the manifest's lines one after another on the CPU, as
// xent eval --manifest does, and returns its report.
func single(t *testing.T, m corpus.Manifest, cfg corpus.Config) corpus.Report {
	ev := corpus.New(cfg)
	defer ev.Close()
	dev := device.NewCPU(cpu.Default())
	var total corpus.Total
	for _, l := range m.Lines {
		r, err := ev.Eval(context.Background(), dev, l)
		require.NoError(t, err)
		require.NoError(t, total.Add(r))
	}
	return corpus.ReportOf(total, "")
}

// manifest writes the corpustest manifest into a temporary directory and
// reads it.
func manifest(t *testing.T) (dir string, m corpus.Manifest, w corpustest.Want) {
	dir = t.TempDir()
	path, weight, w := corpustest.Write(t, dir, seed.New(t))
	m, err := corpus.ReadManifest(path, weight)
	require.NoError(t, err)
	return dir, m, w
}

// run builds the pipeline of the corpustest manifest, runs it with
// execute, and returns its report, the single run's and the float64
// reference.
func run(t *testing.T, cfg corpus.Config, execute func(context.Context, *beam.Pipeline) (beam.PipelineResult, error)) (got, want corpus.Report, w corpustest.Want) {
	dir, m, w := manifest(t)
	out := filepath.Join(dir, "R.json")
	p, s := beam.NewPipelineWithRoot()
	require.NoError(t, pipeline.Build(s, m, cfg, "cpu", pipeline.Out{Report: out}))
	_, err := execute(context.Background(), p)
	require.NoError(t, err)
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &got))
	return got, single(t, m, cfg), w
}

// check requires the pipeline's report to be the single run's: counts
// exactly, sums and means within 1e-12 (added in Beam's order); and the
// float64 reference's within 1e-5.
func check(t *testing.T, got, want corpus.Report, w corpustest.Want) {
	t.Helper()
	require.Equal(t, want.Tokens, got.Tokens)
	require.Equal(t, want.Ignored, got.Ignored)
	require.Equal(t, *want.Accuracy, *got.Accuracy, "the same counts")
	for _, c := range []struct {
		name      string
		want, got *float64
	}{{"sum", want.Sum, got.Sum}, {"loss", want.Loss, got.Loss}, {"z-loss", want.ZLoss, got.ZLoss}} {
		require.NotNil(t, c.got, c.name)
		if *c.want == 0 {
			require.Zero(t, *c.got, c.name)
			continue
		}
		require.InEpsilon(t, *c.want, *c.got, 1e-12, c.name)
	}
	require.Len(t, got.ByPosition, len(want.ByPosition))
	for k := range want.ByPosition {
		require.InEpsilon(t, *want.ByPosition[k], *got.ByPosition[k], 1e-12, "position %d", k)
	}
	require.Contains(t, got.Device, "cpu")
	// The reference has no z-loss: the sum less its z-loss part.
	sum := *got.Sum - *got.ZLoss
	correct := int64(*got.Accuracy*float64(got.Tokens) + 0.5)
	w.Check(t, batch.Stats{Rows: got.Tokens + got.Ignored, Counted: got.Tokens, Correct: correct, Sum: sum, Denom: *got.Sum / *got.Loss}, 1e-5)
	if n := len(got.ByPosition); n > 0 && *got.ZLoss == 0 { // the reference's rows have no z-loss
		for k, ref := range w.ByPosition(n) {
			require.InEpsilon(t, ref, *got.ByPosition[k], 1e-5, "position %d", k)
		}
	}
}

// TestPrism: the pipeline on Beam's embedded runner (prism, in process,
// workers in loopback) gives the single run's report, the loss by
// position, the rank metrics and the calibration included. A DoFn's or an accumulator's unexported field, or a
// closure, would change it.
func TestPrism(t *testing.T) {
	got, want, w := run(t, corpus.Config{IgnoreIndex: batch.DefaultIgnoreIndex, ZLoss: 1e-4, SeqLen: 3, TopK: []int{1, 3}, Calibration: true}, prism.Execute)
	check(t, got, want, w)
	// The rank metrics and the calibration, merged by the accumulators.
	require.Equal(t, want.TopK, got.TopK)
	require.NotNil(t, got.MRR)
	require.InEpsilon(t, float64(*want.MRR), float64(*got.MRR), 1e-12)
	require.InEpsilon(t, float64(*want.Entropy), float64(*got.Entropy), 1e-12)
	require.InDelta(t, float64(*want.ECE), float64(*got.ECE), 1e-12)
	require.Len(t, got.Calibration, batch.CalibrationBins)
	for k, b := range want.Calibration {
		require.Equal(t, b.Rows, got.Calibration[k].Rows, "bin %d", k)
	}
}

// TestPrismTeacher: a manifest whose lines name a teacher's top-k (the
// PyTorch golden files of distillation) gives the single run's "kl" on
// prism, merged by the accumulators.
func TestPrismTeacher(t *testing.T) {
	dir := t.TempDir()
	g := func(name string) string {
		p, err := filepath.Abs(filepath.Join("..", "..", "testdata", "golden", "distill", name))
		require.NoError(t, err)
		return p
	}
	var lines []byte
	for _, c := range []string{"near", "confident", "near"} {
		b, err := json.Marshal(map[string]string{"logits": g(c + "_logits.npy"), "targets": g(c + "_targets.npy"),
			"teacher_ids": g(c + "_ids.npy"), "teacher_logprobs": g(c + "_logprobs.npy")})
		require.NoError(t, err)
		lines = append(append(lines, b...), '\n')
	}
	path := filepath.Join(dir, "M.jsonl")
	require.NoError(t, os.WriteFile(path, lines, 0o644))
	m, err := corpus.ReadManifest(path, "")
	require.NoError(t, err)
	cfg := corpus.Config{IgnoreIndex: batch.DefaultIgnoreIndex, Distill: m.Distill()}
	require.True(t, cfg.Distill)
	out := filepath.Join(dir, "R.json")
	p, s := beam.NewPipelineWithRoot()
	require.NoError(t, pipeline.Build(s, m, cfg, "cpu", pipeline.Out{Report: out}))
	_, err = prism.Execute(context.Background(), p)
	require.NoError(t, err)
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	var got corpus.Report
	require.NoError(t, json.Unmarshal(b, &got))
	want := single(t, m, cfg)
	require.NotNil(t, got.KL)
	require.InEpsilon(t, float64(*want.KL), float64(*got.KL), 1e-12)
	require.InEpsilon(t, *want.Loss, *got.Loss, 1e-12)
}

// TestJobServer: the pipeline submitted through Beam's portable job API,
// as to a Flink or Spark job server (--runner universal --endpoint
// --environment_type loopback), here a prism job server on a port of its
// own.
func TestJobServer(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l, err := net.Listen("tcp", "localhost:0") // a free port
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	_, err = prism.CreateJobServer(ctx, prism.Options{Port: port})
	require.NoError(t, err)
	defer func(e, env string) { *jobopts.Endpoint, *jobopts.EnvironmentType = e, env }(*jobopts.Endpoint, *jobopts.EnvironmentType)
	*jobopts.Endpoint, *jobopts.EnvironmentType = fmt.Sprintf("localhost:%d", port), "loopback"
	got, want, w := run(t, corpus.Config{IgnoreIndex: batch.DefaultIgnoreIndex, SeqLen: 4}, universal.Execute)
	check(t, got, want, w)
}

// TestRegistered: the pipeline (with per-row losses and each line's
// report) through Beam's vet runner, which fails on any function or type
// not registered (a closure cannot be).
func TestRegistered(t *testing.T) {
	dir, m, _ := manifest(t)
	rows, err := pipeline.NewRows(dir, m)
	require.NoError(t, err)
	p, s := beam.NewPipelineWithRoot()
	require.NoError(t, pipeline.Build(s, m, corpus.Config{IgnoreIndex: -100}, "cpu", pipeline.Out{Report: filepath.Join(dir, "R.json"), Lines: filepath.Join(dir, "L.jsonl"), Rows: rows}))
	_, err = vet.Execute(context.Background(), p)
	require.NoError(t, err)
}

// TestSpread: the lines reach EvalFn through a reshuffle, so that a
// runner spreads them over its workers; without it, it fuses their
// evaluation into ReadFn's one bundle, on one worker.
func TestSpread(t *testing.T) {
	dir, m, _ := manifest(t)
	p, s := beam.NewPipelineWithRoot()
	require.NoError(t, pipeline.Build(s, m, corpus.Config{IgnoreIndex: -100}, "cpu", pipeline.Out{Report: filepath.Join(dir, "R.json")}))
	edges, _, err := p.Build()
	require.NoError(t, err)
	from := map[*graph.Node]*graph.MultiEdge{} // each node's producer
	for _, e := range edges {
		for _, o := range e.Output {
			from[o.To] = e
		}
	}
	var evals int
	for _, e := range edges {
		if e.Op != graph.ParDo {
			continue
		}
		if _, ok := e.DoFn.Recv.(*pipeline.EvalFn); ok {
			evals++
			require.Equal(t, graph.Reshuffle, from[e.Input[0].From].Op, "EvalFn's input")
		}
	}
	require.Equal(t, 1, evals)
}

// TestChanged: a manifest changed between the build (when its lines were
// checked) and the run (when a worker reads it) fails the pipeline,
// naming it, and no report is written; a manifest or a file by a
// relative path is refused by Build.
func TestChanged(t *testing.T) {
	dir, m, _ := manifest(t)
	path, weight := m.Path, m.Weight
	out := filepath.Join(dir, "R.json")
	p, s := beam.NewPipelineWithRoot()
	require.NoError(t, pipeline.Build(s, m, corpus.Config{IgnoreIndex: -100}, "cpu", pipeline.Out{Report: out}))
	text, err := os.ReadFile(path)
	require.NoError(t, err)
	lines := strings.SplitAfter(string(text), "\n")
	lines[0], lines[1] = lines[1], lines[0]
	require.NoError(t, os.WriteFile(path, []byte(strings.Join(lines, "")), 0o644))
	_, err = prism.Execute(context.Background(), p)
	require.ErrorContains(t, err, path+" changed since the pipeline was built")
	require.NoFileExists(t, out)

	t.Chdir(dir)
	m, err = corpus.ReadManifest(filepath.Base(path), weight)
	require.NoError(t, err)
	_, s = beam.NewPipelineWithRoot()
	require.ErrorContains(t, pipeline.Build(s, m, corpus.Config{IgnoreIndex: -100}, "cpu", pipeline.Out{Report: out}), `the manifest "M.jsonl": not an absolute path`)
	m, err = corpus.ReadManifest(path, filepath.Base(weight))
	require.NoError(t, err)
	require.ErrorContains(t, pipeline.Build(s, m, corpus.Config{IgnoreIndex: -100}, "cpu", pipeline.Out{Report: out}), "is not an absolute path")
	m.Path = ""
	require.ErrorContains(t, pipeline.Build(s, m, corpus.Config{IgnoreIndex: -100}, "cpu", pipeline.Out{Report: out}), "a manifest of no file")
}
