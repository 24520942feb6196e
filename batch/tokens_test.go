package batch_test

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/batch"
	"github.com/xentlab/xent/device"
	"github.com/xentlab/xent/internal/seed"
)

// tokenCase is a problem with per-row weights: 0 (the row left out),
// fractions, whole numbers, and an ignored row.
func tokenCase(t *testing.T, n, v, d int) (x, h, w []float32, tg []int32, tw []float32, denom float64) {
	r := seed.Rand(t, 29)
	x, h, w = make([]float32, n*v), make([]float32, n*d), make([]float32, v*d)
	for k := range x {
		x[k] = float32(r.NormFloat64() * 3)
	}
	for k := range h {
		h[k] = float32(r.NormFloat64())
	}
	for k := range w {
		w[k] = float32(r.NormFloat64() * 0.3)
	}
	tg, tw = make([]int32, n), make([]float32, n)
	for i := range tg {
		tg[i] = int32(r.IntN(v))
		tw[i] = []float32{0, 0.25, 1, 2, 3.5}[r.IntN(5)]
	}
	tg[1] = -100
	for i := range tg {
		if tg[i] >= 0 {
			denom += float64(tw[i])
		}
	}
	return x, h, w, tg, tw, denom
}

// TestTokenWeights: with per-row weights the mean is Σ w_i·loss_i / Σ w_i
// (the unweighted per-row losses, in float64), the per-row losses of
// reduction None are w_i·loss_i, and the gradient is the one of reduction
// None with dL/dloss_i = w_i / Σ w_i, bit for bit; all ones gives the
// same bits as no weights; through the fused linear as well.
func TestTokenWeights(t *testing.T) {
	const n, v, d = 37, 301, 9
	x, h, w, tg, tw, denom := tokenCase(t, n, v, d)
	dev, err := device.Open("cpu")
	require.NoError(t, err)
	up := make([]float32, n)
	for i := range up {
		up[i] = float32(float64(tw[i]) * (1 / denom))
	}
	m := batch.NewMatrix(x, n, v)

	plain, err := batch.New(dev, batch.Reduce(batch.None))
	require.NoError(t, err)
	gPlain := make([]float32, n*v)
	rp, err := plain.ForwardBackward(ctx, batch.NewGrad(gPlain, n, v), m, tg, batch.PerRow(up))
	require.NoError(t, err)

	weighted, err := batch.New(dev, batch.TokenWeights(tw), batch.KeepRows())
	require.NoError(t, err)
	gW := make([]float32, n*v)
	rw, err := weighted.ForwardBackward(ctx, batch.NewGrad(gW, n, v), m, tg, batch.One)
	require.NoError(t, err)
	want := 0.0
	for i, l := range rp.Losses {
		if tg[i] >= 0 {
			want += float64(tw[i]) * float64(l)
			require.Equal(t, float32(float64(tw[i])*float64(l)), rw.Losses[i], "row %d", i)
		}
	}
	require.InDelta(t, want/denom, rw.Loss, 1e-15*want/denom)
	require.Equal(t, denom, rw.Denom)
	require.Equal(t, gPlain, gW, "the gradient of the weighted mean is None's with dL/dloss_i = w_i/Σw")
	for j := range v {
		require.Zero(t, gW[1*v+j], "the ignored row")
	}

	ones := make([]float32, n)
	for i := range ones {
		ones[i] = 1
	}
	base, err := batch.New(dev)
	require.NoError(t, err)
	g0, g1 := make([]float32, n*v), make([]float32, n*v)
	r0, err := base.ForwardBackward(ctx, batch.NewGrad(g0, n, v), m, tg, batch.One)
	require.NoError(t, err)
	unit, err := batch.New(dev, batch.TokenWeights(ones))
	require.NoError(t, err)
	r1, err := unit.ForwardBackward(ctx, batch.NewGrad(g1, n, v), m, tg, batch.One)
	require.NoError(t, err)
	require.Equal(t, r0.Stats, r1.Stats)
	require.Equal(t, g0, g1)

	// The fused linear: the weighted mean against None with w_i/Σw.
	H, W := batch.NewMatrix(h, n, d), batch.NewMatrix(w, v, d)
	grads := func() batch.LinearGrads {
		return batch.LinearGrads{H: batch.NewGrad(make([]float32, n*d), n, d), W: batch.NewGrad(make([]float32, v*d), v, d)}
	}
	lp, err := batch.NewLinear(dev, batch.Reduce(batch.None))
	require.NoError(t, err)
	gp := grads()
	lrp, err := lp.ForwardBackward(ctx, gp, H, W, nil, tg, batch.PerRow(up))
	require.NoError(t, err)
	lw, err := batch.NewLinear(dev, batch.TokenWeights(tw))
	require.NoError(t, err)
	gw := grads()
	lrw, err := lw.ForwardBackward(ctx, gw, H, W, nil, tg, batch.One)
	require.NoError(t, err)
	want = 0
	for i, l := range lrp.Losses {
		if tg[i] >= 0 {
			want += float64(tw[i]) * float64(l)
		}
	}
	require.InDelta(t, want/denom, lrw.Loss, 1e-15*want/denom)
	require.Equal(t, gp.H.Matrix().Data, gw.H.Matrix().Data)
	require.Equal(t, gp.W.Matrix().Data, gw.W.Matrix().Data)
}

// TestTokenWeightsBad: a negative, NaN or infinite weight names its row,
// and a count that is not the rows' is a shape error.
func TestTokenWeightsBad(t *testing.T) {
	dev, err := device.Open("cpu")
	require.NoError(t, err)
	for _, c := range []struct {
		w   []float32
		msg string
	}{
		{[]float32{1, -1}, "batch: token weight -1 at row 1 must be finite and ≥ 0"},
		{[]float32{float32(math.NaN()), 1}, "batch: token weight NaN at row 0 must be finite and ≥ 0"},
		{[]float32{1, float32(math.Inf(1))}, "batch: token weight +Inf at row 1 must be finite and ≥ 0"},
	} {
		_, err := batch.New(dev, batch.TokenWeights(c.w))
		require.ErrorIs(t, err, batch.ErrOption)
		require.EqualError(t, err, c.msg)
	}
	l, err := batch.New(dev, batch.TokenWeights([]float32{1, 2, 3}))
	require.NoError(t, err)
	_, err = l.Forward(ctx, batch.NewMatrix(make([]float32, 8), 2, 4), []int32{0, 1})
	require.ErrorIs(t, err, batch.ErrShape)
	require.EqualError(t, err, "batch: expected 2 token weights to match 2 rows, got 3")
}
