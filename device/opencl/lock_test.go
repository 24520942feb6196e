package opencl_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/ce"
	"github.com/xentlab/xent/device"
	"github.com/xentlab/xent/device/opencl"
)

func linearInput(n, v, d int) (*ce.Linear, []int32) {
	h := make([]float32, n*d)
	w := make([]float32, v*d)
	for i := range h {
		h[i] = float32(i%7) / 7
	}
	for i := range w {
		w[i] = float32(i%5) / 5
	}
	tg := make([]int32, n)
	for i := range tg {
		tg[i] = int32(i % v)
	}
	return &ce.Linear{H: ce.Matrix{Data: h, Rows: n, Cols: d, Stride: d}, W: ce.Matrix{Data: w, Rows: v, Cols: d, Stride: d}}, tg
}

// TestLinearAfterClose: a fused linear call on a closed device returns
// device.ErrClosed, as every other call does.
func TestLinearAfterClose(t *testing.T) {
	linearTest(t, func(t *testing.T) {
		d, err := opencl.Open("")
		require.NoError(t, err)
		require.NoError(t, d.Close())
		lin, tg := linearInput(4, 9, 3)
		err = d.(device.FusedLinear).LinearCrossEntropy(context.Background(), ce.Out{Loss: make([]float32, 4)}, nil, lin, tg, &ce.Problem{})
		require.ErrorIs(t, err, device.ErrClosed)
	})
}

// TestLinearReleaseRace: releasing a resident W while a fused linear call
// uses it is serialized by the device (run with -race): the call either
// runs before the release or says ErrReleased.
func TestLinearReleaseRace(t *testing.T) {
	linearTest(t, func(t *testing.T) {
		d := openTest(t)
		ctx := context.Background()
		for range 20 {
			lin, tg := linearInput(8, 33, 5)
			buf, err := d.Upload(ctx, lin.W)
			require.NoError(t, err)
			lin.W = ce.BufferMatrix(buf)
			var wg sync.WaitGroup
			wg.Go(func() { buf.Release() })
			err = d.LinearCrossEntropy(ctx, ce.Out{Loss: make([]float32, 8)}, nil, lin, tg, &ce.Problem{})
			wg.Wait()
			if err != nil && !errors.Is(err, device.ErrReleased) {
				t.Fatal(err)
			}
		}
	})
}

// TestLinearHostWaits: a fused linear call over the whole vocabulary
// (forward and gradients) waits for the device the same number of times
// whatever its number of chunks: no wait per chunk or tile.
func TestLinearHostWaits(t *testing.T) {
	linearTest(t, func(t *testing.T) {
		d := openTest(t)
		ctx := context.Background()
		const v, dim = 100, 8
		waits := func(n int) int64 {
			lin, tg := linearInput(n, v, dim)
			lin.Budget = 4 * v * 64 // chunks of 64 rows over all the classes
			g := &ce.LinearGrad{H: ce.Matrix{Data: make([]float32, n*dim), Rows: n, Cols: dim, Stride: dim},
				W: ce.Matrix{Data: make([]float32, v*dim), Rows: v, Cols: dim, Stride: dim}, Bias: make([]float32, v), Scale: make([]float32, n)}
			for i := range g.Scale {
				g.Scale[i] = 1
			}
			before := opencl.HostWaits()
			require.NoError(t, d.LinearCrossEntropy(ctx, ce.Out{Loss: make([]float32, n)}, g, lin, tg, &ce.Problem{}))
			return opencl.HostWaits() - before
		}
		two, eight := waits(128), waits(512)
		t.Logf("host waits: %d with 2 chunks, %d with 8", two, eight)
		require.Equal(t, two, eight, "a wait per chunk")
	})
}

// TestLinearFusedHostWaits: on linear.cl's kernels (Tuning.LinTile) a
// fused forward + backward over several splits of the classes waits for
// the device once, at the end: the splits' partials merge on the device
// for the gradients (xent_lin_merge) and on the host only after.
func TestLinearFusedHostWaits(t *testing.T) {
	d := openFused(t, 16, 0)
	const n, v, dim = 64, 1000, 8
	lin, tg := linearInput(n, v, dim)
	g := &ce.LinearGrad{H: ce.Matrix{Data: make([]float32, n*dim), Rows: n, Cols: dim, Stride: dim},
		W: ce.Matrix{Data: make([]float32, v*dim), Rows: v, Cols: dim, Stride: dim}, Bias: make([]float32, v), Scale: make([]float32, n)}
	for i := range g.Scale {
		g.Scale[i] = 1
	}
	out := ce.Out{Loss: make([]float32, n)}
	before := opencl.HostWaits()
	require.NoError(t, d.LinearCrossEntropy(context.Background(), out, g, lin, tg, &ce.Problem{}))
	require.Equal(t, int64(1), opencl.HostWaits()-before, "one wait a call")
	require.NotZero(t, out.Loss[0], "the losses are finished after the wait")
}
