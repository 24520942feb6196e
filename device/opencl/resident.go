package opencl

import (
	"context"
	"fmt"
	"sync"

	"github.com/xentlab/xent/device"
	"github.com/xentlab/xent/device/opencl/internal/cl"
)

// Buffer is a dense logit matrix kept in device memory (device.Buffer):
// upload once, run forward and backward many times (the gradient replaces
// the logits in place on the device), download only what is needed.
type Buffer struct {
	d          *Device
	mem        cl.Mem
	rows, cols int
	once       sync.Once
}

var _ device.Resident = (*Device)(nil)

// Upload implements device.Resident: it copies x into a new device buffer,
// dense (stride = cols). The matrix must fit in one allocation
// (CL_DEVICE_MAX_MEM_ALLOC_SIZE); larger ones go through the chunked
// host-slice API.
func (d *Device) Upload(ctx context.Context, x device.Matrix) (device.Buffer, error) {
	if err := d.begin(ctx); err != nil {
		return nil, err
	}
	defer d.mu.Unlock()
	bytes := int64(x.Rows) * int64(x.Cols) * 4
	if bytes > d.maxAlloc {
		return nil, fmt.Errorf("%w: %d × %d floats need %d bytes, one buffer may hold %d; use the host-slice API, which chunks", ErrTooLarge, x.Rows, x.Cols, bytes, d.maxAlloc)
	}
	m, err := cl.CreateBuffer(d.p.ctx, cl.MemReadWrite, int(max(bytes, 4)))
	if err != nil {
		return nil, d.wrap(err)
	}
	buf := &Buffer{d: d, mem: m, rows: x.Rows, cols: x.Cols}
	if x.Stride == x.Cols {
		_, err = cl.Write(d.copyQ, m, true, 0, x.Data[:x.Rows*x.Cols], nil)
	} else {
		for i := 0; i < x.Rows && err == nil; i++ {
			_, err = cl.Write(d.copyQ, m, true, 4*i*x.Cols, x.Data[i*x.Stride:i*x.Stride+x.Cols], nil)
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

func (b *Buffer) run(ctx context.Context, c *call) (err error) {
	d := b.d
	if err := d.begin(ctx); err != nil {
		return err
	}
	defer d.mu.Unlock()
	if b.mem == 0 {
		return fmt.Errorf("opencl: %w", device.ErrReleased)
	}
	if b.rows == 0 {
		return nil
	}
	var bs buffers
	defer func() {
		if rerr := bs.release(); err == nil && rerr != nil {
			err = d.wrap(rerr)
		}
	}()
	r, err := d.setup(&bs, c)
	if err != nil {
		return d.wrap(err)
	}
	ev, err := d.launch(&bs, r, c, b.mem, 0, b.rows, nil)
	if err == nil {
		err = d.finishRows(&bs, r, c, ev)
	}
	if err != nil {
		return d.wrap(err)
	}
	d.q.Finish()
	d.lastKernel = bs.kernelTime()
	return nil
}

func (b *Buffer) matrix() device.Matrix {
	return device.Matrix{Rows: b.rows, Cols: b.cols, Stride: b.cols}
}

// LogSumExp implements device.Buffer.
func (b *Buffer) LogSumExp(ctx context.Context, dst []float32) error {
	return b.run(ctx, &call{x: b.matrix(), lseOnly: dst})
}

// CrossEntropy implements device.Buffer: with scale set, the gradient
// replaces the logits in the buffer.
func (b *Buffer) CrossEntropy(ctx context.Context, targets []int32, opt *device.Options, out device.Rows, scale []float32) error {
	c := &call{x: b.matrix(), targets: targets, opt: opt, out: out}
	if scale != nil {
		c.grad = &device.Grad{Stride: b.cols, Scale: scale}
	}
	return b.run(ctx, c)
}

// Download implements device.Buffer: it copies the buffer (logits, or the
// gradient after a backward call) into dst.
func (b *Buffer) Download(ctx context.Context, dst device.Matrix) error {
	d := b.d
	if err := d.begin(ctx); err != nil {
		return err
	}
	defer d.mu.Unlock()
	if b.mem == 0 {
		return fmt.Errorf("opencl: %w", device.ErrReleased)
	}
	var err error
	if dst.Stride == b.cols {
		_, err = cl.Read(d.copyQ, b.mem, true, 0, dst.Data[:b.rows*b.cols], nil)
	} else {
		for i := 0; i < b.rows && err == nil; i++ {
			_, err = cl.Read(d.copyQ, b.mem, true, 4*i*b.cols, dst.Data[i*dst.Stride:i*dst.Stride+b.cols], nil)
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
