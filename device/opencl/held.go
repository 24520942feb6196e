package opencl

import (
	"context"
	"fmt"
	"math"

	"github.com/xentlab/xent/ce"
	"github.com/xentlab/xent/cpu"
	"github.com/xentlab/xent/device"
	"github.com/xentlab/xent/device/opencl/internal/cl"
)

// The passes over matrices the device holds beside the row kernels' calls:
// a distillation's gathers (device.Gatherer, rows.cl's xent_gather and
// xent_lin_gather: the column indices go up, the k logits a row come
// back) and the rank pass (device.Ranker, xent_rank: each row's merged
// max and target logit go up, its count and entropy sum come back); the
// matrix stays where it is. Host rows are the CPU's (device.GatherOf,
// device.RanksOf), which reads them in place.

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

// Ranks implements device.Ranker for a matrix x the device holds, with
// xent_rank: rows whose merged sum is NaN get a NaN Ent and no count, as
// the CPU's.
func (d *Device) Ranks(ctx context.Context, dst []ce.Rank, x ce.Matrix, targets []int32, part []ce.Partial, p *ce.Problem) (err error) {
	if x.Buf == nil {
		return fmt.Errorf("opencl: %w: Ranks takes a matrix the device holds (the CPU ranks host rows: device.RanksOf)", device.ErrNotImplemented)
	}
	rows := x.Rows
	tg, gm, gzt := make([]int32, rows), make([]float32, rows), make([]float32, rows)
	for i, t := range targets {
		tg[i] = -1 // skipped: ignored, or a NaN sum's
		if t >= 0 && !math.IsNaN(part[i].LogSum()) {
			tg[i], gm[i], gzt[i] = t, part[i].Max, part[i].ZT
		}
	}
	if rows == 0 {
		return nil
	}
	if err := d.begin(ctx); err != nil {
		return err
	}
	defer d.mu.Unlock()
	xm, err := d.resident(x)
	if err != nil {
		return err
	}
	var b buffers
	defer func() {
		if rerr := b.release(); err == nil && rerr != nil {
			err = d.wrap(rerr)
		}
	}()
	ms := make([]cl.Mem, 5) // targets, gm, gzt, gr, ge
	for k := range ms {
		if ms[k], err = b.mem(d.p.ctx, 4*rows); err != nil {
			return d.wrap(err)
		}
	}
	_, err = b.ev(cl.Write(d.q, ms[0], false, 0, tg, nil))
	if err == nil {
		_, err = b.ev(cl.Write(d.q, ms[1], false, 0, gm, nil))
	}
	if err == nil {
		_, err = b.ev(cl.Write(d.q, ms[2], false, 0, gzt, nil))
	}
	if err != nil {
		return d.wrap(err)
	}
	pa := probOf(&call{x: x, p: p}) // as launch's, from row 0
	pa.Stride, pa.RowBase, pa.Rows = uint64(x.Cols), d.rowBase, int32(rows)
	pa.BaseOff = pa.RowBase * pa.Stride
	k := d.p.gatherK[x.Buf.Type()][2]
	d.p.kernelMu.Lock()
	err = k.SetArgs(xm, cl.ValueOf(&pa), ms[0], ms[1], ms[2], ms[3], ms[4])
	if err == nil {
		_, err = b.ev(d.q.NDRange(k, d.groups(rows, x.Cols*x.Buf.Type().Size()), d.p.tn.WG, nil))
	}
	d.p.kernelMu.Unlock()
	gr, ge := make([]int32, rows), make([]float32, rows)
	if err == nil {
		_, err = b.ev(cl.Read(d.q, ms[3], false, 0, gr, nil))
	}
	if err == nil {
		_, err = b.ev(cl.Read(d.q, ms[4], true, 0, ge, nil))
	}
	if err != nil {
		return d.wrap(err)
	}
	for i, t := range targets {
		switch {
		case tg[i] >= 0:
			dst[i] = ce.Rank{Greater: int64(gr[i]), Ent: float64(ge[i])}
		case t >= 0:
			dst[i] = ce.Rank{Ent: math.NaN()}
		}
	}
	return nil
}
