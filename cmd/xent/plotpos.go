package main

import (
	"errors"
	"fmt"
	"image/color"
	"io"
	"math"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/xentlab/xent/batch"
	"github.com/xentlab/xent/internal/corpus"
)

// plotNeeds sets in cfg what --plot draws where nothing else asks for it:
// the loss by position, at the files' sequence length (the evaluation
// refuses a file without one, naming it), unless --calibration asks for
// the reliability diagram.
func plotNeeds(path string, cfg *corpus.Config) {
	if path != "" && cfg.SeqLen == 0 && !cfg.Calibration {
		cfg.ByPosition = true
	}
}

// writePlot draws into o in format (nothing when o is nil) the mean loss
// at each position (positions where nothing counts left out), with
// --stderr in its 95% band, and the reliability diagram, those t has, one
// above the other.
func writePlot(o *output, format string, t corpus.Total) error {
	if o == nil {
		return nil
	}
	var ps []*plot.Plot
	if t.Positions != nil {
		var pts plotter.XYs
		for t, m := range t.Positions.Means() {
			if !math.IsNaN(m) && !math.IsInf(m, 0) {
				pts = append(pts, plotter.XY{X: float64(t), Y: m})
			}
		}
		if len(pts) == 0 {
			o.discard()
			return fmt.Errorf("%s %s: no position counts: nothing to plot", o.flag, o.path)
		}
		poly, err := band(t.Positions)
		if err != nil {
			return err
		}
		var under []plot.Plotter
		if poly != nil {
			under = append(under, poly)
		}
		p, err := curve("xent: mean loss by position", "position t (row mod sequence length)", "loss (nats)", pts, under...)
		if err != nil {
			return err
		}
		if poly != nil {
			p.Legend.Add("95% interval (over the sequences)", poly)
			p.Legend.Top = true
		}
		ps = append(ps, p)
	}
	if c := t.Calibration; c != nil {
		p, err := reliability(c)
		if err != nil {
			o.discard()
			return fmt.Errorf("%s %s: %w", o.flag, o.path, err)
		}
		ps = append(ps, p)
	}
	return writePlots(o, format, 8*vg.Inch, ps...)
}

// reliability returns the reliability diagram of c: each bin's accuracy
// against its mean confidence (bins without rows left out), beside the
// diagonal of a calibrated model, titled with the ECE.
func reliability(c *batch.Calibration) (*plot.Plot, error) {
	var pts plotter.XYs
	for _, b := range corpus.Bins(c) {
		if b.Rows > 0 {
			pts = append(pts, plotter.XY{X: *b.Confidence, Y: *b.Accuracy})
		}
	}
	if len(pts) == 0 {
		return nil, errors.New("no row has a confidence: no reliability diagram to draw")
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("xent: reliability (%d bins, ECE %.4f over %d rows)", batch.CalibrationBins, c.ECE(), c.Binned())
	p.X.Label.Text = "confidence (mean max p of the bin)"
	p.Y.Label.Text = "accuracy (argmax = target)"
	p.X.Min, p.X.Max, p.Y.Min, p.Y.Max = 0, 1, 0, 1
	diag, err := plotter.NewLine(plotter.XYs{{X: 0, Y: 0}, {X: 1, Y: 1}})
	if err != nil {
		return nil, err
	}
	diag.Dashes = []vg.Length{vg.Points(4), vg.Points(4)}
	line, points, err := plotter.NewLinePoints(pts)
	if err != nil {
		return nil, err
	}
	p.Add(diag, line, points)
	p.Legend.Add("calibrated", diag)
	p.Legend.Add("bins", line, points)
	p.Legend.Top, p.Legend.Left = true, true
	return p, nil
}

// band returns the 95% interval of each position's mean of pos
// (Interval95 over the sequences counted there) as a shaded polygon, over
// the positions where pos has its spreads and the interval is finite;
// nil where there is none.
func band(pos *corpus.Positions) (*plotter.Polygon, error) {
	if pos.Spread == nil {
		return nil, nil
	}
	var hi, lo plotter.XYs
	for t, m := range pos.Means() {
		l, h := corpus.Interval95(m, pos.Spread[t].StdErr(), pos.Spread[t].Clusters)
		if math.IsNaN(l+h) || math.IsInf(l+h, 0) {
			continue
		}
		hi, lo = append(hi, plotter.XY{X: float64(t), Y: h}), append(lo, plotter.XY{X: float64(t), Y: l})
	}
	if len(hi) == 0 {
		return nil, nil
	}
	slices.Reverse(lo)
	poly, err := plotter.NewPolygon(append(hi, lo...))
	if err != nil {
		return nil, err
	}
	poly.Color, poly.LineStyle.Width = color.Gray{Y: 210}, 0
	return poly, nil
}

// curve returns a plot of one curve, pts, with its title and axis
// labels, drawn over the plotters under.
func curve(title, x, y string, pts plotter.XYs, under ...plot.Plotter) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = x
	p.Y.Label.Text = y
	line, err := plotter.NewLine(pts)
	if err != nil {
		return nil, err
	}
	p.Add(under...)
	p.Add(line)
	return p, nil
}

// writeCurve draws one curve, pts, with its title and axis labels, width ×
// 4 inches, into o in format (a gonum/plot format: "svg", "png", ...).
func writeCurve(o *output, format, title, x, y string, pts plotter.XYs, width vg.Length) error {
	p, err := curve(title, x, y, pts)
	if err != nil {
		return err
	}
	return writePlots(o, format, width, p)
}

// writePlots draws ps one above the other, each width × 4 inches, into o
// in format.
func writePlots(o *output, format string, width vg.Length, ps ...*plot.Plot) error {
	return o.write(func(w io.Writer) error {
		if len(ps) == 1 {
			wt, err := ps[0].WriterTo(width, 4*vg.Inch, format)
			if err != nil {
				return err
			}
			_, err = wt.WriteTo(w)
			return err
		}
		c, err := draw.NewFormattedCanvas(width, vg.Length(len(ps))*4*vg.Inch, format)
		if err != nil {
			return err
		}
		rows := make([][]*plot.Plot, len(ps))
		for i, p := range ps {
			rows[i] = []*plot.Plot{p}
		}
		cs := plot.Align(rows, draw.Tiles{Rows: len(ps), Cols: 1, PadY: vg.Points(12)}, draw.New(c))
		for i, p := range ps {
			p.Draw(cs[i][0])
		}
		_, err = c.WriteTo(w)
		return err
	})
}
