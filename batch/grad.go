package batch

// Grad is where a gradient is written: a matrix of a type of its own, so
// that it cannot be passed where an input goes, nor an input where it
// goes (ForwardBackward(ctx, x, g, …) with the two swapped does not
// compile). The zero Grad is no gradient (LinearGrads: not wanted).
type Grad struct{ m Matrix }

// NewGrad returns the dense float32 gradient destination data, rows ×
// cols.
func NewGrad(data []float32, rows, cols int) Grad { return Grad{NewMatrix(data, rows, cols)} }

// NewHalfGrad returns the dense bfloat16 (BF16) or float16 (F16)
// gradient destination bits, rows × cols: each element rounded to the
// nearest once.
func NewHalfGrad(bits []uint16, t DType, rows, cols int) Grad {
	return Grad{NewHalfMatrix(bits, t, rows, cols)}
}

// GradInto returns the gradient destination whose rows are m's: any
// stride, its element type, host rows or a device matrix's.
func GradInto(m Matrix) Grad { return Grad{m} }

// InPlace returns the gradient destination that is the logits x
// themselves: ForwardBackward(ctx, InPlace(x), x, …) writes dL/dz over x
// (the same slice, stride and type; for a DeviceMatrix's Matrix, on the
// device).
func InPlace(x Matrix) Grad { return Grad{x} }

// Matrix returns the matrix the gradient is written into.
func (g Grad) Matrix() Matrix { return g.m }

// wanted reports whether g names a destination (not the zero Grad).
func (g Grad) wanted() bool {
	m := g.m
	return m.Data != nil || m.Half != nil || m.Buf != nil || m.Rows != 0 || m.Cols != 0
}
