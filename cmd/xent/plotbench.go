package main

import (
	"fmt"
	"image/color"
	"io"
	"math"
	"sort"

	"github.com/xentlab/xent/bench"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// plotBench writes to w a plot of throughput against vocabulary size (log
// scale), one line per (device, mode, op), with the measured rooflines
// (CPU read, each OpenCL device's copy bandwidth) as dashed lines, in
// format: "svg", "png" or another of gonum/plot's (plot.Plot.WriterTo).
// Results and rooflines that are not positive (a hand-written report's)
// are left out; a report with nothing to plot is an error.
func plotBench(w io.Writer, rep *bench.Report, format string) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("xent: softmax cross-entropy throughput (batch %d)", batchOf(rep))
	p.X.Label.Text = "vocabulary size"
	p.Y.Label.Text = "GB/s of logits (log scale)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	series := map[string]plotter.XYs{}
	var keys []string
	var results []bench.Result
	for _, r := range rep.Results {
		if r.GBps > 0 && r.Vocab > 0 && !math.IsInf(r.GBps, 0) {
			results = append(results, r)
		}
	}
	if len(results) == 0 {
		return fmt.Errorf("no result with a positive throughput to plot (of %d)", len(rep.Results))
	}
	for _, r := range results {
		k := fmt.Sprintf("%s %s %s", r.Device, r.Mode, r.Op)
		if _, ok := series[k]; !ok {
			keys = append(keys, k)
		}
		series[k] = append(series[k], plotter.XY{X: float64(r.Vocab), Y: r.GBps})
	}
	sort.Strings(keys)
	for i, k := range keys {
		pts := series[k]
		sort.Slice(pts, func(a, b int) bool { return pts[a].X < pts[b].X })
		l, s, err := plotter.NewLinePoints(pts)
		if err != nil {
			return err
		}
		l.Color, s.Color = plotutil.Color(i), plotutil.Color(i)
		s.Shape = plotutil.Shape(i)
		p.Add(l, s)
		p.Legend.Add(k, l, s)
	}
	minX, maxX := 0.0, 1.0
	for _, r := range results {
		if minX == 0 || float64(r.Vocab) < minX {
			minX = float64(r.Vocab)
		}
		maxX = max(maxX, float64(r.Vocab))
	}
	lines := []struct {
		name string
		v    float64
	}{{"roofline: cpu read", rep.Roofline.ReadGBps}}
	seen := map[string]bool{}
	for _, r := range results { // each device's own memory bandwidth
		if r.Mode == "kernel" && !seen[r.Device] {
			seen[r.Device] = true
			lines = append(lines, struct {
				name string
				v    float64
			}{"roofline: " + r.Device + " device copy", r.RooflineGB})
		}
	}
	for _, rl := range lines {
		if !(rl.v > 0) || math.IsInf(rl.v, 0) {
			continue
		}
		l, err := plotter.NewLine(plotter.XYs{{X: minX, Y: rl.v}, {X: maxX, Y: rl.v}})
		if err != nil {
			return err
		}
		l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		l.Color = color.Gray{Y: 90}
		p.Add(l)
		p.Legend.Add(rl.name, l)
	}
	p.Legend.Top = true
	p.Legend.Left = true
	wt, err := p.WriterTo(9*vg.Inch, 6*vg.Inch, format)
	if err != nil {
		return err
	}
	_, err = wt.WriteTo(w)
	return err
}

func batchOf(rep *bench.Report) int {
	if len(rep.Results) > 0 {
		return rep.Results[0].Batch
	}
	return 0
}
