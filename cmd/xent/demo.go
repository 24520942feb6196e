package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"

	"github.com/xentlab/xent/batch"
	"github.com/xentlab/xent/device"
	"github.com/xentlab/xent/internal/gen"
)

// demo computes the textbook worked example through the library: the
// logits are log-probabilities, so the softmax gives them back.
func demo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	dev := fs.String("device", "cpu", "device: cpu, auto, opencl, opencl:P:D")
	if err := parse(fs, args, stderr); err != nil {
		return err
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
