package batch

import (
	"context"
	"fmt"

	"github.com/xentlab/xent/device"
)

// DeviceMatrix is a logit matrix kept in a device's memory, for training
// loops that keep logits on a GPU: upload once (or let the model write
// them there), run Forward/ForwardBackward many times, download only what
// is needed.
type DeviceMatrix struct {
	dev device.Device
	buf device.Buffer
}

// Upload copies x into dev's memory. It returns an error wrapping
// device.ErrNotAvailable when dev cannot hold buffers.
func Upload(ctx context.Context, dev device.Device, x Matrix) (*DeviceMatrix, error) {
	r, ok := dev.(device.Resident)
	if !ok {
		return nil, fmt.Errorf("batch: %s keeps no resident buffers: %w", dev.Info().Spec, device.ErrNotAvailable)
	}
	x, err := checkMatrix("logits", x)
	if err != nil {
		return nil, err
	}
	b, err := r.Upload(ctx, x)
	if err != nil {
		return nil, err
	}
	return &DeviceMatrix{dev: dev, buf: b}, nil
}

// Rows returns the number of rows.
func (m *DeviceMatrix) Rows() int { return m.buf.Rows() }

// Cols returns the number of columns.
func (m *DeviceMatrix) Cols() int { return m.buf.Cols() }

// Download copies the matrix (the logits, or the gradient after
// ForwardBackwardDevice) into dst, which must be Rows × Cols.
func (m *DeviceMatrix) Download(ctx context.Context, dst Matrix) error {
	dst, err := checkMatrix("destination", dst)
	if err != nil {
		return err
	}
	if dst.Rows != m.Rows() || dst.Cols != m.Cols() {
		return errorf(ErrShape, "destination is %d × %d, the device matrix is %d × %d", dst.Rows, dst.Cols, m.Rows(), m.Cols())
	}
	return m.buf.Download(ctx, dst)
}

// Release frees the device memory; it is safe to call twice.
func (m *DeviceMatrix) Release() error { return m.buf.Release() }

func (l *Loss) checkDevice(m *DeviceMatrix) error {
	if m.dev != l.dev {
		return errorf(ErrOption, "the device matrix lives on %s, the loss computes on %s", m.dev.Info().Spec, l.dev.Info().Spec)
	}
	return nil
}

// ForwardDevice is Forward on a matrix held by the device.
func (l *Loss) ForwardDevice(ctx context.Context, m *DeviceMatrix, targets []int32) (Result, error) {
	if err := l.checkDevice(m); err != nil {
		return Result{}, err
	}
	p, err := l.prepare(m.Rows(), m.Cols(), targets)
	if err != nil {
		return Result{}, err
	}
	return l.run(p, func(out device.Rows) error { return m.buf.CrossEntropy(ctx, p.targets, &p.opt, out, nil) })
}

// ForwardBackwardDevice is ForwardBackward on a matrix held by the device:
// the gradient replaces the logits in m, on the device.
func (l *Loss) ForwardBackwardDevice(ctx context.Context, m *DeviceMatrix, targets []int32, upstream []float32) (Result, error) {
	if err := l.checkDevice(m); err != nil {
		return Result{}, err
	}
	p, err := l.prepare(m.Rows(), m.Cols(), targets)
	if err != nil {
		return Result{}, err
	}
	scale, err := l.scales(p, upstream)
	if err != nil {
		return Result{}, err
	}
	return l.run(p, func(out device.Rows) error { return m.buf.CrossEntropy(ctx, p.targets, &p.opt, out, scale) })
}

// LogSumExpDevice is LogSumExp on a matrix held by the device.
func (l *Loss) LogSumExpDevice(ctx context.Context, dst []float32, m *DeviceMatrix) error {
	if err := l.checkDevice(m); err != nil {
		return err
	}
	if len(dst) != m.Rows() {
		return errorf(ErrBuffer, "expected %d log-sum-exp outputs to match %d rows, got %d", m.Rows(), m.Rows(), len(dst))
	}
	return m.buf.LogSumExp(ctx, dst)
}
