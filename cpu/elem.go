package cpu

import (
	"fmt"

	"github.com/xentlab/xent/internal/half"
)

// DType is the element type of a matrix: float32, bfloat16 or float16.
// The arithmetic is float32 (and the reductions' float64) whatever the
// type: the row driver widens a half-precision row a chunk at a time (in
// L1) into the float32 loops, and narrows a half-precision gradient the
// same way, rounded to the nearest (ties to even).
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

// Widen sets dst_j to src_j, the 16-bit elements of type t (BF16 or F16),
// as float32 values (exact); len(dst) ≥ len(src).
func Widen(dst []float32, src []uint16, t DType) { Default.widen(dst, src, t) }

// Narrow sets dst_j to src_j rounded to t (BF16 or F16); len(dst) ≥ len(src).
func Narrow(dst []uint16, src []float32, t DType) { Default.narrow(dst, src, 1, t) }

// halfKernels are an implementation's conversions (see widen and
// narrow); Portable's are the loops below.
type halfKernels struct {
	fromBF16, fromF16 func(dst []float32, src []uint16)
	toBF16, toF16     func(dst []uint16, src []float32, c float32) // dst_j = c·src_j, rounded
}

var portableHalf = halfKernels{fromBF16: fromBF16Generic, fromF16: fromF16Generic, toBF16: toBF16Generic, toF16: toF16Generic}

// widen sets dst_j to src_j of type t (BF16 or F16) as float32.
func (k *Impl) widen(dst []float32, src []uint16, t DType) {
	if t == BF16 {
		k.half.fromBF16(dst[:len(src)], src)
	} else {
		k.half.fromF16(dst[:len(src)], src)
	}
}

// narrow sets dst_j to c·src_j (a float32 product) rounded to t (BF16 or
// F16): a scale pass and the narrowing in one.
func (k *Impl) narrow(dst []uint16, src []float32, c float32, t DType) {
	if t == BF16 {
		k.half.toBF16(dst[:len(src)], src, c)
	} else {
		k.half.toF16(dst[:len(src)], src, c)
	}
}

// each sets dst_j = f(src_j): the portable conversions' loop.
func each[S, D any](dst []D, src []S, f func(S) D) {
	for j, v := range src {
		dst[j] = f(v)
	}
}

func fromBF16Generic(dst []float32, src []uint16) { each(dst, src, half.BF16) }
func fromF16Generic(dst []float32, src []uint16)  { each(dst, src, half.F16) }
func toBF16Generic(dst []uint16, src []float32, c float32) {
	each(dst, src, func(v float32) uint16 { return half.BF16Bits(c * v) })
}

func toF16Generic(dst []uint16, src []float32, c float32) {
	each(dst, src, func(v float32) uint16 { return half.F16Bits(c * v) })
}

// vec is (part of) a row of a matrix in its element type: f holds a
// float32 row, h a half-precision one's 16-bit elements.
type vec struct {
	f []float32
	h []uint16
	t DType
}

// rowOf returns elements [lo, lo+n) of a matrix's storage.
func rowOf(f []float32, h []uint16, t DType, lo, n int) vec {
	if t == F32 {
		return vec{f: f[lo : lo+n]}
	}
	return vec{h: h[lo : lo+n], t: t}
}

func (v vec) len() int {
	if v.t == F32 {
		return len(v.f)
	}
	return len(v.h)
}

// at returns element j as a float32.
func (v vec) at(j int) float32 {
	switch v.t {
	case F32:
		return v.f[j]
	case BF16:
		return half.BF16(v.h[j])
	}
	return half.F16(v.h[j])
}

// set stores x, rounded to v's type, at j.
func (v vec) set(j int, x float32) {
	switch v.t {
	case F32:
		v.f[j] = x
	case BF16:
		v.h[j] = half.BF16Bits(x)
	default:
		v.h[j] = half.F16Bits(x)
	}
}

// fill sets every element to x (rounded to v's type).
func (v vec) fill(x float32) {
	if v.t == F32 {
		fill(v.f, x)
		return
	}
	b := half.F16Bits(x)
	if v.t == BF16 {
		b = half.BF16Bits(x)
	}
	for j := range v.h {
		v.h[j] = b
	}
}

// clear sets every element to +0.
func (v vec) clear() {
	clear(v.f)
	clear(v.h)
}

// from returns s[n:], nil for a nil s: the view of a matrix's storage that
// starts n elements on, whichever of its two slices it uses.
func from[T any](s []T, n int) []T {
	if s == nil {
		return nil
	}
	return s[n:]
}

// NewDense returns a zero dense rows × cols matrix of type t.
func NewDense(rows, cols int, t DType) Matrix {
	m := Matrix{Rows: rows, Cols: cols, Stride: cols, Type: t}
	if t == F32 {
		m.Data = make([]float32, rows*cols)
	} else {
		m.Half = make([]uint16, rows*cols)
	}
	return m
}

// Widened returns a dense float32 copy of the half-precision matrix m
// (widened exactly), m itself when it is float32.
func Widened(m Matrix) Matrix {
	if m.Type == F32 {
		return m
	}
	f := NewDense(m.Rows, m.Cols, F32)
	for i := range m.Rows {
		Default.widen(f.row(i).f, m.row(i).h, m.Type)
	}
	return f
}

// Copy copies the rows of src into those of dst, of the same shape and
// type.
func Copy(dst, src Matrix) {
	for i := range src.Rows {
		d, s := dst.row(i), src.row(i)
		copy(d.f, s.f)
		copy(d.h, s.h)
	}
}
