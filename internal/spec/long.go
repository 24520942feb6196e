package spec

import (
	"context"
	"math"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/batch"
	"github.com/xentlab/xent/device"
)

// RunPast2p31 evaluates a 65537 × 32768 matrix (2^31 + 32768 elements, 8.6
// GB) on dev, with the fused gradient in place, and checks every row
// against its closed form: row i is base_i everywhere but one spike of
// base_i + 5, so lse = base_i + log(C - 1 + e^5). It runs only with
// XENT_LONG=1 (CI sets it).
func RunPast2p31(t *testing.T, dev device.Device) {
	if os.Getenv("XENT_LONG") != "1" {
		t.Skip("set XENT_LONG=1 for the 8.6 GB test past 2^31 elements")
	}
	if strconv.IntSize < 64 {
		t.Skip("a matrix past 2^31 elements needs 64-bit ints")
	}
	// Variables, not constants: rows*cols must not be a constant that
	// overflows a 32-bit int where this compiles but skips.
	rows, cols := 1<<16+1, 1<<15
	require.Greater(t, int64(rows)*int64(cols), int64(1)<<31)
	base := func(i int) float32 { return float32(i%97)*0.5 - 20 }
	spike := func(i int) int { return (i * 7919) % cols }
	target := func(i int) int32 { return int32((i * 31) % cols) }
	x := make([]float32, rows*cols)
	var wg sync.WaitGroup
	procs := runtime.GOMAXPROCS(0)
	for p := range procs {
		wg.Go(func() {
			for i := rows * p / procs; i < rows*(p+1)/procs; i++ {
				row := x[i*cols : (i+1)*cols]
				b := base(i)
				for j := range row {
					row[j] = b
				}
				row[spike(i)] = b + 5
			}
		})
	}
	wg.Wait()
	tg := make([]int32, rows)
	for i := range tg {
		tg[i] = target(i)
	}
	l, err := batch.New(dev, batch.Reduce(batch.None))
	require.NoError(t, err)
	m := batch.NewMatrix(x, rows, cols)
	r, err := l.ForwardBackward(context.Background(), batch.InPlace(m), m, tg, batch.One)
	require.NoError(t, err)
	ls := math.Log(float64(cols-1) + math.Exp(5))
	for i := range rows {
		b := float64(base(i))
		zt := b
		if int(tg[i]) == spike(i) {
			zt = b + 5
		}
		want := b + ls - zt
		require.InDelta(t, want, r.Losses[i], 1e-5*math.Max(1, want), "row %d", i)
	}
	// The gradient of the last rows (past 2^31): p_j - δ_jt.
	for _, i := range []int{rows - 1, rows - 2, 1 << 16} {
		for _, j := range []int{0, spike(i), int(tg[i]), cols - 1} {
			z := float64(base(i))
			if j == spike(i) {
				z += 5
			}
			want := math.Exp(z - float64(base(i)) - ls)
			if j == int(tg[i]) {
				want--
			}
			require.InDelta(t, want, x[i*cols+j], 1e-6, "gradient row %d col %d", i, j)
		}
	}
	t.Logf("%d × %d = %d elements checked on %s", rows, cols, rows*cols, dev.Info().Spec)
}

// RunLinearPast2p31 runs the fused linear on 17000 tokens × 128256
// classes (2.18·10⁹ logits, past 2^31, never held) with D 2 and checks
// every row against its closed form: H_i = (1, s_i), W_k = (0, 1) for one
// class k and 0 elsewhere, so z_ij = s_i at k and 0 elsewhere: lse_i =
// log(V - 1 + e^{s_i}), and dH_i = (0, p_ik - [t_i = k]) for the sum. It
// runs only with XENT_LONG=1 (CI sets it).
func RunLinearPast2p31(t *testing.T, dev device.Device) {
	if os.Getenv("XENT_LONG") != "1" {
		t.Skip("set XENT_LONG=1 for the fused linear past 2^31 logits")
	}
	n, v, k := 17000, 128256, 77777
	require.Greater(t, int64(n)*int64(v), int64(1)<<31)
	h, w := make([]float32, 2*n), make([]float32, 2*v)
	s := func(i int) float64 { return float64(i%53)*0.25 - 6 }
	tg := make([]int32, n)
	for i := range n {
		h[2*i], h[2*i+1] = 1, float32(s(i))
		tg[i] = int32((i * 7919) % v)
		if i%5 == 0 {
			tg[i] = int32(k)
		}
	}
	w[2*k+1] = 1
	l, err := batch.NewLinear(dev, batch.Reduce(batch.Sum), batch.KeepRows())
	require.NoError(t, err)
	dh := make([]float32, 2*n)
	g := batch.LinearGrads{H: batch.NewGrad(dh, n, 2)}
	r, err := l.ForwardBackward(context.Background(), g, batch.NewMatrix(h, n, 2), batch.NewMatrix(w, v, 2), nil, tg, batch.One)
	require.NoError(t, err)
	for i := range n {
		si := float64(float32(s(i)))
		lse := math.Log(float64(v-1) + math.Exp(si))
		zt, hit := 0.0, 0.0
		if int(tg[i]) == k {
			zt, hit = si, 1
		}
		require.InDelta(t, lse-zt, float64(r.Losses[i]), 1e-5*math.Max(1, lse), "row %d", i)
		pk := math.Exp(si - lse)
		require.Zero(t, dh[2*i], "dH[%d][0]", i)
		require.InDelta(t, pk-hit, float64(dh[2*i+1]), 1e-5*math.Max(pk, hit)+1e-30, "dH[%d][1]", i)
	}
	t.Logf("%d × %d = %d logits checked (never held)", n, v, int64(n)*int64(v))
}
