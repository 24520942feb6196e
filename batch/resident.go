package batch

import (
	"context"
	"fmt"

	"github.com/xentlab/xent/ce"
	"github.com/xentlab/xent/device"
)

// DeviceMatrix is a logit matrix kept in a device's memory, for training
// loops that keep logits on a GPU: upload once (or let the model write
// them there), compute on its Matrix as on host rows, download only what
// is needed.
type DeviceMatrix struct {
	buf device.Buffer
}

// Upload copies x into dev's memory. It returns an error wrapping
// device.ErrNotImplemented when dev keeps no resident buffers (see
// device.Caps).
func Upload(ctx context.Context, dev device.Device, x Matrix) (*DeviceMatrix, error) {
	if !dev.Caps().Resident {
		return nil, fmt.Errorf("batch: %s keeps no resident buffers: %w", dev.Info().Spec, device.ErrNotImplemented)
	}
	x, err := checkMatrix(dev, "logits", x)
	if err != nil {
		return nil, err
	}
	if x.Buf != nil {
		return nil, errorf(ErrOption, "Upload takes host rows, not a device matrix")
	}
	b, err := dev.Upload(ctx, x)
	if err != nil {
		return nil, err
	}
	return &DeviceMatrix{buf: b}, nil
}

// Matrix returns the Matrix that refers to m: pass it to Forward,
// ForwardBackward (as the logits and as the gradient: the gradient
// replaces the logits on the device), LogSumExp, Partials and Backward.
func (m *DeviceMatrix) Matrix() Matrix { return ce.BufferMatrix(m.buf) }

// Grad returns the gradient destination that is m itself: the gradient
// of ForwardBackward(ctx, m.Grad(), m.Matrix(), …) replaces the logits on
// the device, and LinearGrads.W may be a resident dW.
func (m *DeviceMatrix) Grad() Grad { return InPlace(m.Matrix()) }

// Rows returns the number of rows.
func (m *DeviceMatrix) Rows() int { return m.buf.Rows() }

// Cols returns the number of columns.
func (m *DeviceMatrix) Cols() int { return m.buf.Cols() }

// Download copies the matrix (the logits, or the gradient after
// ForwardBackward on it) into dst, which must be Rows × Cols host rows.
func (m *DeviceMatrix) Download(ctx context.Context, dst Matrix) error {
	dst, err := checkMatrix(m.buf.Owner(), "destination", dst)
	if err != nil {
		return err
	}
	if dst.Buf != nil {
		return errorf(ErrOption, "Download writes host rows, not a device matrix")
	}
	if dst.Rows != m.Rows() || dst.Cols != m.Cols() {
		return errorf(ErrShape, "destination is %d × %d, the device matrix is %d × %d", dst.Rows, dst.Cols, m.Rows(), m.Cols())
	}
	if dst.Type != m.buf.Type() {
		return errorf(ErrOption, "destination is %v, the device matrix holds %v", dst.Type, m.buf.Type())
	}
	return m.buf.Download(ctx, dst)
}

// Release frees the device memory; it is safe to call twice. The matrix
// may not be used afterwards: every call on it returns an error wrapping
// device.ErrReleased.
func (m *DeviceMatrix) Release() error { return m.buf.Release() }

// AllocHost returns a dense rows × cols host matrix of type t in the
// memory dev moves fastest, and the function that gives it back: on an
// OpenCL GPU pinned memory (device.HostAllocator), which logits written
// there and gradients read there cross by DMA without staging copies;
// elsewhere the Go heap (free does nothing). Use it as any host Matrix:
// the logits, a gradient destination (GradInto), its rows' views.
func AllocHost(dev device.Device, rows, cols int, t DType) (Matrix, func() error, error) {
	if rows < 0 || cols < 0 {
		return Matrix{}, nil, errorf(ErrShape, "AllocHost(%d, %d): the sizes must be ≥ 0", rows, cols)
	}
	if t != F32 && t != BF16 && t != F16 {
		return Matrix{}, nil, errorf(ErrOption, "AllocHost: element type %v is not float32, bfloat16 or float16", t)
	}
	if a, ok := dev.(device.HostAllocator); ok {
		m, err := a.AllocHost(rows, cols, t)
		if err != nil {
			return Matrix{}, nil, err
		}
		return m, func() error { return a.FreeHost(m) }, nil
	}
	return ce.NewDense(rows, cols, t), func() error { return nil }, nil
}
