package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"

	"codeberg.org/sbinet/npyio"

	"github.com/xentlab/xent/batch"
	"github.com/xentlab/xent/device"
	"github.com/xentlab/xent/internal/corpus"
	"github.com/xentlab/xent/internal/npyfile"
	"github.com/xentlab/xent/internal/tensorfile"
)

// eval evaluates a logit dump, hidden states through a classifier, or a
// manifest of them (evalManifest), and prints the loss.
func eval(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("eval", flag.ContinueOnError)
	logits := fs.String("logits", "", "logits `L`: a .npy, [rows × vocab] or [batch × sequence × vocab] (any leading dimensions, C order: rows), float32, float16 or float64 (narrowed to float32); or file.safetensors[:name], F32, BF16 or F16; or an array of a NumPy archive, file.npz[:name], or a tensor of a PyTorch file, file.pt[:name] (torch.save: F32, BF16, F16, F64) (default: the only tensor, or \"logits\"); every .npy flag takes file.npz:name and file.pt:name")
	var shards fileList
	fs.Var(&shards, "logits-shard", "a shard `S` of logits split by vocabulary across files (as a tensor-parallel model's ranks hold them), as --logits takes a file: once a shard, in class order, the same rows in each, their classes adding up to the vocabulary; instead of --logits, with --targets")
	targets := fs.String("targets", "", "targets `T.npy`: integers (int64, int32, uint16, any integer type), one per row: 1-D, or the rows' leading shape ([batch × sequence]) (default for a .safetensors, .npz or .pt --logits: its integer tensor \"targets\" or \"labels\")")
	lossConfig := corpus.LossFlags(fs)
	teacherIDs := fs.String("teacher-ids", "", "a teacher's top-k classes `I.npy`: integers (int64, int32, ...) [rows × k] (or [batch × sequence × k]), distinct classes of each counted row: report \"kl\", KL(teacher ‖ student) over them and one tail bin, with --teacher-logprobs")
	teacherLP := fs.String("teacher-logprobs", "", "the teacher's log-probabilities `LP.npy` of --teacher-ids: float32 (float16, float64) [rows × k] (or [batch × sequence × k]), ≤ 0, a mass ≤ 1 (beyond rounding)")
	tokenWeights := fs.String("token-weights", "", "token weights `TW.npy`: float (or integer: an attention mask), one per row as the targets, finite and ≥ 0: the mean is Σ w_i·loss_i / Σ w_i (optional)")
	rowsOut := fs.String("rows-out", "", "write the per-row losses to `R.npy` (float32 in the rows' shape: [rows], or [batch × sequence] for such logits; written whole when the run succeeds, never over an input); with --manifest a directory DIR: line N's in DIR/line-N.npy")
	rf := newRunFlags(fs)
	dev, asJSON, verbose := rf.dev, rf.asJSON, rf.verbose
	hidden := fs.String("hidden", "", "hidden states `H` [tokens × features] or [batch × sequence × features]: a .npy (float32, float16, float64) or file.safetensors[:name] (F32, BF16, F16): the fused linear, with --weight, instead of --logits")
	var wshards fileList
	fs.Var(&wshards, "weight-shard", "a shard `W` of the classifier split by vocabulary across files (a tensor-parallel model's ranks' rows of lm_head), as --weight takes a file: once a shard, in class order, the same features in each, their classes adding up to the vocabulary; instead of --weight, with --hidden (--bias, --grad-weight: of the whole vocabulary)")
	weight := fs.String("weight", "", "classifier `W` [classes × features]: a .npy (float32, float16, float64), file.npz:name, file.pt:name (torch.save, pytorch_model.bin included), file.safetensors[:name] (F32, BF16, F16; lm_head.weight by default), or a Hugging Face checkpoint, its directory or its model.safetensors.index.json or pytorch_model.bin.index.json [:name] (lm_head.weight, else the tied embed_tokens.weight / wte.weight, said on stderr); with --manifest, that of the lines without one")
	bias := fs.String("bias", "", "classifier bias `B.npy`: 1-D float32 or float64, one per class (optional)")
	gradHidden := fs.String("grad-hidden", "", "write dL/dH of the mean loss to `dH.npy` (float32 in H's shape: [tokens × features] or [batch × sequence × features])")
	nwords := fs.Int64("words", 0, "the length `N` in words of the text the counted targets encode: report the word perplexity, exp(Σ nll / N) (0: none; with --manifest, each line's \"words\")")
	nbytes := fs.Int64("bytes", 0, "the length `N` in bytes (UTF-8) of the text the counted targets encode: report bits per byte, Σ nll / (ln 2 · N), and the byte perplexity (0: none; with --manifest, each line's \"bytes\")")
	gradWeight := fs.String("grad-weight", "", "write dL/dW of the mean loss to `dW.npy` (float32 [classes × features])")
	manifest := fs.String("manifest", "", "evaluate the files of `M.jsonl` as one evaluation: a JSON object a line, {\"logits\": L, \"targets\": T[, \"weights\": TW]} or {\"hidden\": H[, \"weight\": W][, \"bias\": B], \"targets\": T[, \"weights\": TW]} (\"weights\": token weights; paths from the manifest's directory)")
	shard := fs.String("shard", "", "with --manifest, evaluate shard `i/n` only: the lines whose index (from 0) is i modulo n")
	plotOut := fs.String("plot", "", "draw the loss by position (--seq-len, or --by-position, which --plot implies without --calibration) and the reliability diagram (--calibration) to `FILE` (.svg, .png, .pdf, ...)")
	statsOut := fs.String("stats-out", "", "with --manifest, write the exact partial statistics to `S.json`, for xent merge")
	linesOut := fs.String("lines-out", "", "with --manifest, also write each line's own report to `L.jsonl`: a JSON object a line, in the manifest's order, {\"line\": N, \"file\": its logits or hidden states, and the keys of --json}")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	cfg, err := lossConfig()
	if err != nil {
		return err
	}
	say := sayDevice(stderr, *asJSON, *verbose)
	note := func(s string) { fmt.Fprintf(stderr, "xent eval: %s\n", s) }
	if *manifest != "" {
		if *logits != "" || shards != nil || wshards != nil || *hidden != "" || *targets != "" || *tokenWeights != "" || *bias != "" || *gradHidden != "" || *gradWeight != "" || *teacherIDs != "" || *teacherLP != "" || *nbytes != 0 || *nwords != 0 {
			fmt.Fprintln(stderr, "xent eval: --manifest names the files: it goes without --logits, --logits-shard, --weight-shard, --hidden, --targets, --token-weights, --teacher-ids, --teacher-logprobs, --bias, --grad-hidden, --grad-weight, --bytes and --words (a line's \"bytes\", \"words\")")
			return errUsage
		}
		return evalManifest(ctx, manifestArgs{path: *manifest, weight: *weight, shard: *shard, statsOut: *statsOut, linesOut: *linesOut, rowsOut: *rowsOut, plot: *plotOut,
			dev: *dev, cfg: cfg, say: say, note: note, asJSON: *asJSON}, stdout, stderr)
	}
	if *shard != "" || *statsOut != "" || *linesOut != "" {
		fmt.Fprintln(stderr, "xent eval: --shard, --stats-out and --lines-out go with --manifest")
		return errUsage
	}
	for _, c := range []struct {
		flag string
		n    int64
	}{{"bytes", *nbytes}, {"words", *nwords}} {
		if c.n < 0 {
			return fmt.Errorf("--%s %d: want the text's length in %s, > 0 (0: none)", c.flag, c.n, c.flag)
		}
	}
	line := corpus.Line{Logits: *logits, Shards: shards, Targets: *targets, Weights: *tokenWeights, Hidden: *hidden, Weight: *weight, WeightShards: wshards, Bias: *bias,
		TeacherIDs: *teacherIDs, TeacherLogProbs: *teacherLP, Text: corpus.Text{Bytes: *nbytes, Words: *nwords}}
	switch {
	case (*teacherIDs == "") != (*teacherLP == ""):
		fmt.Fprintln(stderr, "xent eval: --teacher-ids and --teacher-logprobs go together")
		return errUsage
	case shards != nil:
		if len(shards) < 2 || *logits != "" || *hidden != "" || *weight != "" || wshards != nil || *bias != "" || *gradHidden != "" || *gradWeight != "" || *targets == "" {
			fmt.Fprintln(stderr, "xent eval: --logits-shard, given once for each of two or more shards, takes --targets, without --logits, --hidden, --weight, --weight-shard, --bias, --grad-hidden and --grad-weight")
			return errUsage
		}
	case wshards != nil:
		if len(wshards) < 2 || *logits != "" || *hidden == "" || *weight != "" || *targets == "" {
			fmt.Fprintln(stderr, "xent eval: --weight-shard, given once for each of two or more shards, takes --hidden and --targets, without --logits and --weight")
			return errUsage
		}
	case *hidden != "" || *weight != "":
		if *logits != "" || *hidden == "" || *weight == "" || *targets == "" {
			fmt.Fprintln(stderr, "xent eval: the fused linear takes --hidden, --weight (or --weight-shard) and --targets, without --logits")
			fs.Usage()
			return errUsage
		}
	case *gradHidden != "" || *gradWeight != "" || *bias != "":
		fmt.Fprintln(stderr, "xent eval: --bias, --grad-hidden and --grad-weight go with --hidden and --weight")
		return errUsage
	case *logits == "" || *targets == "" && !tensorfile.HoldsTargets(*logits):
		fmt.Fprintln(stderr, "xent eval: --logits and --targets are required (--targets may be left out for a .safetensors, .npz or .pt holding \"targets\" or \"labels\")")
		fs.Usage()
		return errUsage
	}
	// Every input, for the outputs to be checked against before any work.
	inputs := append(lineInputs(line), named{"--weights", cfg.WeightsFile})
	plotNeeds(*plotOut, &cfg)
	format, err := plotFormat("--plot", *plotOut)
	if err != nil {
		return err
	}
	outs, err := plan(inputs, named{"--rows-out", *rowsOut}, named{"--grad-hidden", *gradHidden}, named{"--grad-weight", *gradWeight}, named{"--plot", *plotOut})
	if err != nil {
		return err
	}
	defer discardAll(outs)
	cfg.KeepRows, cfg.GradH, cfg.GradW = *rowsOut != "", *gradHidden != "", *gradWeight != ""
	cfg.Distill = *teacherIDs != ""

	ev := corpus.New(cfg)
	defer ev.Close()
	ev.Note = note
	rows, err := ev.Check(line)
	if err != nil {
		return err
	}
	d, err := openDevice(*dev, say)
	if err != nil {
		return err
	}
	defer d.Close()
	bar := newProgress(stderr, int64(rows))
	ev.Progress = func(n int) { bar.add(int64(n)) }
	r, err := ev.Eval(ctx, d, line)
	if err != nil {
		return err
	}
	bar.finish()
	// The rows and dH in the rows' shape ([batch × sequence] and [batch ×
	// sequence × features] for such input).
	for _, out := range []struct {
		o     *output
		shape []int
		v     []float32
	}{{outs[0], r.Lead, r.Rows}, {outs[1], append(slices.Clone(r.Lead), r.GradH.Cols), r.GradH.Data}, {outs[2], []int{r.GradW.Rows, r.GradW.Cols}, r.GradW.Data}} {
		if err := out.o.write(func(w io.Writer) error { return npyfile.WriteF32(w, out.shape, out.v) }); err != nil {
			return err
		}
	}
	t := corpus.TotalOf(r)
	if err := writePlot(outs[3], format, t); err != nil {
		return err
	}
	return report(stdout, deviceName(d), t, cfg.IgnoreIndex, *asJSON)
}

// fileList is a flag given once for each file (flag.Value).
type fileList []string

func (f *fileList) String() string { return strings.Join(*f, ",") }

func (f *fileList) Set(s string) error {
	*f = append(*f, s)
	return nil
}

// lineInputs returns the files a line reads (a checkpoint's index and
// shard too), for outputs to be checked against.
func lineInputs(l corpus.Line) []named {
	ins := []named{{"--logits", tensorfile.FilePath(l.Logits)}, {"--targets", l.Targets}, {"--token-weights", l.Weights},
		{"--hidden", tensorfile.FilePath(l.Hidden)}, {"--bias", l.Bias}, {"--teacher-ids", l.TeacherIDs}, {"--teacher-logprobs", l.TeacherLogProbs}}
	for _, s := range l.Shards {
		ins = append(ins, named{"--logits-shard", tensorfile.FilePath(s)})
	}
	for _, f := range tensorfile.Files(l.Weight) {
		ins = append(ins, named{"--weight", f})
	}
	for _, w := range l.WeightShards {
		for _, f := range tensorfile.Files(w) {
			ins = append(ins, named{"--weight-shard", f})
		}
	}
	return ins
}

// rowsOf returns a dense matrix's rows as slices (npyio writes [][]float32
// as a 2-D array).
func rowsOf(m batch.Matrix) [][]float32 {
	rs := make([][]float32, m.Rows)
	for i := range rs {
		rs[i] = m.Data[i*m.Cols : (i+1)*m.Cols]
	}
	return rs
}

// deviceName names a device in reports.
func deviceName(d device.Device) string {
	info := d.Info()
	return fmt.Sprintf("%s (%s, %s)", info.Spec, info.Name, info.Kernel)
}

// report prints the stats of an evaluation on the device named devName.
func report(stdout io.Writer, devName string, t corpus.Total, ignore int, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(stdout).Encode(corpus.ReportOf(t, devName))
	}
	st, pos, rep := t.Stats, t.Positions, corpus.ReportOf(t, devName)
	fmt.Fprintf(stdout, "loss        %.6f nats (mean over %d tokens)\n", st.Mean(), st.Counted)
	fmt.Fprintf(stdout, "perplexity  %.4f\n", st.Perplexity())
	fmt.Fprintf(stdout, "accuracy    %.4f (top-1)\n", st.Accuracy())
	fmt.Fprintf(stdout, "tokens      %d counted, %d ignored (ignore index %d)\n", st.Counted, st.Ignored(), ignore)
	fmt.Fprintf(stdout, "sum         %.6f\n", st.Sum)
	fmt.Fprintf(stdout, "z-loss      %.6f\n", st.ZLoss)
	if sp := t.Spread; sp != nil {
		se := sp.StdErr()
		lo, hi := corpus.Interval95(st.Mean(), se, sp.Clusters)
		fmt.Fprintf(stdout, "std. error  %.6f nats (over %d sequences or rows, as independent); perplexity 95%% [%.4f, %.4f]\n",
			se, sp.Clusters, math.Exp(lo), math.Exp(hi))
	}
	if sp := t.AccSpread; sp != nil {
		se := sp.StdErr()
		lo, hi := corpus.AccuracyInterval95(st.Accuracy(), se, sp.Clusters)
		fmt.Fprintf(stdout, "            accuracy %.4f; 95%% [%.4f, %.4f]\n", se, lo, hi)
	}
	if pos != nil {
		m := pos.Means()
		last := len(m) - 1 // the last position that counts (--shift counts none at T-1)
		for last > 0 && math.IsNaN(m[last]) {
			last--
		}
		fmt.Fprintf(stdout, "by position %d positions: %.4f at 0, %.4f at %d (--json or --plot: each)\n", len(m), m[0], m[last], last)
	}
	if rs := t.Ranks; rs != nil {
		fmt.Fprintf(stdout, "top-k      ")
		for i, k := range rs.K {
			fmt.Fprintf(stdout, " %d: %.4f", k, rs.TopKAccuracy(i))
			if t.TopKSpread != nil {
				fmt.Fprint(stdout, seOf(&t.TopKSpread[i], " (se %.4f)"))
			}
		}
		fmt.Fprintf(stdout, "\nMRR         %.4f (mean reciprocal rank of the target%s)\n", rs.MRR(), seOf(t.MRRSpread, ", se %.4f"))
		fmt.Fprintf(stdout, "entropy     %.6f nats (mean over %d tokens%s)\n", rs.MeanEntropy(), rs.Counted, seOf(t.EntSpread, ", se %.6f"))
	}
	if t.Distill {
		fmt.Fprintf(stdout, "KL          %.6f nats (the teacher's top-k and tail, mean over %d tokens)\n", st.MeanKL(), st.Counted)
	}
	if n := t.Text.Bytes; n > 0 { // the report's: NaN where nothing counts
		fmt.Fprintf(stdout, "bits/byte   %.6f (over %d bytes; byte perplexity %.4f)%s\n", *rep.BitsPerByte, n, *rep.BytePerplexity, interval(rep.BitsPerByte95, "%.6f"))
	}
	if n := t.Text.Words; n > 0 {
		fmt.Fprintf(stdout, "word ppl    %.4f (over %d words)%s\n", *rep.WordPerplexity, n, interval(rep.WordPerplexity95, "%.4f"))
	}
	if c := t.Calibration; c != nil {
		fmt.Fprintf(stdout, "ECE         %.4f (%d bins of the confidence, %d rows; --json or --plot: each)\n", c.ECE(), batch.CalibrationBins, c.Binned())
	}
	fmt.Fprintf(stdout, "device      %s\n", devName)
	return nil
}

// interval returns "; 95% [lo, hi]" of ci in format f, "" without it.
func interval(ci []*float64, f string) string {
	if len(ci) != 2 {
		return ""
	}
	v := func(p *float64) string { // nil: NaN, as the text report prints an undefined value
		if p == nil {
			return fmt.Sprintf(f, math.NaN())
		}
		return fmt.Sprintf(f, *p)
	}
	return "; 95% [" + v(ci[0]) + ", " + v(ci[1]) + "]"
}

// seOf returns the standard error of sp in format f, "" without sp.
func seOf(sp *corpus.Spread, f string) string {
	if sp == nil {
		return ""
	}
	return fmt.Sprintf(f, sp.StdErr())
}

// writeNpy writes v as a .npy file to o (nothing when o is nil: not
// asked for).
func writeNpy(o *output, v any) error {
	return o.write(func(w io.Writer) error { return npyio.Write(w, v) })
}
