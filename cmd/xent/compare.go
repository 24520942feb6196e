package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/xentlab/xent/internal/corpus"
)

// compare evaluates two models on the same rows, line by line, and prints
// each one's report and the paired statistics of their difference.
func compare(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	a := fs.String("a", "", "model A: a manifest `A.jsonl` (as xent eval --manifest takes it), or a logits file (as --logits takes it) with --targets")
	b := fs.String("b", "", "model B, as --a: a manifest `B.jsonl` of as many lines, line by line of the same rows and targets, or a logits file of the same rows")
	targets := fs.String("targets", "", "targets `T.npy` of logits files --a and --b (as xent eval's; default for a .safetensors, .npz or .pt: its \"targets\" or \"labels\")")
	tokenWeights := fs.String("token-weights", "", "token weights `TW.npy` of logits files --a and --b (as xent eval's)")
	weight := fs.String("weight", "", "classifier `W` of the manifests' hidden-states lines without one (as xent eval's)")
	shard := fs.String("shard", "", "with manifests, compare shard `i/n` only: the lines whose index (from 0) is i modulo n (with --stats-out)")
	linesOut := fs.String("lines-out", "", "with manifests, also write each line pair's own comparison to `L.jsonl`: a JSON object a line, {\"line\": N, \"file_a\", \"file_b\": their rows' files, and the keys of --json}")
	statsOut := fs.String("stats-out", "", "with manifests, write the exact partial statistics of both models and their difference to `S.json`, for xent merge")
	teacherIDs := fs.String("teacher-ids", "", "a teacher's top-k classes `I.npy` of logits files --a and --b (as xent eval's): both models' \"kl\" and B − A's, paired, with --teacher-logprobs")
	teacherLP := fs.String("teacher-logprobs", "", "the teacher's log-probabilities `LP.npy` of --teacher-ids (as xent eval's)")
	lossConfig := corpus.LossFlags(fs)
	rf := newRunFlags(fs)
	dev, asJSON, verbose := rf.dev, rf.asJSON, rf.verbose
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	cfg, err := lossConfig()
	if err != nil {
		return err
	}
	if *a == "" || *b == "" {
		fmt.Fprintln(stderr, "xent compare: --a and --b name the two models' manifests or logits files")
		fs.Usage()
		return errUsage
	}
	if (*teacherIDs == "") != (*teacherLP == "") {
		fmt.Fprintln(stderr, "xent compare: --teacher-ids and --teacher-logprobs go together")
		return errUsage
	}
	teacher := corpus.Line{TeacherIDs: *teacherIDs, TeacherLogProbs: *teacherLP}
	ma, err := compareLines(*a, *targets, *tokenWeights, *weight, teacher)
	if err != nil {
		return fmt.Errorf("--a: %w", err)
	}
	mb, err := compareLines(*b, *targets, *tokenWeights, *weight, teacher)
	if err != nil {
		return fmt.Errorf("--b: %w", err)
	}
	if len(ma.Lines) != len(mb.Lines) {
		return fmt.Errorf("--a has %d lines, --b %d: a comparison pairs them line by line", len(ma.Lines), len(mb.Lines))
	}
	if err := corpus.PairTeachers(&ma, &mb); err != nil {
		return err
	}
	cfg.Distill = ma.Distill()
	if (*shard != "" || *statsOut != "" || *linesOut != "") && (ma.SHA256 == "" || mb.SHA256 == "") {
		fmt.Fprintln(stderr, "xent compare: --shard, --stats-out and --lines-out go with manifests (--a and --b .jsonl)")
		return errUsage
	}
	shardI, shards := 0, 1
	if *shard != "" {
		if shardI, shards, err = corpus.ParseShard(*shard); err != nil {
			return fmt.Errorf("--shard: %w", err)
		}
	}
	la, lb := ma.Shard(shardI, shards), mb.Shard(shardI, shards)
	inputs := []named{{"--a", *a}, {"--b", *b}, {"--weights", cfg.WeightsFile}}
	for _, l := range append(slices.Clone(ma.Lines), mb.Lines...) {
		inputs = append(inputs, lineInputs(l)...)
	}
	outs, err := plan(inputs, named{"--stats-out", *statsOut}, named{"--lines-out", *linesOut})
	if err != nil {
		return err
	}
	defer discardAll(outs)
	ev := corpus.New(cfg)
	defer ev.Close()
	ev.Note = func(s string) { fmt.Fprintf(stderr, "xent compare: %s\n", s) }
	var rows int64
	for k := range la {
		n, err := ev.CheckPair(la[k], lb[k])
		if err != nil {
			return err
		}
		rows += 2 * int64(n)
	}
	d, err := openDevice(*dev, sayDevice(stderr, *asJSON, *verbose))
	if err != nil {
		return err
	}
	defer d.Close()
	bar := newProgress(stderr, rows)
	ev.Progress = func(n int) { bar.add(int64(n)) }
	var p corpus.Pair
	var each []corpus.PairLineReport
	for k := range la {
		q, err := ev.Compare(ctx, d, la[k], lb[k])
		if err == nil {
			err = p.Merge(q)
		}
		if err != nil {
			return err
		}
		if *linesOut != "" {
			each = append(each, corpus.PairLineReport{Line: la[k].N, FileA: la[k].RowsFile(), FileB: lb[k].RowsFile(), PairReport: corpus.PairReportOf(q, deviceName(d))})
		}
	}
	bar.finish()
	if err := writeLines(outs[1], each); err != nil {
		return err
	}
	if err := writePartial(outs[0], corpus.PartialOfPair(p, ma.SHA256, mb.SHA256, len(ma.Lines), shardI, shards, cfg.Flags(*weight), deviceName(d))); err != nil {
		return err
	}
	return pairReport(stdout, p, deviceName(d), *asJSON)
}

// pairReport prints the report of a comparison computed on devName.
func pairReport(stdout io.Writer, p corpus.Pair, devName string, asJSON bool) error {
	r := corpus.PairReportOf(p, devName)
	if asJSON {
		return json.NewEncoder(stdout).Encode(r)
	}
	pairText(stdout, p, r)
	return nil
}

// compareLines returns the lines of a model: its manifest (a .jsonl), or
// one line of its logits file with targets, token weights and teacher's
// files (no SHA256).
func compareLines(spec, targets, tokenWeights, weight string, teacher corpus.Line) (corpus.Manifest, error) {
	if !strings.HasSuffix(spec, ".jsonl") {
		return corpus.Manifest{Lines: []corpus.Line{{Logits: spec, Targets: targets, Weights: tokenWeights,
			TeacherIDs: teacher.TeacherIDs, TeacherLogProbs: teacher.TeacherLogProbs}}}, nil
	}
	if targets != "" || tokenWeights != "" || teacher.TeacherIDs != "" {
		return corpus.Manifest{}, fmt.Errorf("%s: a manifest names its lines' targets, token weights and teacher (--targets, --token-weights and --teacher-* go with logits files)", spec)
	}
	return corpus.ReadManifest(spec, weight)
}

// pairText prints a comparison's text report.
func pairText(w io.Writer, p corpus.Pair, r corpus.PairReport) {
	sa, sb := p.A.Stats, p.B.Stats
	f := func(v *float64) float64 {
		if v == nil {
			return math.NaN()
		}
		return *v
	}
	fmt.Fprintf(w, "            model A       model B       B − A\n")
	fmt.Fprintf(w, "loss        %-13.6f %-13.6f %+.6f nats (95%% [%+.6f, %+.6f], z %.2f, p %.3g)\n",
		sa.Mean(), sb.Mean(), f(r.Diff), f(r.Diff95[0]), f(r.Diff95[1]), float64(*r.Z), float64(*r.PValue))
	fmt.Fprintf(w, "perplexity  %-13.4f %-13.4f ×%.4f (95%% [%.4f, %.4f])\n",
		sa.Perplexity(), sb.Perplexity(), f(r.PerplexityRatio), f(r.PerplexityRatio95[0]), f(r.PerplexityRatio95[1]))
	fmt.Fprintf(w, "accuracy    %-13.4f %-13.4f %+.4f (top-1; 95%% [%+.4f, %+.4f], p %.3g)\n",
		sa.Accuracy(), sb.Accuracy(), f(r.AccuracyDiff), f(r.AccuracyDiff95[0]), f(r.AccuracyDiff95[1]), float64(*r.AccuracyPValue))
	if ra, rb := p.A.Ranks, p.B.Ranks; ra != nil && rb != nil && r.TopKDiff != nil {
		for i, k := range ra.K {
			d := r.TopKDiff[strconv.Itoa(k)]
			fmt.Fprintf(w, "%-11s %-13.4f %-13.4f %+.4f (95%% [%+.4f, %+.4f], p %.3g)\n", fmt.Sprintf("top-%d", k),
				ra.TopKAccuracy(i), rb.TopKAccuracy(i), f(d.Diff), f(d.CI95[0]), f(d.CI95[1]), float64(*d.PValue))
		}
	}
	if d, ra, rb := r.MRRDiff, p.A.Ranks, p.B.Ranks; d != nil && ra != nil && rb != nil {
		fmt.Fprintf(w, "MRR         %-13.4f %-13.4f %+.4f (95%% [%+.4f, %+.4f], p %.3g)\n",
			ra.MRR(), rb.MRR(), f(d.Diff), f(d.CI95[0]), f(d.CI95[1]), float64(*d.PValue))
	}
	if d := r.KLDiff; d != nil {
		fmt.Fprintf(w, "KL          %-13.6f %-13.6f %+.6f nats (the teacher's; 95%% [%+.6f, %+.6f], p %.3g)\n",
			sa.MeanKL(), sb.MeanKL(), f(d.Diff), f(d.CI95[0]), f(d.CI95[1]), float64(*d.PValue))
	}
	if r.BitsPerByteDiff != nil {
		fmt.Fprintf(w, "bits/byte   %-13.6f %-13.6f %+.6f (95%% [%+.6f, %+.6f], over %d bytes)\n",
			float64(*r.A.BitsPerByte), float64(*r.B.BitsPerByte), f(r.BitsPerByteDiff), f(r.BitsPerByteDiff95[0]), f(r.BitsPerByteDiff95[1]), p.A.Text.Bytes)
	}
	fmt.Fprintf(w, "tokens      %d counted, the same rows; %d sequences (or rows, in files of none) as clusters: B's loss below A's in %.1f%%\n",
		sa.Counted, r.Clusters, 100*float64(*r.BLower))
	fmt.Fprintf(w, "device      %s\n", r.Device)
}
