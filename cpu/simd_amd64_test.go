//go:build goexperiment.simd && amd64 && !nosimd

package cpu

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/internal/seed"
)

// TestExpAVX2 checks the vector exp lane by lane against math.Exp, within
// 2 + |x|/20 ulp where the result is normal (see expChunk: 3 ulp on
// [-16, 0]), and its edge cases.
func TestExpAVX2(t *testing.T) {
	if SIMD == nil {
		t.Skip(SIMDUnavailable())
	}
	rng := seed.Rand(t, 1)
	x := make([]float32, 1<<16+13)
	for i := range x {
		x[i] = float32(-87.3 * rng.Float64())
	}
	copy(x, []float32{0, -1e-30, -0.34657359, -87.3, -40, -1})
	e := make([]float32, len(x))
	s := expSumAVX2(e, x, 0, nil)
	worst, worst16, sum := 0.0, 0.0, 0.0
	for i, v := range x {
		want := math.Exp(float64(v))
		sum += want
		u := ulps(e[i], want)
		require.LessOrEqual(t, u, 2-float64(v)/20, "exp(%g)", v)
		worst = max(worst, u)
		if v >= -16 {
			worst16 = max(worst16, u)
		}
	}
	t.Logf("AVX2 exp worst error %.2f ulp on [-16, 0], %.2f ulp on [-87.3, 0], over %d values", worst16, worst, len(x))
	require.InDelta(t, sum, s, 1e-6*sum)
	edge := make([]float32, 16)
	for i := range edge {
		edge[i] = float32(math.Inf(-1))
	}
	edge[1], edge[2] = -88, -1000
	out := make([]float32, 16)
	s = expSumAVX2(out, edge, 0, nil)
	require.Zero(t, s)
	for _, v := range out {
		require.Zero(t, v)
	}
	for n := range 70 {
		for at := range n {
			x := make([]float32, n)
			x[at] = float32(math.NaN())
			_, nan := maxAVX2(x)
			require.True(t, nan, "NaN at %d of %d", at, n)
		}
	}
}

// TestCapAVX2 checks the vector soft cap c·tanh(x/c) against math.Tanh at
// lengths around the vector width, with ±Inf, NaN, zeros, subnormals and
// values either side of the series' cut-off 0.3·c.
func TestCapAVX2(t *testing.T) {
	if SIMD == nil {
		t.Skip(SIMDUnavailable())
	}
	rng := seed.Rand(t, 2)
	const c = 30
	for _, n := range []int{1, 7, 8, 9, 17, 1000} {
		x := make([]float32, n)
		for i := range x {
			switch rng.IntN(6) {
			case 0:
				x[i] = float32(rng.NormFloat64() * 3) // |y| < 0.3 mostly
			case 1:
				x[i] = float32(0.3*c + (rng.Float64()-0.5)*1e-3) // at the cut-off
			default:
				x[i] = float32(rng.NormFloat64() * 100)
			}
		}
		copy(x, []float32{float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), 0, 1e-40, -9, 9, 3e38})
		dst := make([]float32, n+3)
		capAVX2(dst, x, c, 1.0/c)
		for i, v := range x {
			want := c * math.Tanh(float64(v)/c)
			got := float64(dst[i])
			switch {
			case math.IsNaN(want):
				require.True(t, math.IsNaN(got), "cap(%g) = %g, want NaN", v, got)
			default:
				require.InDelta(t, want, got, 4e-7*math.Abs(want)+1e-43, "cap(%g) (n %d)", v, n)
			}
		}
		require.Equal(t, []float32{0, 0, 0}, dst[n:], "written past the end")
	}
}
