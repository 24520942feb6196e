package opencl

import (
	"context"
	"fmt"
	"sync"

	"github.com/xentlab/xent/ce"
	"github.com/xentlab/xent/device"
	"github.com/xentlab/xent/device/opencl/internal/cl"
)

// Buffer is a dense logit matrix kept in device memory (device.Buffer):
// upload once, run forward and backward many times on the Matrix that
// refers to it (the gradient replaces the logits in place on the device),
// download only what is needed.
type Buffer struct {
	d          *Device
	mem        cl.Mem
	rows, cols int
	typ        ce.DType
	once       sync.Once
}

// Upload implements device.Device: it copies x into a new device buffer,
// dense (stride = cols). The matrix must fit in one allocation
// (CL_DEVICE_MAX_MEM_ALLOC_SIZE); larger ones go through host rows, which
// are chunked.
func (d *Device) Upload(ctx context.Context, x ce.Matrix) (device.Buffer, error) {
	if x.Buf != nil {
		return nil, fmt.Errorf("opencl: %w: Upload takes host rows", device.ErrNotImplemented)
	}
	if err := d.begin(ctx); err != nil {
		return nil, err
	}
	defer d.mu.Unlock()
	bytes := int64(x.Rows) * int64(x.Cols) * int64(x.Type.Size())
	if bytes > d.maxAlloc {
		return nil, fmt.Errorf("%w: %d × %d elements of %v need %d bytes, one buffer may hold %d; use host rows, which are chunked", ErrTooLarge, x.Rows, x.Cols, x.Type, bytes, d.maxAlloc)
	}
	m, err := cl.CreateBuffer(d.p.ctx, cl.MemReadWrite, int(max(bytes, 4)))
	if err != nil {
		return nil, d.wrap(err)
	}
	buf := &Buffer{d: d, mem: m, rows: x.Rows, cols: x.Cols, typ: x.Type}
	if x.Rows > 0 {
		size, n := x.Type.Size(), (x.Rows-1)*x.Stride+x.Cols
		r := cl.Rect{Pitch: size * x.Cols, HostPitch: size * x.Stride, RowBytes: size * x.Cols, Rows: x.Rows}
		if x.Type == ce.F32 {
			_, err = cl.WriteRect(d.copyQ, m, true, r, x.Data[:n], nil)
		} else {
			_, err = cl.WriteRect(d.copyQ, m, true, r, x.Half[:n], nil)
		}
	}
	if err != nil {
		m.Release()
		return nil, d.wrap(err)
	}
	return buf, nil
}

// Rows implements device.Buffer.
func (b *Buffer) Rows() int { return b.rows }

// Cols implements device.Buffer.
func (b *Buffer) Cols() int { return b.cols }

// Type implements device.Buffer.
func (b *Buffer) Type() ce.DType { return b.typ }

// Owner implements device.Buffer.
func (b *Buffer) Owner() device.Device { return b.d }

// Download implements device.Buffer: it copies the buffer (logits, or the
// gradient after a fused call on it) into dst.
func (b *Buffer) Download(ctx context.Context, dst ce.Matrix) error {
	d := b.d
	if err := d.begin(ctx); err != nil {
		return err
	}
	defer d.mu.Unlock()
	if b.mem == 0 {
		return fmt.Errorf("opencl: %w", device.ErrReleased)
	}
	var err error
	if b.rows > 0 {
		size, n := b.typ.Size(), (b.rows-1)*dst.Stride+b.cols
		r := cl.Rect{Pitch: size * b.cols, HostPitch: size * dst.Stride, RowBytes: size * b.cols, Rows: b.rows}
		if b.typ == ce.F32 {
			_, err = cl.ReadRect(d.copyQ, b.mem, true, r, dst.Data[:n], nil)
		} else {
			_, err = cl.ReadRect(d.copyQ, b.mem, true, r, dst.Half[:n], nil)
		}
	}
	if err != nil {
		return d.wrap(err)
	}
	return nil
}

// Release implements device.Buffer; a second call does nothing.
func (b *Buffer) Release() error {
	var err error
	b.once.Do(func() {
		b.d.mu.Lock()
		defer b.d.mu.Unlock()
		err = b.mem.Release()
		b.mem = 0
	})
	return err
}
