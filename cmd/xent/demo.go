package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/xentlab/xent/batch"
	"github.com/xentlab/xent/device"
	"github.com/xentlab/xent/internal/bigram"
	"github.com/xentlab/xent/internal/gen"
)

// demo computes the textbook worked example through the library: the
// logits are log-probabilities, so the softmax gives them back.
func demo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	dev := fs.String("device", "cpu", "device: cpu, auto, opencl, opencl:P:D")
	linear := fs.Bool("linear", false, "train a byte-level bigram model through the fused linear cross-entropy instead (on the CPU)")
	text := fs.String("text", "", "with --linear: the `file` to learn, any bytes (default: the first page of Alice in Wonderland, built in)")
	epochs := fs.Int("epochs", 60, "with --linear: epochs of SGD, an integer ≥ 1")
	plotTo := fs.String("plot", "", "with --linear: write the loss curve to `FILE` (.svg, .png, .pdf, .eps, .jpg or .tif)")
	dump := fs.String("dump", "", "with --linear: write the trained model's evaluation data into `DIR` for xent eval: hidden.npy (a row per byte of the text but the last), weight.npy, bias.npy, targets.npy, and a teacher's top-8 (the text's smoothed bigram counts): teacher_ids.npy, teacher_logprobs.npy")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if *linear {
		plotOut, format, err := planPlot([]named{{"--text", *text}}, "--plot", *plotTo)
		if err != nil {
			return err
		}
		defer plotOut.discard()
		var dumps []*output
		if *dump != "" {
			if err := os.MkdirAll(*dump, 0o755); err != nil {
				return err
			}
			var wants []named
			for _, f := range dumpFiles {
				wants = append(wants, named{"--dump", filepath.Join(*dump, f)})
			}
			if dumps, err = plan([]named{{"--text", *text}, {"--plot", *plotTo}}, wants...); err != nil {
				return err
			}
			defer discardAll(dumps)
		}
		return demoLinear(ctx, *text, *epochs, plotOut, format, dumps, stdout)
	}
	d, err := device.Open(*dev)
	if err != nil {
		return err
	}
	defer d.Close()
	ce, err := batch.New(d, batch.KeepRows())
	if err != nil {
		return err
	}
	ex := gen.Textbook
	rows, cols := len(ex.Probs), len(ex.Probs[0])
	x := gen.TextbookLogits()
	r, err := ce.Forward(ctx, batch.NewMatrix(x, rows, cols), ex.Targets)
	if err != nil {
		return err
	}
	lse := make([]float32, rows)
	if err := ce.LogSumExp(ctx, lse, batch.NewMatrix(x, rows, cols)); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "The worked example: %d positions, vocabulary of %d, logits z = log P.\n\n", rows, cols)
	fmt.Fprintf(stdout, "pos  true  P(true)   loss = lse(z) - z_t\n")
	for i := range rows {
		t := ex.Targets[i]
		p := math.Exp(float64(x[i*cols+int(t)]) - float64(lse[i]))
		fmt.Fprintf(stdout, "%3d  %4d  %7.3f   %6.3f\n", i, t, p, r.Losses[i])
	}
	fmt.Fprintf(stdout, "\nmean loss  %.3f nats over %d tokens\nperplexity %.2f\naccuracy   %.2f (argmax = true token)\ndevice     %s (%s)\n",
		r.Loss, r.Counted, r.Perplexity(), r.Accuracy(), d.Info().Name, d.Info().Kernel)
	return nil
}

// demoLinear trains the bigram model of package bigram on text through the
// fused linear cross-entropy on the CPU and prints (and plots) its loss.
func demoLinear(ctx context.Context, path string, epochs int, plotTo *output, format string, dumps []*output, stdout io.Writer) error {
	text, name := bigram.Alice, "Alice's Adventures in Wonderland, page 1"
	if path != "" {
		var err error
		if text, err = os.ReadFile(path); err != nil {
			return err
		}
		name = path
	}
	if len(text) < 2 || epochs < 1 {
		return fmt.Errorf("%s: need a text of 2 bytes or more and --epochs ≥ 1", name)
	}
	d, err := device.Open("cpu")
	if err != nil {
		return err
	}
	ce, err := batch.NewLinear(d)
	if err != nil {
		return err
	}
	const dim = 16
	step := func(ctx context.Context, dH, dW, db, H, W, b []float32, tg []int32) (float64, error) {
		n, V := len(tg), len(b)
		g := batch.LinearGrads{H: batch.NewGrad(dH, n, dim), W: batch.NewGrad(dW, V, dim), Bias: db}
		res, err := ce.ForwardBackward(ctx, g, batch.NewMatrix(H, n, dim), batch.NewMatrix(W, V, dim), b, tg, batch.One)
		return res.Loss, err
	}
	losses, model, err := bigram.Train(ctx, step, text, dim, epochs, 4)
	if err != nil {
		return err
	}
	if dumps != nil {
		h, tg := model.Rows(text)
		t64 := make([]int64, len(tg))
		for i, t := range tg {
			t64[i] = int64(t)
		}
		ids, lp := bigram.Teacher(text, teacherK, 0.1)
		tids, tlp := make([][]int64, len(tg)), make([][]float32, len(tg))
		for i := range tg {
			tids[i], tlp[i] = make([]int64, teacherK), lp[i*teacherK:(i+1)*teacherK]
			for j, c := range ids[i*teacherK : (i+1)*teacherK] {
				tids[i][j] = int64(c)
			}
		}
		for k, v := range []any{rowsOf(batch.NewMatrix(h, len(tg), dim)), rowsOf(batch.NewMatrix(model.W, bigram.V, dim)), model.B, t64, tids, tlp} {
			if err := writeNpy(dumps[k], v); err != nil {
				return err
			}
		}
		defer fmt.Fprintf(stdout, "\nwrote %s: xent eval --hidden DIR/hidden.npy --weight DIR/weight.npy --bias DIR/bias.npy --targets DIR/targets.npy\n"+
			"[--teacher-ids DIR/teacher_ids.npy --teacher-logprobs DIR/teacher_logprobs.npy: the text's bigram counts' top %d, as a teacher]\n", strings.Join(dumpFiles, ", "), teacherK)
	}
	fmt.Fprintf(stdout, "A bigram model of %s (%d bytes): hidden states E[previous byte] (D %d), classifier W (%d × %d) and a bias,\n", name, len(text), dim, bigram.V, dim)
	fmt.Fprintf(stdout, "trained by SGD through the fused linear cross-entropy (no logits held; BLAS: %s).\n\n", d.Info().BLAS)
	for e := 0; e < len(losses); e += max(1, len(losses)/10) {
		fmt.Fprintf(stdout, "epoch %3d  loss %.3f nats  perplexity %6.2f\n", e, losses[e], math.Exp(losses[e]))
	}
	last := losses[len(losses)-1]
	fmt.Fprintf(stdout, "epoch %3d  loss %.3f nats  perplexity %6.2f  (ln 256 = %.3f)\n", len(losses)-1, last, math.Exp(last), math.Log(bigram.V))
	if plotTo == nil {
		return nil
	}
	pts := make(plotter.XYs, len(losses))
	for e, l := range losses {
		pts[e] = plotter.XY{X: float64(e), Y: l}
	}
	return writeCurve(plotTo, format, "xent: a bigram model learning through the fused linear cross-entropy", "epoch (full-batch SGD)", "mean loss (nats)", pts, 6*vg.Inch)
}

// dumpFiles are the files demo --linear --dump writes, in this order.
var dumpFiles = []string{"hidden.npy", "weight.npy", "bias.npy", "targets.npy", "teacher_ids.npy", "teacher_logprobs.npy"}

// teacherK is the k of the teacher's top-k that demo --linear --dump
// writes.
const teacherK = 8
