package cpu

import (
	"github.com/xentlab/xent/ce"

	"github.com/xentlab/xent/internal/half"
)

// Widen sets dst_j to src_j, the 16-bit elements of type t (BF16 or F16),
// as float32 values (exact); len(dst) ≥ len(src).
func Widen(dst []float32, src []uint16, t ce.DType) { best.widen(dst, src, t) }

// Narrow sets dst_j to src_j rounded to t (BF16 or F16); len(dst) ≥ len(src).
func Narrow(dst []uint16, src []float32, t ce.DType) { best.narrow(dst, src, 1, t) }

// halfKernels are an implementation's conversions (see widen and
// narrow); portable's are the loops below.
type halfKernels struct {
	fromBF16, fromF16 func(dst []float32, src []uint16)
	toBF16, toF16     func(dst []uint16, src []float32, c float32) // dst_j = c·src_j, rounded
}

var portableHalf = halfKernels{fromBF16: fromBF16Generic, fromF16: fromF16Generic, toBF16: toBF16Generic, toF16: toF16Generic}

// widen sets dst_j to src_j of type t (BF16 or F16) as float32.
func (k *Impl) widen(dst []float32, src []uint16, t ce.DType) {
	if t == ce.BF16 {
		k.half.fromBF16(dst[:len(src)], src)
	} else {
		k.half.fromF16(dst[:len(src)], src)
	}
}

// narrow sets dst_j to c·src_j (a float32 product) rounded to t (BF16 or
// F16): a scale pass and the narrowing in one.
func (k *Impl) narrow(dst []uint16, src []float32, c float32, t ce.DType) {
	if t == ce.BF16 {
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
	t ce.DType
}

// rowOf returns elements [lo, lo+n) of a matrix's storage.
func rowOf(f []float32, h []uint16, t ce.DType, lo, n int) vec {
	if t == ce.F32 {
		return vec{f: f[lo : lo+n]}
	}
	return vec{h: h[lo : lo+n], t: t}
}

func (v vec) len() int {
	if v.t == ce.F32 {
		return len(v.f)
	}
	return len(v.h)
}

// at returns element j as a float32.
func (v vec) at(j int) float32 {
	switch v.t {
	case ce.F32:
		return v.f[j]
	case ce.BF16:
		return half.BF16(v.h[j])
	}
	return half.F16(v.h[j])
}

// set stores x, rounded to v's type, at j.
func (v vec) set(j int, x float32) {
	switch v.t {
	case ce.F32:
		v.f[j] = x
	case ce.BF16:
		v.h[j] = half.BF16Bits(x)
	default:
		v.h[j] = half.F16Bits(x)
	}
}

// fill sets every element to x (rounded to v's type).
func (v vec) fill(x float32) {
	if v.t == ce.F32 {
		fill(v.f, x)
		return
	}
	b := half.F16Bits(x)
	if v.t == ce.BF16 {
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

// Widened returns a dense float32 copy of the half-precision matrix m
// (widened exactly), m itself when it is float32.
func Widened(m ce.Matrix) ce.Matrix {
	if m.Type == ce.F32 {
		return m
	}
	f := ce.NewDense(m.Rows, m.Cols, ce.F32)
	for i := range m.Rows {
		best.widen(matRow(f, i).f, matRow(m, i).h, m.Type)
	}
	return f
}

// Copy copies the rows of src into those of dst, of the same shape and
// type.
func Copy(dst, src ce.Matrix) {
	for i := range src.Rows {
		d, s := matRow(dst, i), matRow(src, i)
		copy(d.f, s.f)
		copy(d.h, s.h)
	}
}
