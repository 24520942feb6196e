package main

import (
	"context"
	"fmt"
	"io"

	"github.com/xentlab/xent/batch"
	"github.com/xentlab/xent/internal/npyfile"
	"github.com/xentlab/xent/internal/tensorfile"
)

type linearArgs struct {
	hidden, weight, bias, targets, weights string
	tokenWeights                           string
	dev                                    string
	rowsOut, gradHidden, gradWeight        *output // nil: not asked for
	ignore, budget                         int
	smoothing, zloss, softcap              float64
	say                                    func(string)
	asJSON                                 bool
}

// evalLinear evaluates the fused linear cross-entropy of hidden states and
// a classifier, and writes the gradients of the mean loss when asked.
// Every file is read and checked before anything is computed or written.
func evalLinear(ctx context.Context, a linearArgs, stdout, stderr io.Writer) error {
	// H and W are computed in their files' types: a bfloat16 or float16
	// classifier is widened a tile at a time (on the CPU), not whole.
	ht, hdone, err := tensorfile.Read(a.hidden, "")
	if err != nil {
		return err
	}
	defer hdone()
	wt, wdone, note, err := tensorfile.Classifier(a.weight)
	if err != nil {
		return err
	}
	defer wdone()
	if note != "" {
		fmt.Fprintf(stderr, "xent eval: %s\n", note)
	}
	n, d, v, dw := ht.Rows, ht.Cols, wt.Rows, wt.Cols
	if dw != d {
		return fmt.Errorf("%s: %d features per class, the hidden states of %s have %d (the weight is classes × features, nn.Linear's layout)", a.weight, dw, a.hidden, d)
	}
	tg, err := npyfile.Read(a.targets, (*npyfile.File).Targets)
	if err != nil {
		return err
	}
	if len(tg) != n {
		return fmt.Errorf("%s: expected %d targets to match the %d rows of %s, got %d", a.targets, n, n, a.hidden, len(tg))
	}
	for i, t := range tg {
		if int(t) != a.ignore && (t < 0 || int(t) >= v) {
			return fmt.Errorf("%s: target %d out of bounds [0, %d) at row %d (ignore index %d)", a.targets, t, v, i, a.ignore)
		}
	}
	var b []float32
	if a.bias != "" {
		if b, err = npyfile.Read(a.bias, (*npyfile.File).Vector); err != nil {
			return err
		}
		if len(b) != v {
			return fmt.Errorf("%s: expected %d bias values to match the %d classes of %s, got %d", a.bias, v, v, a.weight, len(b))
		}
	}
	opts := []batch.Option{batch.IgnoreIndex(a.ignore), batch.LabelSmoothing(a.smoothing), batch.ZLoss(a.zloss),
		batch.Softcap(a.softcap), batch.Budget(a.budget), batch.KeepRows()}
	if a.weights != "" {
		cw, err := npyfile.Read(a.weights, (*npyfile.File).Vector)
		if err != nil {
			return err
		}
		if len(cw) != v {
			return fmt.Errorf("%s: expected %d class weights to match the %d classes of %s, got %d", a.weights, v, v, a.weight, len(cw))
		}
		opts = append(opts, batch.Weights(cw))
	}
	tw, err := readTokenWeights(a.tokenWeights, n, a.hidden)
	if err != nil {
		return err
	}
	if tw != nil {
		opts = append(opts, batch.TokenWeights(tw))
	}

	dev, err := openDevice(a.dev, a.say)
	if err != nil {
		return err
	}
	defer dev.Close()
	ce, err := batch.NewLinear(dev, opts...)
	if err != nil {
		return err
	}
	hm, wm := matrixOf(ht), matrixOf(wt)
	var res batch.Result
	var g batch.LinearGrads
	if a.gradHidden != nil || a.gradWeight != nil {
		if a.gradHidden != nil {
			g.H = batch.NewGrad(make([]float32, n*d), n, d)
		}
		if a.gradWeight != nil {
			g.W = batch.NewGrad(make([]float32, v*d), v, d)
		}
		res, err = ce.ForwardBackward(ctx, g, hm, wm, b, tg, batch.One)
	} else {
		res, err = ce.Forward(ctx, hm, wm, b, tg)
	}
	if err != nil {
		return err
	}
	for _, out := range []struct {
		o *output
		m batch.Matrix
	}{{a.gradHidden, g.H.Matrix()}, {a.gradWeight, g.W.Matrix()}} {
		if out.o != nil {
			if err := writeNpy(out.o, rowsOf(out.m)); err != nil {
				return err
			}
		}
	}
	if err := writeNpy(a.rowsOut, res.Losses); err != nil {
		return err
	}
	return report(stdout, dev, res.Stats, a.ignore, a.asJSON)
}

// matrixOf returns the batch matrix of t, in its type.
func matrixOf(t tensorfile.Tensor) batch.Matrix {
	if t.Half != nil {
		return batch.NewHalfMatrix(t.Half, halfType(t.BF16), t.Rows, t.Cols)
	}
	return batch.NewMatrix(t.F32, t.Rows, t.Cols)
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
