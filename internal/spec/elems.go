package spec

import (
	"math"
	"slices"
	"unsafe"

	"github.com/xentlab/xent/batch"
	"github.com/xentlab/xent/cpu"
	"github.com/xentlab/xent/internal/half"
)

// Elems is a buffer of one element type: F the values of a float32 one,
// H the 16-bit elements of a bfloat16 or float16 one.
type Elems struct {
	Type batch.DType
	F    []float32
	H    []uint16
}

// ElemsOf returns x in type t: x itself for F32, else its elements'
// bits (x rounded to t).
func ElemsOf(t batch.DType, x []float32) Elems {
	if t == batch.F32 {
		return Elems{F: x}
	}
	e := Elems{Type: t, H: make([]uint16, len(x))}
	cpu.Narrow(e.H, x, t)
	return e
}

// NewElems returns n elements of type t, each v (rounded to t).
func NewElems(t batch.DType, n int, v float32) Elems {
	x := make([]float32, n)
	for i := range x {
		x[i] = v
	}
	return ElemsOf(t, x)
}

// Len returns the number of elements.
func (e Elems) Len() int { return max(len(e.F), len(e.H)) }

// Matrix returns the matrix of rows × cols (stride) from element off.
func (e Elems) Matrix(off, rows, cols, stride int) batch.Matrix {
	m := batch.Matrix{Rows: rows, Cols: cols, Stride: stride, Type: e.Type}
	if e.Type == batch.F32 {
		m.Data = e.F[off:]
	} else {
		m.Half = e.H[off:]
	}
	return m
}

// At returns element i as a float32.
func (e Elems) At(i int) float32 {
	switch e.Type {
	case batch.BF16:
		return half.BF16(e.H[i])
	case batch.F16:
		return half.F16(e.H[i])
	}
	return e.F[i]
}

// Bits returns element i's bits.
func (e Elems) Bits(i int) uint32 {
	if e.Type == batch.F32 {
		return math.Float32bits(e.F[i])
	}
	return uint32(e.H[i])
}

// SetBits sets element i's bits.
func (e Elems) SetBits(i int, b uint32) {
	if e.Type == batch.F32 {
		e.F[i] = math.Float32frombits(b)
	} else {
		e.H[i] = uint16(b)
	}
}

// Clone returns a copy.
func (e Elems) Clone() Elems {
	e.F, e.H = slices.Clone(e.F), slices.Clone(e.H)
	return e
}

// CopyFrom copies o's elements into e's (same type and length).
func (e Elems) CopyFrom(o Elems) {
	copy(e.F, o.F)
	copy(e.H, o.H)
}

// base returns the address of the first element.
func (e Elems) base() unsafe.Pointer {
	if e.Type == batch.F32 {
		return unsafe.Pointer(unsafe.SliceData(e.F))
	}
	return unsafe.Pointer(unsafe.SliceData(e.H))
}

// roundRel returns the relative error of rounding to t (half an ulp, with
// room for a rounding on each side), 0 for F32, and absFloor the absolute
// error below t's normal range (float16's subnormal step; bfloat16 has
// float32's range, whose floor GradClose has already).
func roundRel(t batch.DType) (rel, absFloor float64) {
	switch t {
	case batch.BF16:
		return 0x1p-8, 0
	case batch.F16:
		return 0x1p-11, 0x1p-24
	}
	return 0, 0
}

// GradCloseIn is GradClose for a gradient entry stored in type t, with
// the rounding to t (roundRel) and an absolute slack (Ref.Under, a
// distillation's tail) allowed on top of tol.
func GradCloseIn(t batch.DType, got float32, want, mag, tol, slack float64) bool {
	rel, floor := roundRel(t)
	g := float64(got)
	if ok, decided := special(g, want); decided {
		return ok
	}
	if math.Abs(want) < minNormal32 && math.Abs(g) < minNormal32 {
		return true
	}
	return math.Abs(g-want) <= max(tol*math.Abs(mag)+rel*math.Abs(want)+slack, 2*ulp32(want), floor)
}
