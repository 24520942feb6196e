package batch_test

import (
	"errors"
	"math"
	"testing"

	"github.com/xentlab/xent/batch"
	"github.com/xentlab/xent/device"
)

// FuzzOptions: arbitrary option values, shapes and targets either work or
// return one of the sentinel errors; nothing panics.
func FuzzOptions(f *testing.F) {
	f.Add(0.1, 1e-4, 30.0, int64(-100), 3, 5, int32(2), float32(1), uint8(0))
	f.Add(-1.0, math.Inf(1), math.NaN(), int64(4), 0, 0, int32(-7), float32(-1), uint8(7))
	f.Add(1.0, 0.0, 0.0, int64(1<<40), 2, 1, int32(0), float32(math.NaN()), uint8(2))
	dev, err := device.Open("cpu")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, eps, z, c float64, ignore int64, rows, cols int, tgt int32, w float32, red uint8) {
		if rows < -4 || rows > 64 || cols < -4 || cols > 64 {
			return
		}
		opts := []batch.Option{batch.LabelSmoothing(eps), batch.ZLoss(z), batch.Softcap(c), batch.IgnoreIndex(int(ignore)), batch.Reduce(batch.Reduction(red % 4))}
		if cols > 0 && w != 1 {
			ws := make([]float32, cols)
			for i := range ws {
				ws[i] = w
			}
			opts = append(opts, batch.Weights(ws))
		}
		l, err := batch.New(dev, opts...)
		if err != nil {
			if !errors.Is(err, batch.ErrOption) {
				t.Fatalf("New: %v is not ErrOption", err)
			}
			return
		}
		n := max(rows, 0) * max(cols, 0)
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(i%7) - 3
		}
		tg := make([]int32, max(rows, 0))
		for i := range tg {
			tg[i] = tgt + int32(i)
		}
		m := batch.Matrix{Data: x, Rows: rows, Cols: cols}
		check := func(err error) {
			if err != nil && !errors.Is(err, batch.ErrShape) && !errors.Is(err, batch.ErrTarget) && !errors.Is(err, batch.ErrBuffer) && !errors.Is(err, batch.ErrOption) {
				t.Fatalf("unexpected error kind: %v", err)
			}
		}
		_, err = l.Forward(ctx, m, tg)
		check(err)
		g := make([]float32, n)
		_, err = l.ForwardBackward(ctx, batch.GradInto(batch.Matrix{Data: g, Rows: rows, Cols: cols}), m, tg, batch.Scalar(w))
		check(err)
	})
}
