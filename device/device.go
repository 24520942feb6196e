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
//	"cpu:simd"       the CPU, archsimd kernels (an error where unavailable)
//	"opencl"         the first OpenCL GPU or accelerator, else any OpenCL device
//	"opencl:P:D"     OpenCL platform P, device D
//	"auto"           the first OpenCL GPU or accelerator, else the CPU
//	"all"            every GPU/accelerator plus the CPU, rows split by speed
//
// Back ends other than the CPU register themselves with [Register]; package
// batch imports device/opencl, so any program using batch has it.
//
// # Contract
//
// A Device computes; it does not validate. Package batch checks shapes,
// targets and options before calling, so a Device may assume: Cols ≥ 1,
// Stride ≥ Cols, Data long enough, targets in [0, Cols) or -1 (ignored),
// options in range, and output slices of length Rows (or nil: not wanted).
// Devices are safe for concurrent use by many goroutines.
package device

import (
	"context"
	"errors"
)

// Matrix is a row-major float32 matrix: row i is Data[i*Stride : i*Stride+Cols].
type Matrix struct {
	Data       []float32
	Rows, Cols int
	Stride     int
}

// Options are the validated loss options; see package cpu for the formula.
type Options struct {
	Smoothing float32   // label smoothing ε in [0, 1]
	ZLoss     float32   // z-loss λ ≥ 0
	Softcap   float32   // soft cap c > 0, or 0 for none
	Weights   []float32 // per-class weights (len Cols) or nil
	WeightSum float64   // Σ Weights, or Cols when Weights is nil
}

// Rows receives per-row results; a nil slice is not computed or written.
type Rows struct {
	Loss    []float32 // loss of each row, 0 for ignored rows
	LSE     []float32 // log-sum-exp of the (soft-capped) logits
	Correct []bool    // argmax == target (false for ignored rows and NaN losses)
}

// Grad asks for the gradient dL/dz.
type Grad struct {
	// Data receives row i at Data[i*Stride:]; it may be the logits
	// themselves (same slice, same stride) for an in-place gradient.
	Data   []float32
	Stride int
	// Scale is the per-row factor (upstream gradient, 1/denominator for a
	// mean); ignored rows get a zero row whatever their scale.
	Scale []float32
}

// Info describes a device.
type Info struct {
	Name     string // device name ("AMD EPYC", "NVIDIA H100 80GB HBM3", ...)
	Kind     string // "cpu", "gpu", "accelerator"
	Backend  string // "cpu" or "opencl"
	Kernel   string // kernel variant that runs ("portable", "avx2", "opencl wg=256", ...)
	Platform string // OpenCL platform and driver version, empty for the CPU
	Spec     string // the spec that opens this device again ("cpu", "opencl:0:1")
}

// Device computes log-sum-exp, cross-entropy and its gradient over rows.
type Device interface {
	Info() Info
	// LogSumExp sets dst[i] = log Σ_j exp(x_ij) for every row.
	LogSumExp(ctx context.Context, dst []float32, x Matrix) error
	// CrossEntropy computes the per-row results asked for in out and, when
	// grad is not nil, the gradient; targets[i] is in [0, Cols) or -1.
	CrossEntropy(ctx context.Context, x Matrix, targets []int32, opt *Options, out Rows, grad *Grad) error
	// Close releases what the device holds; it is safe to call twice.
	Close() error
}

// ErrNotAvailable is returned (wrapped) when a device or back end asked for
// is not present on this host; callers can fall back with errors.Is.
var ErrNotAvailable = errors.New("device: not available")

// ErrSpec is returned (wrapped) for a device spec that Open cannot parse:
// an unknown name or a malformed argument ("opencl:x"), as opposed to a
// well-formed spec naming a device that is not there (ErrNotAvailable).
var ErrSpec = errors.New("device: bad device spec")

// ErrClosed is returned by a device used after Close.
var ErrClosed = errors.New("device: closed")

// ErrReleased is returned by a Buffer used after Release.
var ErrReleased = errors.New("device: buffer used after Release")

// Resident is implemented by devices that can keep logits in their own
// memory across calls (training loops that keep logits on a GPU).
type Resident interface {
	// Upload copies x into a new Buffer (dense: stride = cols).
	Upload(ctx context.Context, x Matrix) (Buffer, error)
}

// Buffer is a logit matrix held by a device. Like Device, it computes and
// does not validate: package batch checks targets and options.
type Buffer interface {
	Rows() int
	Cols() int
	// LogSumExp sets dst[i] to the log-sum-exp of row i.
	LogSumExp(ctx context.Context, dst []float32) error
	// CrossEntropy computes the per-row results in out and, when scale is
	// not nil (one factor per row), replaces the logits with the gradient.
	CrossEntropy(ctx context.Context, targets []int32, opt *Options, out Rows, scale []float32) error
	// Download copies the buffer's contents into dst (Rows × Cols).
	Download(ctx context.Context, dst Matrix) error
	// Release frees the buffer; it is safe to call twice. Every other
	// method but Rows and Cols then returns ErrReleased.
	Release() error
}
