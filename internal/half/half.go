// Package half converts IEEE 754 binary16 (float16) and bfloat16 values to
// float32, exactly (every value of either is a float32), and float32
// values to them, rounded to the nearest (ties to even).
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

// F16Bits returns the bits of the float16 nearest f (ties to even): past
// the largest float16 (65504) by half an ulp or more, ±Inf; below the
// smallest subnormal (2^-24) by half of it or more, ±0; NaN stays NaN
// (quiet, the payload's upper bits kept).
func F16Bits(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b >> 23 & 0xff)
	man := b & 0x7fffff
	if exp == 0xff { // Inf, NaN
		if man != 0 {
			return sign | 0x7e00 | uint16(man>>13)
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15 // the float16 exponent field
	var h, rem, halfway uint32
	switch {
	case e >= 31:
		return sign | 0x7c00
	case e >= 1:
		h, rem, halfway = uint32(e)<<10|man>>13, man&0x1fff, 0x1000
	case e >= -10: // a subnormal: (1.man)·2^(e-15) in units of 2^-24
		m, shift := man|0x800000, uint(14-e)
		h, rem, halfway = m>>shift, m&(1<<shift-1), 1<<(shift-1)
	default:
		return sign
	}
	if rem > halfway || rem == halfway && h&1 == 1 {
		h++ // a carry moves into the exponent, and to Inf past 65504
	}
	return sign | uint16(h)
}

// BF16Bits returns the bits of the bfloat16 nearest f (ties to even):
// the upper half of f's bits, rounded; past the largest bfloat16 by half
// an ulp or more, ±Inf; NaN stays NaN (quiet).
func BF16Bits(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40
	}
	b += 0x7fff + b>>16&1
	return uint16(b >> 16)
}
