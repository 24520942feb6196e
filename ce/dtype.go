package ce

import (
	"fmt"

	"github.com/xentlab/xent/internal/half"
)

// DType is the element type of a matrix: float32, bfloat16 or float16.
// The arithmetic is float32 (and the reductions' float64) whatever the
// type: a half-precision row is widened exactly as it is read, and a
// half-precision gradient is rounded to the nearest (ties to even).
type DType uint8

const (
	F32  DType = iota // float32, the zero value
	BF16              // bfloat16: a float32's upper 16 bits (8 exponent bits, 7 mantissa bits)
	F16               // IEEE 754 binary16 (5 exponent bits, 10 mantissa bits; largest 65504)
)

// Types are the element types, float32 first.
var Types = []DType{F32, BF16, F16}

// Size returns the bytes of one element.
func (t DType) Size() int {
	if t == F32 {
		return 4
	}
	return 2
}

func (t DType) String() string {
	switch t {
	case F32:
		return "float32"
	case BF16:
		return "bfloat16"
	case F16:
		return "float16"
	}
	return fmt.Sprintf("DType(%d)", uint8(t))
}

// Round returns v rounded to t (to the nearest, ties to even), as a
// float32: v itself for F32.
func (t DType) Round(v float32) float32 {
	switch t {
	case BF16:
		return half.BF16(half.BF16Bits(v))
	case F16:
		return half.F16(half.F16Bits(v))
	}
	return v
}
