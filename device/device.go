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
//	"auto"           the first OpenCL GPU or accelerator, else the CPU (on
//	                 Linux, OpenCL is loaded only where /dev has a GPU's or
//	                 an accelerator's node: see the README)
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
// [ce.Problem]; the formulas are package ce's, which every device
// computes. Devices are safe for concurrent use by many goroutines.
//
// A Device is small: row primitives, memory and Caps. The work on a row
// is split in two so that the vocabulary can be split too:
// [Device.Partials] gives each row's [ce.Partial] over the columns a
// device holds, partials of disjoint column ranges merge
// ([ce.Partial.Merge]), the merged partial gives the loss
// ([ce.Problem.Finish]) and [Device.Backward] the gradient of the columns
// a device holds. [Device.CrossEntropy] does the whole vocabulary in one
// pass: the fast path, and the same results. [Device.Upload] keeps a
// matrix in the device's memory ([Buffer]: download, release).
//
// Optional operations are said by [Device.Caps]; a device without one
// returns an error wrapping [ErrNotImplemented].
//
// # Fused linear
//
// The fused linear cross-entropy (logits z = H·Wᵀ + b, [ce.Linear], never
// held whole) is an optional interface, [FusedLinear], of the devices
// that run a whole call themselves: the CPU (products from package blas,
// OpenBLAS or gonum, and package cpu's row kernels on each tile),
// OpenCL with CLBlast, and a [Group] (the classes split among its
// members). [LinearOf] gives the CPU's to any other device.
package device

import (
	"context"
	"errors"

	"github.com/xentlab/xent/ce"
)

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
	Types []ce.DType
	// Linear: the device runs the fused linear cross-entropy itself
	// (FusedLinear); without it package batch runs it on the CPU.
	Linear bool
}

// Device computes log-sum-exp, cross-entropy and its gradient over rows.
type Device interface {
	Info() Info
	Caps() Caps
	// LogSumExp sets dst[i] = log Σ_j exp(x_ij) for every row (no options).
	LogSumExp(ctx context.Context, dst []float32, x ce.Matrix) error
	// CrossEntropy writes the per-row results asked for in out and, when g
	// is not nil, the gradient, of x against targets with p's options; x
	// holds the whole vocabulary.
	CrossEntropy(ctx context.Context, out ce.Out, g *ce.Grad, x ce.Matrix, targets []int32, p *ce.Problem) error
	// Partials sets dst[i] to the partial of row i over x's columns, the
	// classes [p.Col0, p.Col0+x.Cols) of the vocabulary; ignored rows'
	// entries are left as they are.
	Partials(ctx context.Context, dst []ce.Partial, x ce.Matrix, targets []int32, p *ce.Problem) error
	// Backward writes the gradient of x's columns into g given part[i],
	// row i's partial merged over the whole vocabulary.
	Backward(ctx context.Context, g ce.Grad, x ce.Matrix, targets []int32, part []ce.Partial, p *ce.Problem) error
	// Upload copies x into a new Buffer of the device (dense: stride =
	// cols, x's type), or returns ErrNotImplemented when Caps().Resident
	// is false.
	Upload(ctx context.Context, x ce.Matrix) (Buffer, error)
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
// element type it was uploaded in. A ce.Matrix whose Buf is set refers to
// it; the device that made it computes on it.
type Buffer interface {
	ce.Buffer
	// Owner returns the device that holds the buffer.
	Owner() Device
	// Download copies the buffer's contents into dst (Rows × Cols, host,
	// of the buffer's type).
	Download(ctx context.Context, dst ce.Matrix) error
	// Release frees the buffer; it is safe to call twice. Every other
	// method but Rows, Cols and Owner then returns ErrReleased, and so do
	// the computations on it.
	Release() error
}

// FusedLinear is the fused linear cross-entropy (Linear: the logits
// z = H·Wᵀ + Bias, never held whole), implemented by a device that runs a
// whole call itself: its own tile loop (package internal/tiles), its
// buffers for the call, one lock. Package batch calls it through
// LinearOf, which gives the CPU's to a device without it.
type FusedLinear interface {
	// LinearCrossEntropy is CrossEntropy of the logits of lin, with the
	// gradients of H, W and Bias into g when g is not nil; W holds the
	// whole vocabulary.
	LinearCrossEntropy(ctx context.Context, out ce.Out, g *ce.LinearGrad, lin *ce.Linear, targets []int32, p *ce.Problem) error
	// LinearPartials merges into dst[i] row i's partial over lin's
	// classes (W's rows), the classes [p.Col0, p.Col0+W.Rows) of the
	// vocabulary; ignored rows' entries are left as they are.
	LinearPartials(ctx context.Context, dst []ce.Partial, lin *ce.Linear, targets []int32, p *ce.Problem) error
	// LinearBackward adds the gradients of lin's classes into g given
	// part[i], row i's partial merged over the whole vocabulary.
	LinearBackward(ctx context.Context, g ce.LinearGrad, lin *ce.Linear, targets []int32, part []ce.Partial, p *ce.Problem) error
}

// LinearPicker is a FusedLinear whose partials pass also gives the raw
// logits h_i·w_c + b_c at chosen classes as the products its sums are
// made of computed them, the same values: a distillation's student logits
// at the teacher's classes, so that its tail (the row's sum less those
// classes' terms, ce.DistillOf) has no error of its own. A device whose
// path cannot returns ErrNotImplemented before it writes anything, and
// the caller computes them apart (Gatherer).
type LinearPicker interface {
	// LinearPartialsAt is LinearPartials that also sets z[i·k+j] to row
	// i's raw logit at W's row cols[i·k+j] (0 where that is -1, and in
	// ignored rows).
	LinearPartialsAt(ctx context.Context, dst []ce.Partial, z []float32, cols []int32, k int, lin *ce.Linear, targets []int32, p *ce.Problem) error
}

// OwnerOf returns the device that holds b, nil when b is not a Buffer of
// a device.
func OwnerOf(b ce.Buffer) Device {
	if d, ok := b.(Buffer); ok {
		return d.Owner()
	}
	return nil
}

// SpecOf names the device that holds b, for errors.
func SpecOf(b ce.Buffer) string {
	if d := OwnerOf(b); d != nil {
		return d.Info().Spec
	}
	return "another device"
}

// HostAllocator is the optional interface of a device that gives host
// memory it moves faster than the Go heap's: an OpenCL GPU's pinned
// memory, which it reads and writes by DMA without the staging copies
// that bound a call on ordinary host rows. AllocHost returns a dense
// rows × cols host matrix of type t; FreeHost gives it back (Close frees
// what is left).
type HostAllocator interface {
	AllocHost(rows, cols int, t ce.DType) (ce.Matrix, error)
	FreeHost(x ce.Matrix) error
}

// Ranker is the rank pass of a device that runs it itself: Ranks sets
// dst[i] to row i's ce.Rank over x's columns (the classes [p.Col0,
// p.Col0+x.Cols)) given part[i], the row's partial merged over the whole
// vocabulary; ignored rows' entries are left as they are. A device other
// than the CPU takes the matrices it holds; the CPU ranks host rows for
// every device (RanksOf).
type Ranker interface {
	Ranks(ctx context.Context, dst []ce.Rank, x ce.Matrix, targets []int32, part []ce.Partial, p *ce.Problem) error
}

// Gatherer reads the raw logits of given classes of each row, for a
// distillation (the student's logits at its teacher's classes), on a
// device that holds matrices of its own (Caps().Resident); GatherOf
// gives the CPU's for host rows. For every row i and j < k, with c =
// cols[i·k+j] (a column of the matrix, or -1: none):
//
//	Gather:        z[i·k+j] = x_ic
//	LinearGather:  z[i·k+j] = H_i · W_c + Bias_c   (the fused linear's)
//
// and z[i·k+j] = 0 where c is -1. The values are raw: no soft cap, no
// temperature. x, or lin.W, is a matrix the device holds (an error
// otherwise); lin.H is host rows.
type Gatherer interface {
	Gather(ctx context.Context, z []float32, x ce.Matrix, cols []int32, k int) error
	LinearGather(ctx context.Context, z []float32, lin *ce.Linear, cols []int32, k int) error
}

// LinearRanker is the rank pass of the fused linear (Ranker's, over the
// logits of lin), of a device that runs it itself: a device other than
// the CPU takes a W it holds; the CPU runs it with a host W for every
// device (LinearRanksOf).
type LinearRanker interface {
	LinearRanks(ctx context.Context, dst []ce.Rank, lin *ce.Linear, targets []int32, part []ce.Partial, p *ce.Problem) error
}
