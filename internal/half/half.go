// Package half converts IEEE 754 binary16 (float16) and bfloat16 values to
// float32, exactly (every value of either is a float32).
package half

import "math"

// F16 returns the float16 with bits h as a float32: subnormals, ±Inf and
// NaN (its payload kept) included.
func F16(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	man := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // Inf, NaN
		return math.Float32frombits(sign | 0x7f800000 | man<<13)
	case exp == 0 && man == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal: man·2^-24
		v := float32(man) * (1.0 / (1 << 24))
		if sign != 0 {
			v = -v
		}
		return v
	}
	return math.Float32frombits(sign | (exp+112)<<23 | man<<13)
}

// BF16 returns the bfloat16 with bits b as a float32: its bits are the
// float32's upper half.
func BF16(b uint16) float32 { return math.Float32frombits(uint32(b) << 16) }
