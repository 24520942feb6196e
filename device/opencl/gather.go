package opencl

import (
	"context"
	"fmt"

	"github.com/xentlab/xent/ce"
	"github.com/xentlab/xent/cpu"
	"github.com/xentlab/xent/device"
	"github.com/xentlab/xent/device/opencl/internal/cl"
)

// A distillation's gathers on matrices the device holds (device.Gatherer,
// rows.cl's xent_gather and xent_lin_gather): the column indices go up,
// the k logits a row come back, and the matrix stays where it is. Host
// rows are the CPU's (device.GatherOf), which reads them in place.

// Gather implements device.Gatherer for a matrix x the device holds.
func (d *Device) Gather(ctx context.Context, z []float32, x ce.Matrix, cols []int32, k int) error {
	if x.Buf == nil {
		return fmt.Errorf("opencl: %w: Gather takes a matrix the device holds (the CPU gathers host rows: device.GatherOf)", device.ErrNotImplemented)
	}
	if err := d.begin(ctx); err != nil {
		return err
	}
	defer d.mu.Unlock()
	xm, err := d.resident(x)
	if err != nil {
		return err
	}
	return d.gather(z, cols, func(b *buffers, cm, zm cl.Mem) (cl.Kernel, []any, error) {
		return d.p.gatherK[x.Buf.Type()][0], []any{xm, uint64(x.Buf.Cols()), int32(k), uint64(len(cols)), cm, zm}, nil
	})
}

// LinearGather implements device.Gatherer for a classifier lin.W the
// device holds: H (host rows, widened to W's type where it differs and W
// is float32) and the bias go up for the call.
func (d *Device) LinearGather(ctx context.Context, z []float32, lin *ce.Linear, cols []int32, k int) error {
	switch {
	case lin.H.Buf != nil:
		return fmt.Errorf("opencl: %w: the hidden states of a fused linear are host rows", device.ErrNotImplemented)
	case lin.W.Buf == nil:
		return fmt.Errorf("opencl: %w: LinearGather takes a classifier the device holds (the CPU gathers host rows: device.GatherOf)", device.ErrNotImplemented)
	}
	if err := d.begin(ctx); err != nil {
		return err
	}
	defer d.mu.Unlock()
	wm, err := d.resident(lin.W)
	if err != nil {
		return err
	}
	t, h := lin.W.Buf.Type(), lin.H
	if h.Type != t {
		if t != ce.F32 {
			return fmt.Errorf("opencl: %w: a resident %v classifier takes hidden states of its type, not %v", device.ErrNotImplemented, t, h.Type)
		}
		h = cpu.Widened(h)
	}
	N, D := h.Rows, h.Cols
	if int64(N)*int64(D)*int64(t.Size()) > d.maxAlloc {
		return fmt.Errorf("%w: H (%d × %d) exceeds one allocation of %d bytes", ErrTooLarge, N, D, d.maxAlloc)
	}
	return d.gather(z, cols, func(b *buffers, cm, zm cl.Mem) (cl.Kernel, []any, error) {
		hm, err := b.mem(d.p.ctx, N*D*t.Size())
		if err == nil {
			err = b.writeRows(d.q, hm, h)
		}
		hasb, bm := int32(0), cm // any buffer where there is no bias: not read
		if err == nil && lin.Bias != nil {
			hasb = 1
			if bm, err = b.mem(d.p.ctx, 4*len(lin.Bias)); err == nil {
				_, err = b.ev(cl.Write(d.q, bm, false, 0, lin.Bias, nil))
			}
		}
		return d.p.gatherK[t][1], []any{hm, uint64(D), wm, uint64(lin.W.Buf.Cols()), bm, hasb, int32(D), int32(k), uint64(len(cols)), cm, zm}, err
	})
}

// gather runs one gather of len(cols) entries into z (d's lock held): the
// column indices written, the kernel that prepare gives (with its inputs
// written into b) run over the entries in work-groups of the program's
// size, z read back.
func (d *Device) gather(z []float32, cols []int32, prepare func(b *buffers, cm, zm cl.Mem) (cl.Kernel, []any, error)) (err error) {
	n := len(cols)
	if n == 0 {
		return nil
	}
	if int64(4*n) > d.maxAlloc {
		return fmt.Errorf("%w: %d entries to gather exceed one allocation of %d bytes", ErrTooLarge, n, d.maxAlloc)
	}
	var b buffers
	defer func() {
		if rerr := b.release(); err == nil && rerr != nil {
			err = d.wrap(rerr)
		}
	}()
	cm, err := b.mem(d.p.ctx, 4*n)
	if err != nil {
		return d.wrap(err)
	}
	zm, err := b.mem(d.p.ctx, 4*n)
	if err != nil {
		return d.wrap(err)
	}
	if _, err := b.ev(cl.Write(d.q, cm, false, 0, cols, nil)); err != nil {
		return d.wrap(err)
	}
	k, args, err := prepare(&b, cm, zm)
	if err != nil {
		return d.wrap(err)
	}
	wg := d.p.tn.WG
	d.p.kernelMu.Lock()
	err = k.SetArgs(args...)
	if err == nil {
		_, err = b.ev(d.q.NDRange(k, ceilDiv(n, wg), wg, nil))
	}
	d.p.kernelMu.Unlock()
	if err == nil {
		_, err = b.ev(cl.Read(d.q, zm, true, 0, z[:n], nil))
	}
	if err != nil {
		return d.wrap(err)
	}
	return nil
}
