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
