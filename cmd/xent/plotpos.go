package main

import (
	"errors"
	"fmt"
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
	var pts plotter.XYs
	for t, m := range pos.Means() {
		if !math.IsNaN(m) && !math.IsInf(m, 0) {
			pts = append(pts, plotter.XY{X: float64(t), Y: m})
		}
	}
	if len(pts) == 0 {
		o.discard()
		return fmt.Errorf("%s %s: no position counts: nothing to plot", o.flag, o.path)
	}
	return writeCurve(o, format, "xent: mean loss by position", "position t (row mod sequence length)", "loss (nats)", pts, 8*vg.Inch)
}

// writeCurve draws one curve, pts, with its title and axis labels, width ×
// 4 inches, into o in format (a gonum/plot format: "svg", "png", ...).
func writeCurve(o *output, format, title, x, y string, pts plotter.XYs, width vg.Length) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = x
	p.Y.Label.Text = y
	line, err := plotter.NewLine(pts)
	if err != nil {
		return err
	}
	p.Add(line)
	return o.write(func(w io.Writer) error {
		wt, err := p.WriterTo(width, 4*vg.Inch, format)
		if err != nil {
			return err
		}
		_, err = wt.WriteTo(w)
		return err
	})
}
