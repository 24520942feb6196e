package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"github.com/xentlab/xent/batch"
	"github.com/xentlab/xent/internal/corpus"
	"github.com/xentlab/xent/internal/npyfile"
)

type manifestArgs struct {
	path, weight, shard string
	statsOut, linesOut  string
	rowsOut             string
	plot                string
	dev                 string
	cfg                 corpus.Config
	say, note           func(string)
	asJSON              bool
}

// evalManifest evaluates the lines of a manifest (of one shard of it) as
// one evaluation and prints the merged report, or writes the partial
// statistics for xent merge. Every line is checked before any is
// evaluated; outputs are written only when every line succeeded.
func evalManifest(ctx context.Context, a manifestArgs, stdout, stderr io.Writer) error {
	m, err := corpus.ReadManifest(a.path, a.weight)
	if err != nil {
		return err
	}
	shard, shards := 0, 1
	if a.shard != "" {
		if shard, shards, err = corpus.ParseShard(a.shard); err != nil {
			return fmt.Errorf("--shard: %w", err)
		}
	}
	lines := m.Shard(shard, shards)
	// Every line's files, not only this shard's: no output replaces what
	// another shard reads.
	inputs := []named{{"--manifest", a.path}, {"--weights", a.cfg.WeightsFile}}
	for _, l := range m.Lines {
		for _, f := range l.Files() {
			inputs = append(inputs, named{fmt.Sprintf("(%s:%d)", a.path, l.N), f})
		}
	}
	plotNeeds(a.plot, &a.cfg)
	format, err := plotFormat("--plot", a.plot)
	if err != nil {
		return err
	}
	// Line N's rows go to DIR/line-N.npy (corpus.RowsName): one output
	// each, checked like any other.
	wants := []named{{"--stats-out", a.statsOut}, {"--plot", a.plot}, {"--lines-out", a.linesOut}}
	if a.rowsOut != "" {
		for _, l := range lines {
			wants = append(wants, named{fmt.Sprintf("--rows-out (line %d)", l.N), filepath.Join(a.rowsOut, corpus.RowsName(l.N, m.Width()))})
		}
	}
	outs, err := plan(inputs, wants...)
	if err != nil {
		return err
	}
	defer discardAll(outs)
	cfg := a.cfg
	cfg.KeepRows = a.rowsOut != ""
	cfg.Distill = m.Distill()

	ev := corpus.New(cfg)
	defer ev.Close()
	ev.Note = a.note
	var rows int64
	for _, l := range lines {
		n, err := ev.Check(l)
		if err != nil {
			return err
		}
		rows += int64(n)
	}
	d, err := openDevice(a.dev, a.say)
	if err != nil {
		return err
	}
	defer d.Close()
	bar := newProgress(stderr, rows)
	ev.Progress = func(n int) { bar.add(int64(n)) }
	var total corpus.Total
	var each []corpus.LineReport
	for k, l := range lines {
		r, err := ev.Eval(ctx, d, l)
		if err != nil {
			return err
		}
		if err := total.Add(r); err != nil {
			return err
		}
		if a.linesOut != "" {
			each = append(each, corpus.LineReportOf(l, r, deviceName(d)))
		}
		if a.rowsOut != "" {
			if err := outs[3+k].fill(func(w io.Writer) error { return npyfile.WriteF32(w, r.Lead, r.Rows) }); err != nil {
				return err
			}
		}
	}
	bar.finish()
	p := corpus.PartialOf(total, m.SHA256, len(m.Lines), shard, shards, cfg.Flags(a.weight), deviceName(d))
	if err := writePartial(outs[0], p); err != nil {
		return err
	}
	if err := writePlot(outs[1], format, total); err != nil {
		return err
	}
	if err := writeLines(outs[2], each); err != nil {
		return err
	}
	for _, o := range outs[3:] {
		if err := o.commit(); err != nil {
			return err
		}
	}
	return report(stdout, p.Device, total, a.cfg.IgnoreIndex, a.asJSON)
}

// writeLines writes each line's report to o, a JSON object a line
// (nothing when o is nil).
func writeLines[R any](o *output, each []R) error {
	return o.write(func(w io.Writer) error {
		enc := json.NewEncoder(w)
		for _, r := range each {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	})
}

// writePartial writes p as indented JSON to o (nothing when o is nil).
func writePartial(o *output, p corpus.Partial) error {
	return o.write(func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(p)
	})
}

// merge merges the partial statistics of every shard of an evaluation
// (xent eval --manifest --shard i/n --stats-out) and prints the report.
func merge(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("merge", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print one JSON object, the keys of xent eval --json (of xent compare --json for a comparison's statistics)")
	statsOut := fs.String("stats-out", "", "also write the merged statistics to `S.json` (one shard of one)")
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: xent merge [--json] [--stats-out S.json] S_0.json S_1.json ...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return errHelp
		}
		return errUsage
	}
	names := fs.Args()
	if len(names) == 0 {
		fmt.Fprintln(stderr, "xent merge: name the partial statistics files, one per shard")
		fs.Usage()
		return errUsage
	}
	ins := make([]named, len(names))
	for k, n := range names {
		ins[k] = named{"input", n}
	}
	outs, err := plan(ins, named{"--stats-out", *statsOut})
	if err != nil {
		return err
	}
	defer discardAll(outs)
	ps := make([]corpus.Partial, len(names))
	for k, n := range names {
		if ps[k], err = corpus.ReadPartial(n); err != nil {
			return err
		}
	}
	p, err := corpus.Merge(ps, names)
	if err != nil {
		return err
	}
	if err := writePartial(outs[0], p); err != nil {
		return err
	}
	if p.Pair != nil { // a comparison's
		pair, err := p.PairOf()
		if err != nil {
			return err
		}
		return pairReport(stdout, pair, p.Device, *asJSON)
	}
	ignore := batch.DefaultIgnoreIndex
	fmt.Sscan(p.Flags["ignore_index"], &ignore)
	t, err := p.Total()
	if err != nil {
		return err
	}
	return report(stdout, p.Device, t, ignore, *asJSON)
}
