package main

import (
	"errors"
	"io"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/xentlab/xent/internal/corpus"
)

// plotNeeds refuses --plot without what it draws: the loss by position,
// which needs --seq-len.
func plotNeeds(path string, cfg corpus.Config) error {
	if path != "" && cfg.SeqLen == 0 {
		return errors.New("--plot draws the loss by position: give --seq-len T")
	}
	return nil
}

// writePlot draws the mean loss at each position (positions where nothing
// counts left out) into o in format (nothing when o is nil).
func writePlot(o *output, format string, pos *corpus.Positions) error {
	if o == nil {
		return nil
	}
	p := plot.New()
	p.Title.Text = "xent: mean loss by position"
	p.X.Label.Text = "position t (row mod sequence length)"
	p.Y.Label.Text = "loss (nats)"
	var pts plotter.XYs
	for t, m := range pos.Means() {
		if !math.IsNaN(m) && !math.IsInf(m, 0) {
			pts = append(pts, plotter.XY{X: float64(t), Y: m})
		}
	}
	if len(pts) == 0 {
		return o.write(func(w io.Writer) error { return errors.New("no position counts: nothing to plot") })
	}
	l, err := plotter.NewLine(pts)
	if err != nil {
		return err
	}
	p.Add(l, plotter.NewGrid())
	wt, err := p.WriterTo(8*vg.Inch, 4*vg.Inch, format)
	if err != nil {
		return err
	}
	return o.write(func(w io.Writer) error { _, err := wt.WriteTo(w); return err })
}
