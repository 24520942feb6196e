package ce

import "github.com/xentlab/xent/internal/half"

// Buffer is a dense matrix held in a device's memory, as a Matrix or a
// Grad refers to it; the device that made it computes on it (package
// device's Buffer is this and more).
type Buffer interface {
	Rows() int
	Cols() int
	Type() DType
}

// Matrix is a row-major matrix of element type Type: row i is
// Data[i*Stride : i*Stride+Cols] (F32) or Half[i*Stride : i*Stride+Cols]
// (BF16, F16: the 16-bit elements), or, when Buf is set, the same rows
// held in a device's memory (Data and Half are then nil).
type Matrix struct {
	Data       []float32
	Half       []uint16
	Rows, Cols int
	Stride     int
	Type       DType
	Buf        Buffer
}

// NewDense returns a zero dense rows × cols host matrix of type t.
func NewDense(rows, cols int, t DType) Matrix {
	m := Matrix{Rows: rows, Cols: cols, Stride: cols, Type: t}
	if t == F32 {
		m.Data = make([]float32, rows*cols)
	} else {
		m.Half = make([]uint16, rows*cols)
	}
	return m
}

// BufferMatrix returns the Matrix that refers to b.
func BufferMatrix(b Buffer) Matrix {
	return Matrix{Rows: b.Rows(), Cols: b.Cols(), Stride: b.Cols(), Type: b.Type(), Buf: b}
}

// At returns element (i, j) of a host matrix, widened to float32.
func (m Matrix) At(i, j int) float32 {
	k := i*m.Stride + j
	switch m.Type {
	case BF16:
		return half.BF16(m.Half[k])
	case F16:
		return half.F16(m.Half[k])
	}
	return m.Data[k]
}

// RowRange returns the view of rows [lo, hi) of a host matrix.
func (m Matrix) RowRange(lo, hi int) Matrix {
	if hi > lo {
		m.Data, m.Half = from(m.Data, lo*m.Stride), from(m.Half, lo*m.Stride)
	}
	m.Rows = hi - lo
	return m
}

// Columns returns the view of columns [lo, hi) of a host matrix.
func (m Matrix) Columns(lo, hi int) Matrix {
	if m.Rows > 0 {
		m.Data, m.Half = from(m.Data, lo), from(m.Half, lo)
	}
	m.Cols = hi - lo
	return m
}

// Grad says where the gradient dL/dz goes, in element type Type (the
// logits' or F32): row i at Data[i*Stride:] (F32) or Half[i*Stride:]
// (BF16, F16, rounded to the nearest) scaled by Scale[i], the per-row
// upstream factor (ignored rows get a zero row whatever their scale). It
// may be the logits themselves (same slice, same stride, same type), for
// an in-place gradient. With Buf set the gradient replaces the logits held
// in that buffer, which must be the matrix's own, in its type. Fix, when
// set, adds what a loss beyond the cross-entropy needs (Backward only).
type Grad struct {
	Data   []float32
	Half   []uint16
	Stride int
	Scale  []float32
	Type   DType
	Buf    Buffer
	Fix    *Fix
}

// RowRange returns the gradient of rows [lo, hi) of a host gradient.
func (g Grad) RowRange(lo, hi int) Grad {
	if hi > lo {
		g.Data, g.Half = from(g.Data, lo*g.Stride), from(g.Half, lo*g.Stride)
	}
	g.Scale = g.Scale[lo:hi]
	g.Fix = g.Fix.RowRange(lo, hi)
	return g
}

// Columns returns the gradient of columns [lo, ...) of a host gradient.
func (g Grad) Columns(lo int) Grad {
	g.Data, g.Half = from(g.Data, lo), from(g.Half, lo)
	return g
}

// from returns s[n:], nil for a nil s: the view of a matrix's storage that
// starts n elements on, whichever of its two slices it uses.
func from[T any](s []T, n int) []T {
	if s == nil {
		return nil
	}
	return s[n:]
}
