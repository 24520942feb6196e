package opencl

import (
	"context"
	"fmt"
	"math"

	"github.com/xentlab/xent/ce"
	"github.com/xentlab/xent/cpu"
	"github.com/xentlab/xent/device"
	"github.com/xentlab/xent/device/opencl/internal/cl"
	"github.com/xentlab/xent/internal/tiles"
)

// The passes over matrices the device holds beside the row kernels' calls:
// a distillation's gathers (device.Gatherer, rows.cl's xent_gather and
// xent_lin_gather: the column indices go up, the k logits a row come
// back) and the rank passes (device.Ranker and LinearRanker: xent_rank,
// linear.cl's xent_lin_rank; each row's merged max and target logit go
// up, its count and entropy sum come back); the matrix stays where it is.
// Host rows are the CPU's (device.GatherOf, device.RanksOf), which reads
// them in place.

// Gather implements device.Gatherer for a matrix x the device holds.
func (d *Device) Gather(ctx context.Context, z []float32, x ce.Matrix, cols []int32, k int) error {
	if x.Buf == nil {
		return fmt.Errorf("opencl: %w: Gather takes a matrix the device holds (the CPU gathers host rows: device.GatherOf)", device.ErrNotImplemented)
	}
	n := len(cols)
	return d.holding(ctx, x, func(xm cl.Mem) error {
		return d.pass(d.p.heldK[x.Buf.Type()][0], entryGroups(n, d.p.tn.WG), func(*buffers) ([]any, error) {
			return []any{xm, uint64(x.Buf.Cols()), int32(k), uint64(n)}, nil
		}, []any{cols}, []any{z[:n]})
	})
}

// LinearGather implements device.Gatherer for a classifier lin.W the
// device holds: H (host rows) and the bias go up for the call. H and W of
// different types are both read as float32: H widened on the host, a half
// W on the device (heldWide).
func (d *Device) LinearGather(ctx context.Context, z []float32, lin *ce.Linear, cols []int32, k int) error {
	switch {
	case lin.H.Buf != nil:
		return fmt.Errorf("opencl: %w: the hidden states of a fused linear are host rows", device.ErrNotImplemented)
	case lin.W.Buf == nil:
		return fmt.Errorf("opencl: %w: LinearGather takes a classifier the device holds (the CPU gathers host rows: device.GatherOf)", device.ErrNotImplemented)
	}
	wt, h := lin.W.Buf.Type(), lin.H
	t := wt // the kernel's type
	if h.Type != wt {
		t, h = ce.F32, cpu.Widened(h)
	}
	N, D, V, n := h.Rows, h.Cols, lin.W.Buf.Rows(), len(cols)
	if int64(N)*int64(D)*int64(t.Size()) > d.maxAlloc {
		return fmt.Errorf("%w: H (%d × %d) exceeds one allocation of %d bytes", ErrTooLarge, N, D, d.maxAlloc)
	}
	return d.holding(ctx, lin.W, func(wm cl.Mem) error {
		return d.pass(d.p.heldK[t][1], entryGroups(n, d.p.tn.WG), func(b *buffers) ([]any, error) {
			wm, err := d.heldWide(b, wm, wt, t, V*D)
			var hm cl.Mem
			if err == nil {
				hm, err = b.mem(d.p.ctx, N*D*t.Size())
			}
			if err == nil {
				err = b.writeRows(d.q, hm, h)
			}
			hasb, bm := int32(0), hm // any buffer where there is no bias: not read
			if err == nil && lin.Bias != nil {
				hasb = 1
				if bm, err = b.mem(d.p.ctx, 4*len(lin.Bias)); err == nil {
					_, err = b.ev(cl.Write(d.q, bm, false, 0, lin.Bias, nil))
				}
			}
			return []any{hm, uint64(D), wm, uint64(D), bm, hasb, int32(D), int32(k), uint64(n)}, err
		}, []any{cols}, []any{z[:n]})
	})
}

// heldWide returns the memory of a held W of n elements of type wt, wm,
// as a call of type t reads it: wm itself where the types are the same,
// else (t float32, W half) a float32 copy in a buffer of b that
// xent_widen fills on the device, enqueued before what follows on d's
// queue (4n bytes of device memory for the call).
func (d *Device) heldWide(b *buffers, wm cl.Mem, wt, t ce.DType, n int) (cl.Mem, error) {
	if wt == t {
		return wm, nil
	}
	if int64(n)*4 > d.maxAlloc {
		return 0, fmt.Errorf("%w: W widened to float32 (%d elements) exceeds one allocation of %d bytes", ErrTooLarge, n, d.maxAlloc)
	}
	m, err := b.mem(d.p.ctx, 4*n)
	if err != nil {
		return 0, err
	}
	k := d.p.heldK[wt][3]
	d.p.kernelMu.Lock()
	defer d.p.kernelMu.Unlock()
	if err := k.SetArgs(wm, uint64(n), m); err != nil {
		return 0, err
	}
	_, err = b.ev(d.q.NDRange(k, min(ceilDiv(n, d.p.tn.WG), 4096), d.p.tn.WG, nil))
	return m, err
}

// entryGroups is the work-groups of wg that take n entries, one a
// work-item.
func entryGroups(n, wg int) int { return ceilDiv(n, wg) }

// Ranks implements device.Ranker for a matrix x the device holds, with
// xent_rank (rankPass).
func (d *Device) Ranks(ctx context.Context, dst []ce.Rank, x ce.Matrix, targets []int32, part []ce.Partial, p *ce.Problem) error {
	if x.Buf == nil {
		return fmt.Errorf("opencl: %w: Ranks takes a matrix the device holds (the CPU ranks host rows: device.RanksOf)", device.ErrNotImplemented)
	}
	x.Type = x.Buf.Type()
	return d.holding(ctx, x, func(xm cl.Mem) error { return d.rankPass(xm, x, dst, targets, part, p) })
}

// rankPass runs xent_rank over x, dense rows of its type at m (d's lock
// held): rows whose merged sum is NaN get a NaN Ent and no count, as the
// CPU's.
func (d *Device) rankPass(m cl.Mem, x ce.Matrix, dst []ce.Rank, targets []int32, part []ce.Partial, p *ce.Problem) error {
	rows := x.Rows
	tg, gm, gzt := rankIns(targets, part)
	pa := probOf(&call{x: x, p: p}) // as launch's, from row 0
	pa.Stride, pa.RowBase, pa.Rows = uint64(x.Cols), d.rowBase, int32(rows)
	pa.BaseOff = pa.RowBase * pa.Stride
	gr, ge := make([]int32, rows), make([]float32, rows)
	err := d.pass(d.p.heldK[x.Type][2], d.groups(rows, x.Cols*x.Type.Size()), func(*buffers) ([]any, error) {
		return []any{m, cl.ValueOf(&pa)}, nil
	}, []any{tg, gm, gzt}, []any{gr, ge})
	if err != nil {
		return err
	}
	setRanks(dst, targets, tg, gr, ge, 1)
	return nil
}

// rankIns returns the rank kernels' inputs of each row: its target (-1
// for a row they skip: ignored, or of a NaN sum), its merged max and its
// target's logit.
func rankIns(targets []int32, part []ce.Partial) (tg []int32, gm, gzt []float32) {
	tg, gm, gzt = make([]int32, len(targets)), make([]float32, len(targets)), make([]float32, len(targets))
	for i, t := range targets {
		tg[i] = -1
		if t >= 0 && !math.IsNaN(part[i].LogSum()) {
			tg[i], gm[i], gzt[i] = t, part[i].Max, part[i].ZT
		}
	}
	return tg, gm, gzt
}

// setRanks sets dst from the rank kernels' counts gr and sums ge of S
// splits (entry s·N + i of N rows), added in order of s; rows skipped
// (tg) but counted get a NaN Ent, as the CPU's.
func setRanks(dst []ce.Rank, targets, tg []int32, gr []int32, ge []float32, S int) {
	N := len(targets)
	for i, t := range targets {
		switch {
		case tg[i] >= 0:
			var r ce.Rank
			for s := range S {
				r.Merge(ce.Rank{Greater: int64(gr[s*N+i]), Ent: float64(ge[s*N+i])})
			}
			dst[i] = r
		case t >= 0:
			dst[i] = ce.Rank{Ent: math.NaN()}
		}
	}
}

// LinearRanks implements device.LinearRanker for a classifier lin.W the
// device holds, on the fused linear's path: linear.cl's xent_lin_rank
// where the tuning names a tile (fused.ranks: the logits never stored),
// else the logits tile by tile from CLBlast's products (linear.go), each
// tile ranked by xent_rank (clLinear.Ranks).
func (d *Device) LinearRanks(ctx context.Context, dst []ce.Rank, lin *ce.Linear, targets []int32, part []ce.Partial, p *ce.Problem) error {
	if lin.W.Buf == nil {
		return fmt.Errorf("opencl: %w: LinearRanks takes a classifier the device holds (the CPU ranks with a host W: device.LinearRanksOf)", device.ErrNotImplemented)
	}
	if d.fusedOn() {
		return d.fusedCall(ctx, lin, targets, p, func(f *fused) error { return f.ranks(dst, targets, part) })
	}
	return d.linear(ctx, lin, nil, targets, p, func(l *clLinear, pl tiles.Plan) error {
		return tiles.RunRanks(ctx, l, l, pl, dst, targets, part, p)
	})
}

// Ranks implements tiles.Ranker: xent_rank over the tile.
func (l *clLinear) Ranks(dst []ce.Rank, targets []int32, part []ce.Partial, p *ce.Problem) error {
	n := len(l.rows)
	return l.d.rankPass(l.z, ce.Matrix{Rows: n, Cols: l.c, Stride: l.c}, dst, targets, part, p)
}

// holding runs f on the memory of held, a matrix the device holds, under
// d's lock.
func (d *Device) holding(ctx context.Context, held ce.Matrix, f func(m cl.Mem) error) error {
	if err := d.begin(ctx); err != nil {
		return err
	}
	defer d.mu.Unlock()
	m, err := d.resident(held)
	if err != nil {
		return err
	}
	return f(m)
}

// pass runs kernel k over groups work-groups of the program's size (d's
// lock held): its arguments those that args gives (having written what
// they refer to into b), then a buffer of each of ins and of outs
// ([]int32 or []float32 each, the same length), the ins written before
// and the outs read back after. Nothing runs when the outs are empty.
func (d *Device) pass(k cl.Kernel, groups int, args func(b *buffers) ([]any, error), ins, outs []any) (err error) {
	n := len(anyBytes(outs[0]))
	if n == 0 {
		return nil
	}
	if int64(n) > d.maxAlloc {
		return fmt.Errorf("%w: %d bytes of results exceed one allocation of %d bytes", ErrTooLarge, n, d.maxAlloc)
	}
	var b buffers
	defer func() {
		if rerr := b.release(); err == nil && rerr != nil {
			err = d.wrap(rerr)
		}
	}()
	a, err := args(&b)
	ms := make([]cl.Mem, len(ins)+len(outs))
	for i, v := range append(ins, outs...) {
		if err == nil {
			ms[i], err = b.mem(d.p.ctx, len(anyBytes(v)))
		}
		if err == nil && i < len(ins) {
			_, err = b.ev(cl.Write(d.q, ms[i], false, 0, anyBytes(v), nil))
		}
		a = append(a, ms[i])
	}
	if err != nil {
		return d.wrap(err)
	}
	d.p.kernelMu.Lock()
	err = k.SetArgs(a...)
	if err == nil {
		_, err = b.ev(d.q.NDRange(k, groups, d.p.tn.WG, nil))
	}
	d.p.kernelMu.Unlock()
	for i, v := range outs {
		if err == nil {
			_, err = b.ev(cl.Read(d.q, ms[len(ins)+i], true, 0, anyBytes(v), nil))
		}
	}
	if err != nil {
		return d.wrap(err)
	}
	return nil
}

// anyBytes returns the bytes of an []int32 or []float32.
func anyBytes(v any) []byte {
	switch s := v.(type) {
	case []int32:
		return bytesOf(s)
	case []float32:
		return bytesOf(s)
	}
	panic(fmt.Sprintf("opencl: anyBytes of %T", v))
}
