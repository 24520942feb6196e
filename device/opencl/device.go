package opencl

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/xentlab/xent/device"
	"github.com/xentlab/xent/device/opencl/internal/cl"
)

// Device is one OpenCL device.
type Device struct {
	mu        sync.Mutex // serializes calls
	h         handle
	p         *program
	q, copyQ  cl.Queue
	maxAlloc  int64
	globalMem int64
	closed    bool

	lastKernel time.Duration // kernels of the last call

	// ChunkBytes, when > 0, caps the bytes of one chunk buffer (tests use
	// it to force the chunked path on small matrices).
	ChunkBytes int64
	// rowBase is a test hook: an extra row number added to the logits'
	// row index, with the matching element offset subtracted, to check
	// 64-bit offset arithmetic without allocating 2^31 elements.
	rowBase uint64
}

var _ device.Device = (*Device)(nil)

func newDevice(h handle, tn tuning) (*Device, error) {
	p, err := acquire(h, tn)
	if err != nil {
		return nil, fmt.Errorf("opencl: %s: %w", h.name, err)
	}
	d := &Device{h: h, p: p}
	ma, err1 := h.dev.Uint(cl.DeviceMaxMemAllocSize)
	gm, err2 := h.dev.Uint(cl.DeviceGlobalMemSize)
	if err := errors.Join(err1, err2); err != nil {
		p.put()
		return nil, fmt.Errorf("opencl: %s: %w", h.name, err)
	}
	d.maxAlloc, d.globalMem = int64(min(ma, math.MaxInt64/2)), int64(min(gm, math.MaxInt64/2))
	if d.q, err = cl.CreateQueue(p.ctx, h.dev, cl.QueueProfilingEnable); err == nil {
		d.copyQ, err = cl.CreateQueue(p.ctx, h.dev, 0)
	}
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("opencl: %s: %w", h.name, err)
	}
	return d, nil
}

// Info implements device.Device.
func (d *Device) Info() device.Info {
	return device.Info{
		Name: d.h.name, Kind: d.h.kind, Backend: "opencl",
		Kernel:   fmt.Sprintf("xent.cl wg=%d unroll=%d", d.p.wg, d.p.unroll),
		Platform: d.h.platName + ", driver " + d.h.driver,
		Spec:     fmt.Sprintf("opencl:%d:%d", d.h.pi, d.h.di),
	}
}

// Close implements device.Device.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	var errs []error
	for _, q := range []cl.Queue{d.q, d.copyQ} {
		if q != 0 {
			errs = append(errs, q.Finish(), q.Release())
		}
	}
	d.p.put()
	return errors.Join(errs...)
}

// chunkRows returns how many rows of stride floats one chunk buffer holds.
func (d *Device) chunkRows(rows, cols, stride int) (int, error) {
	limit := min(d.maxAlloc, d.globalMem/4)
	if d.ChunkBytes > 0 {
		limit = min(limit, d.ChunkBytes)
	}
	rowBytes := int64(stride) * 4
	if int64(cols)*4 > limit {
		return 0, fmt.Errorf("%w: a row of %d floats needs %d bytes, one buffer may hold %d", ErrTooLarge, cols, int64(cols)*4, limit)
	}
	n := 1 + (limit-int64(cols)*4)/rowBytes
	return int(min(n, int64(rows))), nil
}

// buffers are the per-call device buffers; release frees them.
type buffers struct {
	mems    []cl.Mem
	evs     []cl.Event
	kernels []cl.Event // the kernel events among evs
}

// kernelTime sums the execution times of the kernels (all complete).
func (b *buffers) kernelTime() time.Duration {
	var ns int64
	for _, e := range b.kernels {
		if v, err := e.Duration(); err == nil {
			ns += v
		}
	}
	return time.Duration(ns)
}

func (b *buffers) mem(ctx cl.Context, bytes int) (cl.Mem, error) {
	m, err := cl.CreateBuffer(ctx, cl.MemReadWrite, max(bytes, 4))
	if err == nil {
		b.mems = append(b.mems, m)
	}
	return m, err
}

func (b *buffers) ev(e cl.Event, err error) (cl.Event, error) {
	if err == nil && e != 0 {
		b.evs = append(b.evs, e)
	}
	return e, err
}

func (b *buffers) release() error {
	var errs []error
	for _, e := range b.evs { // waits for each, so nothing is in flight below
		errs = append(errs, e.Release())
	}
	for _, m := range b.mems {
		errs = append(errs, m.Release())
	}
	return errors.Join(errs...)
}

// call is one host-slice computation.
type call struct {
	x       device.Matrix
	targets []int32
	opt     *device.Options
	out     device.Rows
	grad    *device.Grad
	lseOnly []float32 // LogSumExp: the destination
}

// LogSumExp implements device.Device.
func (d *Device) LogSumExp(ctx context.Context, dst []float32, x device.Matrix) error {
	return d.run(ctx, &call{x: x, lseOnly: dst})
}

// CrossEntropy implements device.Device.
func (d *Device) CrossEntropy(ctx context.Context, x device.Matrix, targets []int32, opt *device.Options, out device.Rows, grad *device.Grad) error {
	return d.run(ctx, &call{x: x, targets: targets, opt: opt, out: out, grad: grad})
}

const (
	fSmooth  = 1
	fWeights = 2
	fSoftcap = 4
	fZLoss   = 8
)

// rowBufs are the device buffers of the per-row inputs and outputs.
type rowBufs struct {
	lse, tg, wts, scale, loss, corr cl.Mem
	flags, grad                     int32
	eps, zl, cap, W                 float32
}

// setup creates the per-row buffers of c and enqueues their uploads.
func (d *Device) setup(b *buffers, c *call) (*rowBufs, error) {
	rows, cols := c.x.Rows, c.x.Cols
	var err error
	mk := func(bytes int) cl.Mem {
		m, e := b.mem(d.p.ctx, bytes)
		err = errors.Join(err, e)
		return m
	}
	r := &rowBufs{lse: mk(4 * rows)}
	if c.lseOnly != nil {
		return r, err
	}
	o := c.opt
	r.eps, r.zl, r.cap, r.W = o.Smoothing, o.ZLoss, o.Softcap, float32(o.WeightSum)
	if o.Smoothing > 0 {
		r.flags |= fSmooth
	}
	if o.Weights != nil {
		r.flags |= fWeights
	}
	if o.Softcap > 0 {
		r.flags |= fSoftcap
	}
	if o.ZLoss > 0 {
		r.flags |= fZLoss
	}
	if c.grad != nil {
		r.grad = 1
	}
	r.tg, r.wts, r.scale, r.loss, r.corr = mk(4*rows), mk(4*max(cols, 1)), mk(4*rows), mk(4*rows), mk(rows)
	if err != nil {
		return nil, err
	}
	if _, err = b.ev(cl.Write(d.copyQ, r.tg, false, 0, c.targets, nil)); err == nil && o.Weights != nil {
		_, err = b.ev(cl.Write(d.copyQ, r.wts, false, 0, o.Weights, nil))
	}
	if err == nil && c.grad != nil {
		_, err = b.ev(cl.Write(d.copyQ, r.scale, false, 0, c.grad.Scale, nil))
	}
	if err == nil {
		err = d.copyQ.Finish() // small: the kernels may use them at once
	}
	return r, err
}

// launch enqueues the kernel of c over rows [lo, lo+n) held in xmem from
// its start (the logits' element offset of row lo is 0 there).
func (d *Device) launch(b *buffers, r *rowBufs, c *call, xmem cl.Mem, lo, n int, wait []cl.Event) (cl.Event, error) {
	stride := uint64(c.x.Stride)
	base := d.rowBase + uint64(lo)
	// The kernels are shared by every Device on this OpenCL device, and
	// clSetKernelArg is not safe concurrently: arguments and enqueue go
	// together under the program's lock (the enqueue captures them).
	d.p.kernelMu.Lock()
	defer d.p.kernelMu.Unlock()
	var err error
	kern := d.p.ce
	if c.lseOnly != nil {
		kern = d.p.lse
		err = kern.SetArgs(xmem, base*stride, stride, base, int32(c.x.Cols), int32(lo), r.lse)
	} else {
		err = kern.SetArgs(xmem, base*stride, stride, base, int32(c.x.Cols), int32(lo),
			r.tg, r.wts, r.scale, r.loss, r.lse, r.corr, r.flags, r.grad, r.eps, r.zl, r.cap, r.W)
	}
	if err != nil {
		return 0, err
	}
	ev, err := b.ev(d.q.NDRange(kern, n, d.p.wg, wait))
	if err == nil {
		b.kernels = append(b.kernels, ev)
		err = d.q.Flush()
	}
	return ev, err
}

// finishRows reads the per-row outputs of c after last and waits for them.
func (d *Device) finishRows(b *buffers, r *rowBufs, c *call, last cl.Event) error {
	wait := []cl.Event{last}
	var err error
	if c.lseOnly != nil {
		_, err = b.ev(cl.Read(d.copyQ, r.lse, false, 0, c.lseOnly, wait))
	} else {
		out := c.out
		if out.Loss != nil {
			_, err = b.ev(cl.Read(d.copyQ, r.loss, false, 0, out.Loss, wait))
		}
		if err == nil && out.LSE != nil {
			_, err = b.ev(cl.Read(d.copyQ, r.lse, false, 0, out.LSE, wait))
		}
		if err == nil && out.Correct != nil {
			_, err = b.ev(cl.Read(d.copyQ, r.corr, false, 0, boolBytes(out.Correct), wait))
		}
	}
	if err == nil {
		err = d.copyQ.Finish()
	}
	return err
}

// begin locks the device for one call and checks that it may run.
func (d *Device) begin(ctx context.Context) error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return device.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		d.mu.Unlock()
		return err
	}
	return nil
}

func (d *Device) run(ctx context.Context, c *call) (err error) {
	if err := d.begin(ctx); err != nil {
		return err
	}
	defer d.mu.Unlock()
	x := c.x
	rows, cols, stride := x.Rows, x.Cols, x.Stride
	if rows == 0 {
		return nil
	}
	step, err := d.chunkRows(rows, cols, stride)
	if err != nil {
		return err
	}
	var b buffers
	defer func() {
		if rerr := b.release(); err == nil && rerr != nil {
			err = d.wrap(rerr)
		}
	}()
	span := func(n int) int { return (n-1)*stride + cols }
	var xb [2]cl.Mem
	for i := range xb {
		if i == 1 && step >= rows {
			xb[1] = xb[0]
			break
		}
		if xb[i], err = b.mem(d.p.ctx, 4*span(step)); err != nil {
			return d.wrap(err)
		}
	}
	r, err := d.setup(&b, c)
	if err != nil {
		return d.wrap(err)
	}

	// Double buffering: on copyQ the order is W0, W1, R0, W2, R1, ...; W(k+1)
	// waits for kernel k-1 (the last user of its buffer), kernel k for W(k),
	// R(k) for kernel k.
	nchunks := (rows + step - 1) / step
	evW := make([]cl.Event, nchunks)
	evK := make([]cl.Event, nchunks)
	write := func(k int) error {
		lo := k * step
		n := min(step, rows-lo)
		var wait []cl.Event
		if k >= 2 {
			wait = []cl.Event{evK[k-2]}
		}
		var err error
		evW[k], err = b.ev(cl.Write(d.copyQ, xb[k%2], false, 0, x.Data[lo*stride:lo*stride+span(n)], wait))
		if err == nil {
			err = d.copyQ.Flush()
		}
		return err
	}
	if err := write(0); err != nil {
		return d.wrap(err)
	}
	for k := range nchunks {
		if err := ctx.Err(); err != nil {
			return err // the deferred release waits for what is in flight
		}
		if k+1 < nchunks {
			if err := write(k + 1); err != nil {
				return d.wrap(err)
			}
		}
		lo := k * step
		n := min(step, rows-lo)
		if evK[k], err = d.launch(&b, r, c, xb[k%2], lo, n, []cl.Event{evW[k]}); err != nil {
			return d.wrap(err)
		}
		if c.grad != nil {
			if err := d.readGrad(&b, xb[k%2], c.grad, lo, n, cols, stride, evK[k]); err != nil {
				return d.wrap(err)
			}
		}
	}
	if err := d.finishRows(&b, r, c, evK[nchunks-1]); err != nil {
		return d.wrap(err)
	}
	d.q.Finish()
	d.lastKernel = b.kernelTime()
	return nil
}

// readGrad reads chunk rows [lo, lo+n) of the gradient, computed in place
// in buf, into grad after ev.
func (d *Device) readGrad(b *buffers, buf cl.Mem, g *device.Grad, lo, n, cols, stride int, ev cl.Event) error {
	wait := []cl.Event{ev}
	if g.Stride == stride { // one read of the whole span
		_, err := b.ev(cl.Read(d.copyQ, buf, false, 0, g.Data[lo*stride:lo*stride+(n-1)*stride+cols], wait))
		if err == nil {
			err = d.copyQ.Flush()
		}
		return err
	}
	for i := range n {
		r := lo + i
		if _, err := b.ev(cl.Read(d.copyQ, buf, false, 4*i*stride, g.Data[r*g.Stride:r*g.Stride+cols], wait)); err != nil {
			return err
		}
	}
	return d.copyQ.Flush()
}

// wrap names the device in an error.
func (d *Device) wrap(err error) error {
	var st cl.Status
	if errors.As(err, &st) && st.Lost() {
		return fmt.Errorf("opencl: %s: device lost or out of resources: %w", d.h.name, err)
	}
	return fmt.Errorf("opencl: %s: %w", d.h.name, err)
}
