package cpu

import "github.com/xentlab/xent/ce"

// The kernels take package ce's types.
type (
	DType   = ce.DType
	Matrix  = ce.Matrix
	Grad    = ce.Grad
	Problem = ce.Problem
	Partial = ce.Partial
	Out     = ce.Out
)

const (
	F32  = ce.F32
	BF16 = ce.BF16
	F16  = ce.F16
)

// from returns s[n:], nil for a nil s.
func from[T any](s []T, n int) []T {
	if s == nil {
		return nil
	}
	return s[n:]
}
