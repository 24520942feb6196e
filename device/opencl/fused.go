package opencl

import (
	"context"
	"errors"
	"fmt"

	"github.com/xentlab/xent/ce"
	"github.com/xentlab/xent/device"
	"github.com/xentlab/xent/device/opencl/internal/cl"
	"github.com/xentlab/xent/kernels"
)

// The fused linear cross-entropy in kernels of its own (linear.cl: the
// products, the online softmax and the gradients' products in one kernel
// a pass, the logits never in global memory), the path a device takes
// when its tuning names a tile (Tuning.LinTile > 0, XENT_OPENCL_LIN_TILE);
// CLBlast's (linear.go) otherwise. It is
// opt-in: no GPU has timed it yet (bench/gpu/run.sh's linear stage does).
// A call uploads H, W (unless resident), the bias and the targets once,
// enqueues every kernel on the device's one in-order queue, the splits'
// partials merged for the backward on the device (xent_lin_merge), and
// waits once, at the end; the host then merges the partials for the
// losses (ce.Partial.Merge, in float64) and adds dH where asked.

// linK is linear.cl's LK, the step of its products over D.
const linK = 8

// linProgram is linear.cl's program on one device, built on first use.
type linProgram struct {
	prog cl.Program
	k    [3][4]cl.Kernel // by element type: xent_lin_partial, xent_lin_dh, xent_lin_dw, xent_lin_rank
	sum  cl.Kernel       // xent_lin_sum
	mrg  cl.Kernel       // xent_lin_merge
	wg   int             // the work-group size, (LinTile/LinReg)²
}

func (lp *linProgram) release() {
	ks := []cl.Kernel{lp.sum, lp.mrg}
	for _, t := range lp.k {
		ks = append(ks, t[:]...)
	}
	releaseProgram(lp.prog, ks)
}

// linearProgram returns p's linear.cl program for h, building it on first
// use with linearOptions of p's tuning.
func (p *program) linearProgram(h handle) (*linProgram, error) {
	p.linMu.Lock()
	defer p.linMu.Unlock()
	if p.lin != nil {
		return p.lin, nil
	}
	lt, lr := p.tn.LinTile, p.tn.linReg()
	opts := linearOptions(p.tn, h)
	prog, err := cl.BuildProgram(p.ctx, h.dev, kernels.LinearSource, opts)
	if err != nil {
		return nil, err
	}
	logBuild(h, prog, opts)
	lp := &linProgram{prog: prog, wg: (lt / lr) * (lt / lr)}
	ks := []*cl.Kernel{&lp.sum, &lp.mrg} // any work-group size
	names := []string{"xent_lin_sum", "xent_lin_merge"}
	for t, suf := range kernels.Types {
		for k, n := range []string{"xent_lin_partial_", "xent_lin_dh_", "xent_lin_dw_", "xent_lin_rank_"} {
			ks, names = append(ks, &lp.k[t][k]), append(names, n+suf)
		}
	}
	sizes, err := createKernels(prog, h.dev, ks, names)
	if err != nil {
		lp.release()
		return nil, err
	}
	for i, n := range sizes {
		if i >= 2 && n < lp.wg { // xent_lin_sum and xent_lin_merge take any size
			lp.release()
			return nil, fmt.Errorf("%w: %s runs work-groups of at most %d on %s, its tile of %d (%d×%d a work-item) needs %d (a smaller lin_tile, or lin_reg 8)", device.ErrNotAvailable, names[i], n, h.name, lt, lr, lr, lp.wg)
		}
	}
	p.lin = lp
	return lp, nil
}

// fusedOn reports whether the fused linear runs on linear.cl's kernels.
func (d *Device) fusedOn() bool { return d.p.tn.LinTile > 0 }

// fused is one call of linear.cl's kernels; the device's lock is held
// while it lives.
type fused struct {
	d          *Device
	lp         *linProgram
	b          buffers
	lin        *ce.Linear
	typ        ce.DType
	N, V, D    int
	lt         int
	h, w, bias cl.Mem
	tg, wts    cl.Mem
	hasb       int32
	pa         probArg
	budget     int64
	// after is what the host does once the call's queue is finished:
	// the partials merged and the rows finished, dH added to the host's.
	after []func()
}

// newFused uploads lin's H, W (unless resident), bias and targets. H and W
// are read in their type when it is the same, else both as float32: host
// rows widened on the host, a held W on the device (4·V·D bytes more for
// the call).
func (d *Device) newFused(lin *ce.Linear, targets []int32, p *ce.Problem) (*fused, error) {
	if lin.H.Buf != nil {
		return nil, fmt.Errorf("opencl: %w: the hidden states of a fused linear are host rows", device.ErrNotImplemented)
	}
	wRes, err := d.resident(lin.W)
	if err != nil {
		return nil, err
	}
	wt := lin.W.Type // a held W's own type
	if lin.H.Type != lin.W.Type {
		lin = widenedLinear(lin) // the host's; a held half W is widened on the device below
		if wRes != 0 {
			w := *lin
			w.W.Type = ce.F32
			lin = &w
		}
	}
	lp, err := d.p.linearProgram(d.h)
	if err != nil {
		return nil, d.wrap(err)
	}
	N, V, D := lin.H.Rows, lin.W.Rows, lin.H.Cols
	es := lin.W.Type.Size()
	if int64(V)*int64(D)*int64(es) > d.maxAlloc || int64(N)*int64(D)*4 > d.maxAlloc {
		return nil, fmt.Errorf("%w: W (%d × %d) or H (%d × %d) exceeds one allocation of %d bytes", ErrTooLarge, V, D, N, D, d.maxAlloc)
	}
	budget := int64(lin.Budget)
	if budget <= 0 {
		budget = ce.DefaultBudget
	}
	f := &fused{d: d, lp: lp, lin: lin, typ: lin.W.Type, N: N, V: V, D: D, lt: d.p.tn.LinTile, w: wRes, budget: budget}
	f.pa = probOf(&call{x: ce.Matrix{Rows: N, Cols: V}, p: p})
	f.pa.Rows = int32(N)
	f.h = f.mk(&err, es*N*D)
	if wRes == 0 {
		f.w = f.mk(&err, es*V*D)
	}
	f.bias, f.tg = f.mk(&err, 4*V), f.mk(&err, 4*N)
	f.wts = f.mk(&err, 4*max(p.Classes(V), 1))
	if err == nil {
		err = f.writeRows(f.h, lin.H)
	}
	if err == nil && wRes == 0 {
		err = f.writeRows(f.w, lin.W)
	}
	if err == nil && wRes != 0 {
		f.w, err = d.heldWide(&f.b, wRes, wt, f.typ, V*D)
	}
	if err == nil && lin.Bias != nil {
		f.hasb = 1
		err = f.write(f.bias, lin.Bias)
	}
	if err == nil {
		_, err = f.b.ev(cl.Write(d.q, f.tg, false, 0, targets, nil))
	}
	if err == nil && p.Weights != nil {
		err = f.write(f.wts, p.Weights)
	}
	if err != nil {
		f.b.release()
		return nil, d.wrap(err)
	}
	return f, nil
}

// mk makes a device buffer of the call, joining a failure into *err.
func (f *fused) mk(err *error, bytes int) cl.Mem {
	m, e := f.b.mem(f.d.p.ctx, bytes)
	*err = errors.Join(*err, e)
	return m
}

// write enqueues a write of v into m (pinned until the call ends).
func (f *fused) write(m cl.Mem, v []float32) error {
	_, err := f.b.ev(cl.Write(f.d.q, m, false, 0, v, nil))
	return err
}

// writeRows writes a host matrix of any element type densely into m.
func (f *fused) writeRows(m cl.Mem, x ce.Matrix) error { return f.b.writeRows(f.d.q, m, x) }

// writeRows enqueues on q a write of a host matrix of any element type,
// densely, into m (pinned until b's events are released).
func (b *buffers) writeRows(q cl.Queue, m cl.Mem, x ce.Matrix) error {
	if x.Rows == 0 {
		return nil
	}
	es := x.Type.Size()
	r := cl.Rect{Pitch: es * x.Cols, HostPitch: es * x.Stride, RowBytes: es * x.Cols, Rows: x.Rows}
	n := (x.Rows-1)*x.Stride + x.Cols
	var err error
	if x.Type == ce.F32 {
		_, err = b.ev(cl.WriteRect(q, m, false, r, x.Data[:n], nil))
	} else {
		_, err = b.ev(cl.WriteRect(q, m, false, r, x.Half[:n], nil))
	}
	return err
}

// splits returns how many splits S of W's classes a row-block kernel
// runs and the classes of each, VS (a multiple of the tile; every split
// has classes): enough work-groups for four a compute unit, at most one
// split a tile of classes, and with scratch > 0 (the bytes of a split's
// output) no more than the call's budget holds (at least one).
func (f *fused) splits(scratch int64) (S, VS int) {
	return splitsOf(f.N, f.V, f.lt, f.d.units, f.budget, scratch)
}

// splitsOf is fused.splits for N rows, V classes, tiles of lt, units
// compute units and the call's budget.
func splitsOf(N, V, lt, units int, budget, scratch int64) (S, VS int) {
	nb, nct := ceilDiv(N, lt), ceilDiv(V, lt)
	S = min(max(ceilDiv(4*units, nb), 1), nct)
	if scratch > 0 {
		S = max(1, min(S, int(budget/scratch)))
	}
	VS = ceilDiv(nct, S) * lt
	return ceilDiv(V, VS), VS
}

// LinearBytes returns the device memory a fused linear forward +
// backward of N rows, V classes and D features of type t takes on
// linear.cl's kernels (H, W, the gradients, the splits' partials and dH
// slices, the rows' inputs), budget its ce.Linear.Budget; ok is false
// when the device runs CLBlast's path.
func (d *Device) LinearBytes(N, V, D int, t ce.DType, budget int) (n int64, ok bool) {
	lt := d.p.tn.LinTile
	if lt == 0 {
		return 0, false
	}
	if budget <= 0 {
		budget = ce.DefaultBudget
	}
	n64, v64, d64, es := int64(N), int64(V), int64(D), int64(t.Size())
	sp, _ := splitsOf(N, V, lt, d.units, int64(budget), 0)
	sh, _ := splitsOf(N, V, lt, d.units, int64(budget), 4*n64*d64)
	n = es*(n64+v64)*d64 + 4*(2*v64+n64) // H, W, bias, weights, targets
	n += 8 * 4 * int64(sp) * n64         // the partials
	n += 6*4*n64 + 4*int64(sh)*n64*d64   // the rows' inputs, dH's slices
	if sh > 1 {
		n += 4 * n64 * d64
	}
	return n + 4*v64*d64 + 4*v64, true // dW, db
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// launch sets k's arguments and enqueues groups work-groups of it.
func (f *fused) launch(k cl.Kernel, groups int, args ...any) error {
	d := f.d
	d.p.kernelMu.Lock()
	defer d.p.kernelMu.Unlock()
	if err := k.SetArgs(args...); err != nil {
		return err
	}
	ev, err := f.b.ev(d.q.NDRange(k, groups, f.lp.wg, nil))
	if err == nil {
		f.b.kernels = append(f.b.kernels, ev)
		err = d.q.Flush()
	}
	return err
}

// head returns the kernels' first arguments: H, W, the bias, N and D.
func (f *fused) head() []any {
	return []any{f.h, uint64(f.D), f.w, uint64(f.D), f.bias, f.hasb, int32(f.N), int32(f.D)}
}

// partials enqueues xent_lin_partial and the reads of its outputs, and
// returns the outputs' buffers and the splits S: once the queue is
// finished, each counted row's partial over W's classes is in dst (the
// splits merged in order, f.after).
func (f *fused) partials(dst []ce.Partial, targets []int32) (outs []cl.Mem, S int, err error) {
	S, VS := f.splits(0)
	n := S * f.N
	outs = make([]cl.Mem, 8)
	for k := range outs {
		outs[k] = f.mk(&err, 4*n)
	}
	if err != nil {
		return nil, 0, err
	}
	args := append(f.head(), int32(VS), cl.ValueOf(&f.pa), f.tg, f.wts)
	for _, m := range outs {
		args = append(args, m)
	}
	if err := f.launch(f.lp.k[f.typ][0], ceilDiv(f.N, f.lt)*S, args...); err != nil {
		return nil, 0, err
	}
	po := newPartialOuts(n)
	for k, v := range po.slices() {
		if err == nil {
			err = f.b.read(f.d.q, outs[k], v, nil)
		}
	}
	f.after = append(f.after, func() {
		tmp := make([]ce.Partial, f.N)
		for s := range S {
			po.rows(s*f.N, (s+1)*f.N).to(tmp, targets)
			for i, t := range targets {
				if t >= 0 {
					dst[i].Merge(tmp[i])
				}
			}
		}
	})
	return outs, S, err
}

// ranks enqueues xent_lin_rank over the rows whose merged partials are
// part and the reads of its outputs: once the queue is finished, each
// counted row's rank over W's classes is in dst (the splits added in
// order, f.after; rows of a NaN sum as rankPass's).
func (f *fused) ranks(dst []ce.Rank, targets []int32, part []ce.Partial) error {
	N := f.N
	S, VS := f.splits(0)
	tg, gm, gzt := rankIns(targets[:N], part[:N])
	var err error
	tgm, gmm, gztm := f.mk(&err, 4*N), f.mk(&err, 4*N), f.mk(&err, 4*N)
	pn, pe := f.mk(&err, 4*S*N), f.mk(&err, 4*S*N)
	if err == nil {
		_, err = f.b.ev(cl.Write(f.d.q, tgm, false, 0, tg, nil))
	}
	if err == nil {
		err = errors.Join(f.write(gmm, gm), f.write(gztm, gzt))
	}
	if err != nil {
		return err
	}
	args := append(f.head(), int32(VS), cl.ValueOf(&f.pa), tgm, gmm, gztm, pn, pe)
	if err := f.launch(f.lp.k[f.typ][3], ceilDiv(N, f.lt)*S, args...); err != nil {
		return err
	}
	gr, ge := make([]int32, S*N), make([]float32, S*N)
	if err := errors.Join(f.b.read(f.d.q, pn, gr, nil), f.b.read(f.d.q, pe, ge, nil)); err != nil {
		return err
	}
	f.after = append(f.after, func() { setRanks(dst, targets[:N], tg, gr, ge, S) })
	return nil
}

// pick enqueues xent_lin_gather over the call's H and W (lin_z's products,
// in its order: the partials' logits) at W's rows cols, k a row, and the
// read of z: once the queue is finished, z[e] is row e/k's raw logit at
// cols[e] (0 where that is -1, and in ignored rows).
func (f *fused) pick(z []float32, cols []int32, k int, targets []int32) error {
	d, n := f.d, f.N*k
	tg := pickCols(cols[:n], k, targets)
	var err error
	cm, zm := f.mk(&err, 4*n), f.mk(&err, 4*n)
	if err == nil {
		_, err = f.b.ev(cl.Write(d.q, cm, false, 0, tg, nil))
	}
	if err != nil {
		return err
	}
	k0 := d.p.heldK[f.typ][1]
	d.p.kernelMu.Lock()
	err = k0.SetArgs(f.h, uint64(f.D), f.w, uint64(f.D), f.bias, f.hasb, int32(f.D), int32(k), uint64(n), cm, zm)
	if err == nil {
		_, err = f.b.ev(d.q.NDRange(k0, entryGroups(n, d.p.tn.WG), d.p.tn.WG, nil))
	}
	d.p.kernelMu.Unlock()
	if err != nil {
		return err
	}
	return f.b.read(d.q, zm, z[:n], nil)
}

// pickCols returns cols (k a row) with -1 in the rows targets ignore:
// the pick kernels' columns.
func pickCols(cols []int32, k int, targets []int32) []int32 {
	tg := make([]int32, len(cols))
	for e, c := range cols {
		tg[e] = c
		if targets[e/k] < 0 {
			tg[e] = -1
		}
	}
	return tg
}

// rowIns makes the buffers of the backward's per-row inputs (max, sum,
// log of the sum, z_t), joining a failure into *err.
func (f *fused) rowIns(err *error) (bin [4]cl.Mem) {
	for k := range bin {
		bin[k] = f.mk(err, 4*f.N)
	}
	return bin
}

// merged enqueues xent_lin_merge over the S splits' partials in outs
// (partials' buffers) and returns the backward's per-row inputs on the
// device.
func (f *fused) merged(outs []cl.Mem, S int) ([4]cl.Mem, error) {
	var err error
	bin := f.rowIns(&err)
	if err != nil {
		return bin, err
	}
	d := f.d
	d.p.kernelMu.Lock()
	defer d.p.kernelMu.Unlock()
	// outs: m, s, d, w, r, arg, zt, has (xent_lin_partial's order)
	if err := f.lp.mrg.SetArgs(outs[0], outs[1], outs[6], outs[7], int32(S), int32(f.N), f.tg, bin[0], bin[1], bin[2], bin[3]); err != nil {
		return bin, err
	}
	_, err = f.b.ev(d.q.NDRange(f.lp.mrg, min(ceilDiv(f.N, 256), 4096), 256, nil))
	return bin, err
}

// hostIns writes the backward's per-row inputs from the host's merged
// partials to the device.
func (f *fused) hostIns(part []ce.Partial) ([4]cl.Mem, error) {
	var err error
	bin := f.rowIns(&err)
	for k, v := range backwardIns(part[:f.N]) {
		if err == nil {
			err = f.write(bin[k], v)
		}
	}
	return bin, err
}

// backward computes the gradients g asks for given each row's merged
// partial on the device (bin: max, sum, log of the sum, z_t): dH (set, or
// added with AddH, once the queue is finished) from xent_lin_dh's splits
// summed in order, dW and dBias added to from xent_lin_dw.
func (f *fused) backward(g *ce.LinearGrad, bin [4]cl.Mem) error {
	d, N, V, D := f.d, f.N, f.V, f.D
	var err error
	sc, fex := f.mk(&err, 4*N), f.mk(&err, 4*N)
	fk := 0
	if g.Fix != nil && len(g.Fix.Extra) > 0 {
		fk = g.Fix.K
	}
	fcols, fvals := f.mk(&err, 4*max(N*fk, 1)), f.mk(&err, 4*max(N*fk, 1))
	if err != nil {
		return err
	}
	if g.Scale != nil {
		err = f.write(sc, g.Scale[:N])
	} else {
		err = f.write(sc, make([]float32, N))
	}
	if fk > 0 {
		err = errors.Join(err, f.write(fex, g.Fix.Extra[:N]), f.write(fvals, g.Fix.Vals[:N*fk]))
		if err == nil {
			_, err = f.b.ev(cl.Write(d.q, fcols, false, 0, g.Fix.Cols[:N*fk], nil))
		}
	}
	if err != nil {
		return err
	}
	rowArgs := []any{f.tg, f.wts, sc, bin[0], bin[1], bin[2], bin[3], int32(fk), fex, fcols, fvals, f.lin.Filter}
	if g.H.Data != nil {
		if err := f.dH(g, rowArgs); err != nil {
			return err
		}
	}
	dwRes, err := d.resident(g.W)
	if err != nil {
		return err
	}
	hasdw := dwRes != 0 || g.W.Data != nil
	if !hasdw && g.Bias == nil {
		return nil
	}
	dw, db := dwRes, cl.Mem(0)
	switch {
	case dwRes != 0:
	case hasdw:
		dw = f.mk(&err, 4*V*D)
		if err == nil {
			err = f.writeRows(dw, g.W)
		}
	default:
		dw = f.mk(&err, 4) // not written: hasdw is 0
	}
	db = f.mk(&err, 4*V)
	if err == nil && g.Bias != nil {
		err = f.write(db, g.Bias)
	}
	if err != nil {
		return err
	}
	args := append(f.head(), cl.ValueOf(&f.pa))
	args = append(append(args, rowArgs...), dw, uint64(D), boolInt(hasdw), db, boolInt(g.Bias != nil))
	if err := f.launch(f.lp.k[f.typ][2], ceilDiv(V, f.lt), args...); err != nil {
		return err
	}
	if hasdw && dwRes == 0 {
		r := cl.Rect{Pitch: 4 * D, HostPitch: 4 * g.W.Stride, RowBytes: 4 * D, Rows: V}
		if _, err := f.b.ev(cl.ReadRect(d.q, dw, false, r, g.W.Data[:(V-1)*g.W.Stride+D], nil)); err != nil {
			return err
		}
	}
	if g.Bias != nil {
		if _, err := f.b.ev(cl.Read(d.q, db, false, 0, g.Bias[:V], nil)); err != nil {
			return err
		}
	}
	return nil
}

// dH runs xent_lin_dh and sets (or adds) the host dH.
func (f *fused) dH(g *ce.LinearGrad, rowArgs []any) error {
	d, N, D := f.d, f.N, f.D
	S, VS := f.splits(4 * int64(N) * int64(D))
	var err error
	slices := f.mk(&err, 4*S*N*D)
	dh := slices
	if S > 1 {
		dh = f.mk(&err, 4*N*D)
	}
	if err != nil {
		return err
	}
	args := append(f.head(), int32(VS), cl.ValueOf(&f.pa))
	args = append(append(args, rowArgs...), slices)
	if err := f.launch(f.lp.k[f.typ][1], ceilDiv(N, f.lt)*S, args...); err != nil {
		return err
	}
	if S > 1 {
		d.p.kernelMu.Lock()
		err = f.lp.sum.SetArgs(slices, int32(S), uint64(N*D), dh)
		if err == nil {
			_, err = f.b.ev(d.q.NDRange(f.lp.sum, min(ceilDiv(N*D, 256), 4096), 256, nil))
		}
		d.p.kernelMu.Unlock()
		if err != nil {
			return err
		}
	}
	buf := make([]float32, N*D)
	if _, err := f.b.ev(cl.Read(d.q, dh, false, 0, buf, nil)); err != nil {
		return err
	}
	f.after = append(f.after, func() {
		H := g.H
		for i := range N {
			dst, src := H.Data[i*H.Stride:i*H.Stride+D], buf[i*D:(i+1)*D]
			if !g.AddH {
				copy(dst, src)
				continue
			}
			for k := range dst {
				dst[k] += src[k]
			}
		}
	})
	return nil
}

func boolInt(b bool) int32 {
	if b {
		return 1
	}
	return 0
}

// fusedCall runs fn on a fused call of lin under the device's lock,
// waits for the queue and releases the call's buffers.
func (d *Device) fusedCall(ctx context.Context, lin *ce.Linear, targets []int32, p *ce.Problem, fn func(*fused) error) (err error) {
	if err := d.begin(ctx); err != nil {
		return err
	}
	defer d.mu.Unlock()
	if lin.H.Rows == 0 || lin.W.Rows == 0 { // nothing to launch (a launch of no work-groups is an error)
		return nil
	}
	f, err := d.newFused(lin, targets, p)
	if err != nil {
		return err
	}
	defer func() {
		if rerr := f.b.release(); err == nil && rerr != nil {
			err = d.wrap(rerr)
		}
	}()
	if err := fn(f); err != nil {
		return d.wrap(err)
	}
	if err := d.q.Finish(); err != nil {
		return d.wrap(err)
	}
	d.lastKernel = f.b.kernelTime()
	for _, a := range f.after {
		a()
	}
	return nil
}

// fusedCrossEntropy is LinearCrossEntropy on linear.cl's kernels: the
// partials, merged on the device for the gradients, then (after the one
// wait, at the end) on the host for each row's loss.
func (d *Device) fusedCrossEntropy(ctx context.Context, out ce.Out, g *ce.LinearGrad, lin *ce.Linear, targets []int32, p *ce.Problem) error {
	return d.fusedCall(ctx, lin, targets, p, func(f *fused) error {
		part := ce.EmptyPartials(f.N)
		outs, S, err := f.partials(part, targets)
		if err != nil {
			return err
		}
		C := p.Classes(f.V)
		f.after = append(f.after, func() {
			for i, t := range targets[:f.N] {
				if t < 0 {
					out.Set(i, 0, 0, false)
					continue
				}
				loss, lse, correct := p.Finish(&part[i], int(t), C)
				out.Set(i, loss, lse, correct)
			}
		})
		if g == nil {
			return nil
		}
		g.ClearIgnored(targets)
		bin, err := f.merged(outs, S)
		if err != nil {
			return err
		}
		return f.backward(g, bin)
	})
}
