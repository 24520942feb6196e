// Command xent-beam evaluates a manifest (the one of xent eval
// --manifest) as an Apache Beam pipeline: each line on a worker, with
// the library on the worker's best device, the statistics merged exactly,
// one report (the JSON of xent eval --json) written to --out.
//
//	xent-beam --manifest M.jsonl --out R.json [--lines-out L.jsonl] [--rows-out DIR] [every loss flag of xent eval] [Beam's flags]
//	xent-beam --manifest A.jsonl --compare B.jsonl --out R.json [--lines-out L.jsonl] [...]
//
// With --compare it compares two models' manifests line by line, as xent
// compare does: each line pair on a worker, the report the JSON of xent
// compare --json.
//
// Without --runner it runs on Beam's embedded runner, prism, in this
// process. A cluster is reached through Beam's portable job API:
// --runner universal (or flink, spark) --endpoint HOST:PORT of the job
// server, and --environment_type (DOCKER with --environment_config IMAGE,
// or PROCESS, or LOOPBACK for a job server on this machine); Dataflow
// with --runner dataflow and its flags. The workers read the manifests
// and their files and write --out (and --lines-out, --rows-out's files)
// where this process names them, by absolute paths: a filesystem the
// workers share.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"

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
	linesOut = flag.String("lines-out", "", "also write each line's own report to `L.jsonl` (as xent eval --manifest --lines-out: a JSON object a line, in the manifest's order), when the pipeline succeeds")
	compare  = flag.String("compare", "", "model B's manifest `B.jsonl`: compare --manifest's model (A) with it, line by line (as xent compare --a --b): the report is xent compare --json's")
	rowsOut  = flag.String("rows-out", "", "write line N's per-row losses to `DIR`/line-N.npy (as xent eval --manifest --rows-out: float32 in the rows' shape), all of them when the pipeline succeeds, none when it fails")
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
	// The workers read the manifests again, and every file they name,
	// from another working directory: every path absolute.
	for _, p := range []*string{manifest, compare, weight} {
		if *p != "" {
			if *p, err = filepath.Abs(*p); err != nil {
				return err
			}
		}
	}
	m, err := corpus.ReadManifest(*manifest, *weight)
	if err != nil {
		return err
	}
	var mb corpus.Manifest // model B's, with --compare
	if *compare != "" {
		if mb, err = readCompared(&m, *compare, *weight, *rowsOut); err != nil {
			return err
		}
	}
	cfg.Distill = m.Distill()
	// Every line checked here, before the pipeline starts, as xent eval
	// checks them (xent compare, the pairs); and the output: a regular file
	// or none, in a directory.
	ev := corpus.New(cfg)
	for k, l := range m.Lines {
		if *compare != "" {
			_, err = ev.CheckPair(l, mb.Lines[k])
		} else {
			_, err = ev.Check(l)
		}
		if err != nil {
			ev.Close()
			return err
		}
	}
	ev.Close()
	ins := []string{*manifest, *compare}
	for _, l := range append(slices.Clone(m.Lines), mb.Lines...) {
		ins = append(ins, l.Files()...)
	}
	target, err := output("--out", *out, ins)
	if err != nil {
		return err
	}
	var lines string
	if *linesOut != "" {
		if lines, err = output("--lines-out", *linesOut, ins); err != nil {
			return err
		}
		if lines == target {
			return fmt.Errorf("--lines-out %s: the same file as --out", *linesOut)
		}
	}
	var rows pipeline.Rows
	if *rowsOut != "" {
		if st, err := os.Stat(*rowsOut); err != nil || !st.IsDir() {
			return fmt.Errorf("--rows-out %s: not a directory", *rowsOut)
		}
		dir, err := filepath.Abs(*rowsOut)
		if err != nil {
			return err
		}
		if rows, err = pipeline.NewRows(dir, m); err != nil {
			return err
		}
		for _, l := range m.Lines {
			p, err := output(fmt.Sprintf("--rows-out (line %d)", l.N), rows.Path(l.N), ins)
			if err != nil {
				return err
			}
			if p == target || p == lines {
				return fmt.Errorf("--rows-out (line %d) %s: the same file as --out or --lines-out", l.N, p)
			}
		}
	}
	p, s := beam.NewPipelineWithRoot()
	o := pipeline.Out{Report: target, Lines: lines, Rows: rows}
	if *compare != "" {
		err = pipeline.BuildCompare(s, m, mb, cfg, *dev, o)
	} else {
		err = pipeline.Build(s, m, cfg, *dev, o)
	}
	if err != nil {
		return err
	}
	if err := beamx.Run(ctx, p); err != nil {
		if rows.Dir != "" {
			err = errors.Join(err, rows.Discard())
		}
		return err
	}
	if rows.Dir != "" {
		if err := rows.Commit(m); err != nil {
			return errors.Join(fmt.Errorf("--rows-out: %w", err), rows.Discard())
		}
	}
	return nil
}

// readCompared reads model B's manifest path to compare with model A's
// m: as many lines, one teacher a line pair (corpus.PairTeachers: a line
// without takes the other's), and no --rows-out.
func readCompared(m *corpus.Manifest, path, weight, rowsOut string) (corpus.Manifest, error) {
	if rowsOut != "" {
		return corpus.Manifest{}, errors.New("--rows-out goes without --compare (a comparison writes no per-row losses)")
	}
	mb, err := corpus.ReadManifest(path, weight)
	switch {
	case err != nil:
		return corpus.Manifest{}, err
	case len(mb.Lines) != len(m.Lines):
		return corpus.Manifest{}, fmt.Errorf("--compare %s: %d lines, --manifest's %d: a comparison pairs them line by line", path, len(mb.Lines), len(m.Lines))
	}
	return mb, corpus.PairTeachers(m, &mb)
}

// output returns path made absolute, an output named flag: a regular
// file or none, not the same file as any of ins, in a directory.
func output(flag, path string, ins []string) (string, error) {
	target, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if st, err := os.Stat(target); err == nil {
		if !st.Mode().IsRegular() {
			return "", fmt.Errorf("%s %s: exists and is not a regular file", flag, path)
		}
		for _, in := range ins {
			if is, err := os.Stat(in); err == nil && os.SameFile(st, is) {
				return "", fmt.Errorf("%s %s: the same file as %s, an input", flag, path, in)
			}
		}
	}
	if st, err := os.Stat(filepath.Dir(target)); err != nil || !st.IsDir() {
		return "", fmt.Errorf("%s %s: its directory does not exist", flag, path)
	}
	return target, nil
}
