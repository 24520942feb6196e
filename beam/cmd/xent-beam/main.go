// Command xent-beam evaluates a manifest (the one of xent eval
// --manifest) as an Apache Beam pipeline: each line on a worker, with
// the library on the worker's best device, the statistics merged exactly,
// one report (the JSON of xent eval --json) written to --out.
//
//	xent-beam --manifest M.jsonl --out R.json [every loss flag of xent eval] [Beam's flags]
//
// Without --runner it runs on Beam's embedded runner, prism, in this
// process. A cluster is reached through Beam's portable job API:
// --runner universal (or flink, spark) --endpoint HOST:PORT of the job
// server, and --environment_type (DOCKER with --environment_config IMAGE,
// or PROCESS, or LOOPBACK for a job server on this machine); Dataflow
// with --runner dataflow and its flags. The workers read the manifest's
// files and write --out where this process names them: a filesystem the
// workers share.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/x/beamx"

	"github.com/xentlab/xent/beam/pipeline"
	"github.com/xentlab/xent/internal/corpus"
)

var (
	manifest = flag.String("manifest", "", "the manifest `M.jsonl` (as xent eval --manifest)")
	out      = flag.String("out", "", "write the report to `R.json` (the JSON of xent eval --json), whole when the pipeline succeeds")
	dev      = flag.String("device", "auto", "the workers' device: auto (each worker's best), cpu, opencl, ... (as xent eval --device)")
	weight   = flag.String("weight", "", "the classifier of the hidden-states lines without one (as xent eval --weight)")
	config   = corpus.LossFlags(flag.CommandLine)
)

func main() {
	flag.Parse()
	beam.Init() // a worker of a remote runner runs its bundles here and does not return
	if err := run(context.Background()); err != nil {
		fmt.Fprintf(os.Stderr, "xent-beam: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	if *manifest == "" || *out == "" {
		flag.Usage()
		return fmt.Errorf("--manifest and --out are required")
	}
	cfg, err := config()
	if err != nil {
		return err
	}
	m, err := corpus.ReadManifest(*manifest, *weight)
	if err != nil {
		return err
	}
	cfg.Distill = m.Distill()
	// Every line checked here, before the pipeline starts, as xent eval
	// checks them; and the output: a regular file or none, in a directory.
	ev := corpus.New(cfg)
	for _, l := range m.Lines {
		if _, err := ev.Check(l); err != nil {
			ev.Close()
			return err
		}
	}
	ev.Close()
	target, err := filepath.Abs(*out)
	if err != nil {
		return err
	}
	if st, err := os.Stat(target); err == nil {
		if !st.Mode().IsRegular() {
			return fmt.Errorf("--out %s: exists and is not a regular file", *out)
		}
		ins := []string{*manifest}
		for _, l := range m.Lines {
			ins = append(ins, l.Files()...)
		}
		for _, in := range ins {
			if is, err := os.Stat(in); err == nil && os.SameFile(st, is) {
				return fmt.Errorf("--out %s: the same file as %s, an input", *out, in)
			}
		}
	}
	if st, err := os.Stat(filepath.Dir(target)); err != nil || !st.IsDir() {
		return fmt.Errorf("--out %s: its directory does not exist", *out)
	}
	p, s := beam.NewPipelineWithRoot()
	if err := pipeline.Build(s, m, cfg, *dev, target); err != nil {
		return err
	}
	return beamx.Run(ctx, p)
}
