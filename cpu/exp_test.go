package cpu

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/internal/seed"
)

// ulps returns the distance of got from want in float32 units in the last place.
func ulps(got float32, want float64) float64 {
	w := float32(want)
	u := math.Nextafter32(w, float32(math.Inf(1))) - w
	return math.Abs(float64(got)-want) / float64(u)
}

func TestExp64(t *testing.T) {
	rng := seed.Rand(t, 6)
	worst := 0.0
	for range 1_000_000 {
		d := -700 + rng.Float64()*(700+88.8)
		if rng.IntN(2) == 0 {
			d = -20 + rng.Float64()*20
		}
		worst = max(worst, math.Abs(exp64(d)/math.Exp(d)-1))
	}
	t.Logf("exp64 worst relative error on [-700, 88.8]: %.3g", worst)
	require.Less(t, worst, 4e-8)
	require.InDelta(t, 1.0, exp64(0), 2e-8)
	require.Equal(t, exp64(-700), exp64(math.Inf(-1)))
	require.True(t, math.IsNaN(exp64(math.NaN())))
}

func TestExp32(t *testing.T) {
	rng := seed.Rand(t, 2)
	worst := 0.0
	for range 1_000_000 {
		x := float32(-87.29 + rng.Float64()*(87.29+88.3))
		worst = max(worst, ulps(exp32(x), math.Exp(float64(x))))
	}
	t.Logf("exp32 worst error on [-87.3, 88.3]: %.2f ulp", worst)
	require.LessOrEqual(t, worst, 1.5)
	for _, x := range []float32{0, -1e-30, 1e-30, -0.5, 0.5, -0.34657359, 0.34657359, -87.29, 88.3} {
		require.LessOrEqual(t, ulps(exp32(x), math.Exp(float64(x))), 1.5, "x=%g", x)
	}
	require.Equal(t, float32(1), exp32(0))
	require.Equal(t, float32(0), exp32(float32(math.Inf(-1))))
	require.Equal(t, float32(0), exp32(-104))
	require.Equal(t, float32(0), exp32(-1e30))
	require.True(t, math.IsNaN(float64(exp32(float32(math.NaN())))))
	// Below -87.3 the true result is subnormal: it is rounded to a float32
	// subnormal, off by less than the smallest normal float32.
	for x := float32(-110); x < -87.33; x += 0.001 {
		require.LessOrEqual(t, math.Abs(float64(exp32(x))-math.Exp(float64(x))), 1.2e-38, "x=%g", x)
	}
}

func TestTanh32(t *testing.T) {
	rng := seed.Rand(t, 4)
	worst := 0.0
	for range 1_000_000 {
		y := float32(rng.NormFloat64() * 2)
		want := math.Tanh(float64(y))
		worst = max(worst, math.Abs(float64(tanh32(y))-want)/math.Max(math.Abs(want), 1e-30))
	}
	t.Logf("tanh32 worst relative error: %.3g", worst)
	require.Less(t, worst, 4e-7)
	require.Equal(t, float32(1), tanh32(float32(math.Inf(1))))
	require.Equal(t, float32(-1), tanh32(float32(math.Inf(-1))))
	require.Equal(t, float32(0), tanh32(0))
	require.True(t, math.IsNaN(float64(tanh32(float32(math.NaN())))))
}
