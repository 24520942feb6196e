package device

import (
	"context"

	"github.com/xentlab/xent/ce"
	"github.com/xentlab/xent/cpu"
)

// Gather implements Gatherer on host rows and d's own buffers.
func (d *CPUDevice) Gather(ctx context.Context, z []float32, x ce.Matrix, cols []int32, k int) error {
	m, done, err := d.host(x)
	if err != nil {
		return err
	}
	defer done()
	return gatherRows(ctx, m.Rows, k, func(lo, hi int) {
		for e := lo * k; e < hi*k; e++ {
			z[e] = 0
			if c := cols[e]; c >= 0 {
				z[e] = m.At(e/k, int(c))
			}
		}
	})
}

// LinearGather implements Gatherer on host rows and d's own buffers: each
// logit a float64 sum of the float64 products, rounded once.
func (d *CPUDevice) LinearGather(ctx context.Context, z []float32, lin *ce.Linear, cols []int32, k int) error {
	if lin.H.Buf != nil {
		return errHostH
	}
	w, done, err := d.host(lin.W)
	if err != nil {
		return err
	}
	defer done()
	h := lin.H
	return gatherRows(ctx, h.Rows, k, func(lo, hi int) {
		hr := make([]float64, h.Cols) // row i of H
		for i := lo; i < hi; i++ {
			for j := range hr {
				hr[j] = float64(h.At(i, j))
			}
			for e := i * k; e < (i+1)*k; e++ {
				z[e] = 0
				c := int(cols[e])
				if c < 0 {
					continue
				}
				s := 0.0
				for j, v := range hr {
					s += v * float64(w.At(c, j))
				}
				if lin.Bias != nil {
					s += float64(lin.Bias[c])
				}
				z[e] = float32(s)
			}
		}
	})
}

// gatherRows runs f over ranges of rows rows of k entries, on every core
// when they are many (an entry costs about 16 of a streaming kernel's
// elements: its reads miss the cache), checking ctx first.
func gatherRows(ctx context.Context, rows, k int, f func(lo, hi int)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	cpu.Parallel(rows, 16*k, f)
	return nil
}
