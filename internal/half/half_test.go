package half

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestF16 checks every float16 against the value its fields define
// (computed in float64), and the edge cases by name.
func TestF16(t *testing.T) {
	for h := range 1 << 16 {
		got := F16(uint16(h))
		sign, exp, man := h>>15, (h>>10)&0x1f, h&0x3ff
		var want float64
		switch {
		case exp == 0x1f && man == 0:
			want = math.Inf(1)
		case exp == 0x1f:
			require.True(t, math.IsNaN(float64(got)), "%#04x", h)
			continue
		case exp == 0:
			want = float64(man) * math.Pow(2, -24)
		default:
			want = (1 + float64(man)/1024) * math.Pow(2, float64(exp-15))
		}
		if sign == 1 {
			want = -want
		}
		require.Equal(t, want, float64(got), "%#04x", h)
		require.Equal(t, sign == 1, math.Signbit(float64(got)), "%#04x: sign", h)
	}
	require.Equal(t, float32(65504), F16(0x7bff))
	require.Equal(t, float32(1), F16(0x3c00))
}

// TestBF16 checks that every bfloat16 becomes the float32 whose upper
// half it is, and the edge cases by name.
func TestBF16(t *testing.T) {
	require.Equal(t, float32(1), BF16(0x3f80))
	require.Equal(t, float32(-2), BF16(0xc000))
	require.True(t, math.IsInf(float64(BF16(0x7f80)), 1))
	require.True(t, math.IsNaN(float64(BF16(0x7fc0))))
	for b := range 1 << 16 {
		v := BF16(uint16(b))
		require.Equal(t, uint32(b)<<16, math.Float32bits(v), "%#04x", b)
	}
}

// roundsNearest checks that to(f) is the value of the type nearest f
// (ties to the even bits) for f, the values between neighbours of the
// type and just either side of their midpoints, for every pair of
// neighbours: from decodes bits, and each value of the type must round to
// itself.
func roundsNearest(t *testing.T, name string, to func(float32) uint16, from func(uint16) float32) {
	t.Helper()
	for h := range 1 << 16 {
		v := from(uint16(h))
		if math.IsNaN(float64(v)) {
			got := from(to(v))
			require.True(t, math.IsNaN(float64(got)), "%s: NaN %#04x became %v", name, h, got)
			continue
		}
		require.Equal(t, math.Float32bits(v), math.Float32bits(from(to(v))), "%s: %#04x (%v) does not round to itself", name, h, v)
		if h&0x7fff >= 0x7c00 && name == "f16" || h&0x7fff >= 0x7f80 && name == "bf16" {
			continue // Inf: no next value
		}
		next := uint16(h + 1) // the neighbour away from 0
		w := from(next)
		mid := (float64(v) + float64(w)) / 2
		if math.IsInf(float64(w), 0) { // past the largest value: the midpoint is where an ulp more would be
			mid = float64(v) + (float64(v)-float64(from(uint16(h-1))))/2
		}
		even := uint16(h)
		if h&1 == 1 {
			even = next
		}
		m32 := float32(mid)
		require.Equal(t, float64(m32), mid, "%s: the midpoint after %#04x is a float32", name, h)
		require.Equal(t, even, to(m32), "%s: midpoint %v after %#04x", name, mid, h)
		below, above := math.Nextafter32(m32, float32(v)), math.Nextafter32(m32, float32(math.Copysign(math.Inf(1), mid)))
		require.Equal(t, uint16(h), to(below), "%s: %v just before the midpoint after %#04x", name, below, h)
		require.Equal(t, next, to(above), "%s: %v just after the midpoint after %#04x", name, above, h)
	}
}

// TestF16Bits checks float32 → float16 rounding at every float16 and
// every midpoint between neighbours, and the edges by name.
func TestF16Bits(t *testing.T) {
	roundsNearest(t, "f16", F16Bits, F16)
	require.Equal(t, uint16(0x7c00), F16Bits(65520))
	require.Equal(t, uint16(0x7bff), F16Bits(65519.99))
	require.Equal(t, uint16(0x0000), F16Bits(0x1p-25))
	require.Equal(t, uint16(0x0001), F16Bits(0x1.000002p-25))
	require.Equal(t, uint16(0x8000), F16Bits(-1e-30))
	require.Equal(t, uint16(0xfc00), F16Bits(float32(math.Inf(-1))))
	require.Equal(t, uint16(0x7c00), F16Bits(math.MaxFloat32))
}

// TestBF16Bits checks float32 → bfloat16 rounding at every bfloat16 and
// every midpoint between neighbours, and the edges by name.
func TestBF16Bits(t *testing.T) {
	roundsNearest(t, "bf16", BF16Bits, BF16)
	require.Equal(t, uint16(0x7f80), BF16Bits(math.MaxFloat32))
	require.Equal(t, uint16(0x3f80), BF16Bits(1))
	require.Equal(t, uint16(0x0001), BF16Bits(math.Float32frombits(0x00008001)))
	require.True(t, math.IsNaN(float64(BF16(BF16Bits(math.Float32frombits(0x7f800001))))), "a NaN with its payload below the upper half")
}
