// Package device defines the interface that every xent compute device
// implements (the CPU here, OpenCL in package device/opencl) and the
// selection of a device by name.
//
// # Selection
//
// [Open] takes a spec:
//
//	"cpu"            the CPU, fastest kernel variant available
//	"cpu:portable"   the CPU, portable pure-Go kernels
//	"cpu:simd"       the CPU, the fastest vector kernels (an error where none run)
//	"cpu:avx2"       the CPU, AVX2 + FMA kernels (an error where unavailable)
//	"cpu:avx512"     the CPU, AVX-512 kernels (an error where unavailable)
//	"cpu:neon"       the CPU, arm64 NEON kernels (an error where unavailable)
//	"opencl"         the first OpenCL GPU or accelerator, else any OpenCL device
//	"opencl:P:D"     OpenCL platform P, device D
//	"auto"           the first OpenCL GPU or accelerator, else the CPU
//	"all"            every GPU/accelerator plus the CPU, rows split by speed
//
// Back ends other than the CPU register themselves with [Register] when
// their package is imported: a program that wants OpenCL imports
// github.com/xentlab/xent/device/opencl (the xent command does, unless
// built with the noopencl tag).
//
// # Contract
//
// A Device computes; it does not validate. Package batch checks shapes,
// targets and options before calling, so a Device may assume: Cols ≥ 1,
// Stride ≥ Cols, Data long enough, targets classes of the vocabulary or
// -1 (ignored), options in range, and output slices of length Rows (or
// nil: not wanted). The options and the shard of the vocabulary are one
// [Problem]; its formulas are package cpu's (see its package comment),
// which every device computes. Devices are safe for concurrent use by
// many goroutines.
//
// The work on a row is split in two so that the vocabulary can be split
// too: [Device.Partials] gives each row's [Partial] over the columns a
// device holds (its max, sum of exponentials less the max's own term,
// target logit and argmax),
// partials of disjoint column ranges merge ([Partial.Merge]), the merged
// partial gives the loss ([Problem.Finish]) and [Device.Backward] the
// gradient of the columns a device holds. [Device.CrossEntropy] does the
// whole vocabulary in one pass: the fast path, and the same results.
//
// Optional operations are said by [Device.Caps]; a device without one
// returns an error wrapping [ErrNotImplemented].
//
// # Fused linear
//
// [Device.LinearCrossEntropy], [Device.LinearPartials] and
// [Device.LinearBackward] take the logits as z = H·Wᵀ + b ([Linear]) and
// never hold them whole. Every device runs the same driver ([RunLinear]
// and its two siblings: the plan of [PlanLinear], the loops, the merges
// and the gradient filter) over a [LinearBackend] of its own: the CPU's
// products come from package blas (OpenBLAS or gonum), OpenCL's from
// CLBlast; both run their row kernels on the tile in between.
package device

import (
	"context"
	"errors"

	"github.com/xentlab/xent/cpu"
)

// DType is the element type of a matrix (cpu.DType): float32, bfloat16
// or float16. Every device computes in float32 whatever the type.
type DType = cpu.DType

// The element types.
const (
	F32  = cpu.F32
	BF16 = cpu.BF16
	F16  = cpu.F16
)

// Problem is the options of a cross-entropy and the shard of the
// vocabulary a matrix holds (cpu.Problem).
type Problem = cpu.Problem

// Partial is what one column range of a row gives (cpu.Partial).
type Partial = cpu.Partial

// EmptyPartial returns the partial of no column, the identity of
// Partial.Merge.
func EmptyPartial() Partial { return cpu.EmptyPartial() }

// Out receives per-row results of CrossEntropy (cpu.Out): loss, log-sum-exp
// and argmax test; a nil slice is not written.
type Out = cpu.Out

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

// Host returns the host matrix m is (Buf nil) for package cpu.
func (m Matrix) Host() cpu.Matrix {
	return cpu.Matrix{Data: m.Data, Half: m.Half, Rows: m.Rows, Cols: m.Cols, Stride: m.Stride, Type: m.Type}
}

// Widened returns a dense float32 copy of a half-precision host matrix,
// m itself when it is float32.
func (m Matrix) Widened() Matrix {
	if m.Type == F32 {
		return m
	}
	h := cpu.Widened(m.Host())
	return Matrix{Data: h.Data, Rows: h.Rows, Cols: h.Cols, Stride: h.Stride}
}

// Columns returns the view of columns [lo, hi) of a host matrix.
func (m Matrix) Columns(lo, hi int) Matrix { return m.view(m.Host().Columns(lo, hi)) }

// RowRange returns the view of rows [lo, hi) of a host matrix.
func (m Matrix) RowRange(lo, hi int) Matrix { return m.view(m.Host().RowRange(lo, hi)) }

func (m Matrix) view(h cpu.Matrix) Matrix {
	m.Data, m.Half, m.Rows, m.Cols = h.Data, h.Half, h.Rows, h.Cols
	return m
}

// Grad says where the gradient goes, in element type Type (the logits'
// or F32): row i at Data[i*Stride:] (F32) or Half[i*Stride:] (BF16, F16,
// rounded to the nearest) scaled by Scale[i], the per-row upstream factor
// (ignored rows get a zero row whatever their scale); it may be the
// logits themselves (same slice, same stride, same type). With Buf set
// the gradient replaces the logits held in that buffer, which must be the
// matrix's own, in its type.
type Grad struct {
	Data   []float32
	Half   []uint16
	Stride int
	Scale  []float32
	Type   DType
	Buf    Buffer
}

// Host returns the host gradient g is for package cpu.
func (g *Grad) Host() cpu.Grad {
	return cpu.Grad{Data: g.Data, Half: g.Half, Stride: g.Stride, Scale: g.Scale, Type: g.Type}
}

// RowRange returns the gradient of rows [lo, hi) of a host gradient.
func (g *Grad) RowRange(lo, hi int) *Grad { return g.view(g.Host().RowRange(lo, hi)) }

// Columns returns the gradient of columns [lo, ...) of a host gradient.
func (g *Grad) Columns(lo int) *Grad { return g.view(g.Host().Columns(lo)) }

func (g *Grad) view(h cpu.Grad) *Grad {
	v := *g
	v.Data, v.Half, v.Scale = h.Data, h.Half, h.Scale
	return &v
}

// Info describes a device.
type Info struct {
	Name     string // device name ("AMD EPYC", "NVIDIA H100 80GB HBM3", ...)
	Kind     string // "cpu", "gpu", "accelerator", "group"
	Backend  string // "cpu", "opencl" or "group"
	Kernel   string // kernel variant that runs ("portable", "avx2", "opencl wg=256", ...)
	Platform string // OpenCL platform and driver version, empty for the CPU
	Spec     string // the spec that opens this device again ("cpu", "opencl:0:1")
	BLAS     string // the library of the fused linear's matrix products, empty without them
	// Note says why this device runs where one might expect another: why
	// "auto" fell back to the CPU, or that the fused linear runs on the
	// CPU (an OpenCL device without CLBlast). The package writes nothing
	// to stderr; a program says what it wants of this.
	Note string
}

// Caps says which optional operations a device has.
type Caps struct {
	// Resident: Upload, and matrices held in the device's memory.
	Resident bool
	// Types are the element types its matrices may have.
	Types []DType
	// Linear: the fused linear cross-entropy (LinearCrossEntropy,
	// LinearPartials, LinearBackward).
	Linear bool
}

// Device computes log-sum-exp, cross-entropy and its gradient over rows.
type Device interface {
	Info() Info
	Caps() Caps
	// LogSumExp sets dst[i] = log Σ_j exp(x_ij) for every row (no options).
	LogSumExp(ctx context.Context, dst []float32, x Matrix) error
	// CrossEntropy writes the per-row results asked for in out and, when g
	// is not nil, the gradient, of x against targets with p's options; x
	// holds the whole vocabulary.
	CrossEntropy(ctx context.Context, out Out, g *Grad, x Matrix, targets []int32, p *Problem) error
	// Partials sets dst[i] to the partial of row i over x's columns, the
	// classes [p.Col0, p.Col0+x.Cols) of the vocabulary; ignored rows'
	// entries are left as they are.
	Partials(ctx context.Context, dst []Partial, x Matrix, targets []int32, p *Problem) error
	// Backward writes the gradient of x's columns into g given part[i],
	// row i's partial merged over the whole vocabulary.
	Backward(ctx context.Context, g Grad, x Matrix, targets []int32, part []Partial, p *Problem) error
	// LinearCrossEntropy is CrossEntropy of the logits z = H·Wᵀ + Bias of
	// lin, which it never holds whole (see Linear), with the gradients of
	// H, W and Bias into g when g is not nil; W holds the whole vocabulary.
	LinearCrossEntropy(ctx context.Context, out Out, g *LinearGrad, lin *Linear, targets []int32, p *Problem) error
	// LinearPartials merges into dst[i] row i's partial over lin's
	// classes (W's rows), the classes [p.Col0, p.Col0+W.Rows) of the
	// vocabulary; ignored rows' entries are left as they are.
	LinearPartials(ctx context.Context, dst []Partial, lin *Linear, targets []int32, p *Problem) error
	// LinearBackward adds the gradients of lin's classes into g given
	// part[i], row i's partial merged over the whole vocabulary.
	LinearBackward(ctx context.Context, g LinearGrad, lin *Linear, targets []int32, part []Partial, p *Problem) error
	// Upload copies x into a new Buffer of the device (dense: stride =
	// cols, x's type), or returns ErrNotImplemented when Caps().Resident
	// is false.
	Upload(ctx context.Context, x Matrix) (Buffer, error)
	// Close releases what the device holds; it is safe to call twice.
	Close() error
}

// ErrNotAvailable is returned (wrapped) when a device or back end asked for
// is not present on this host; callers can fall back with errors.Is.
var ErrNotAvailable = errors.New("device: not available")

// ErrNotImplemented is returned (wrapped) by a device asked for an
// operation it does not have (see Caps).
var ErrNotImplemented = errors.New("device: not implemented")

// ErrSpec is returned (wrapped) for a device spec that Open cannot parse:
// an unknown name or a malformed argument ("opencl:x"), as opposed to a
// well-formed spec naming a device that is not there (ErrNotAvailable).
var ErrSpec = errors.New("device: bad device spec")

// ErrClosed is returned by a device used after Close.
var ErrClosed = errors.New("device: closed")

// ErrReleased is returned by a Buffer used after Release.
var ErrReleased = errors.New("device: buffer used after Release")

// ErrForeign is returned (wrapped) for a matrix held by another device
// than the one asked to compute on it.
var ErrForeign = errors.New("device: matrix held by another device")

// Buffer is a dense logit matrix held by a device (from Upload), in the
// element type it was uploaded in. A Matrix whose Buf is set refers to
// it; the device that made it computes on it.
type Buffer interface {
	Rows() int
	Cols() int
	Type() DType
	// Owner returns the device that holds the buffer.
	Owner() Device
	// Download copies the buffer's contents into dst (Rows × Cols, host,
	// of the buffer's type).
	Download(ctx context.Context, dst Matrix) error
	// Release frees the buffer; it is safe to call twice. Every other
	// method but Rows, Cols and Owner then returns ErrReleased, and so do
	// the computations on it.
	Release() error
}

// Matrix returns the Matrix that refers to b.
func BufferMatrix(b Buffer) Matrix {
	return Matrix{Rows: b.Rows(), Cols: b.Cols(), Stride: b.Cols(), Type: b.Type(), Buf: b}
}
