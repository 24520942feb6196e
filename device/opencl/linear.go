package opencl

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/xentlab/xent/ce"
	"github.com/xentlab/xent/cpu"
	"github.com/xentlab/xent/device"
	"github.com/xentlab/xent/device/opencl/internal/cl"
	"github.com/xentlab/xent/internal/tiles"
)

// The fused linear cross-entropy on OpenCL (device.FusedLinear): the loop
// of package internal/tiles over a tile of logits in a device buffer, the
// matrix products from CLBlast and xent.cl's row kernels on the tile, all
// on the device's one in-order queue, under the device's lock for the
// whole call. The call's buffers are made once (H's chunk, W, the bias,
// the gradients, the tile and the row kernels' inputs and outputs); the
// host waits for the device only where the loop needs a value (a tiled
// vocabulary's partials, the gradient filter's block maxima), and at the
// end.

// linearAvailable returns nil when CLBlast loads, else the error (wrapping
// device.ErrNotAvailable) of the linear operations.
func linearAvailable() error {
	if name, err := cl.LoadCLBlast(); err != nil {
		return fmt.Errorf("opencl: %w: the fused linear cross-entropy needs CLBlast (%s; Debian libclblast1, or XENT_CLBLAST_LIB): %v", device.ErrNotAvailable, name, err)
	}
	return nil
}

// blastSets is, by OpenCL device, the CLBlast Xgemm parameters set there
// (Tuning.Xgemm as XgemmString; absent or "none": CLBlast's database).
// CLBlast's parameters are process-wide by OpenCL device: the last Device
// opened there with its fused linear on CLBlast decides them for all.
var (
	blastMu   sync.Mutex
	blastSets = map[cl.Device]string{}
)

// useXgemm sets CLBlast's Xgemm parameters on d's OpenCL device to tn's
// (CLBlast's own for none, emptying its caches where another set was
// there), where CLBlast loads and tn takes its path (LinTile 0).
func (d *Device) useXgemm(tn Tuning) error {
	if tn.LinTile > 0 {
		return nil
	}
	key := XgemmString(tn.Xgemm)
	blastMu.Lock()
	defer blastMu.Unlock()
	cur, ok := blastSets[d.h.dev]
	if !ok {
		cur = "none"
	}
	if cur == key || linearAvailable() != nil { // set already, or no CLBlast to set
		return nil
	}
	if len(tn.Xgemm) > 0 {
		lm, err1 := d.h.dev.Uint(cl.DeviceLocalMemSize)
		mw, err2 := d.h.dev.Uint(cl.DeviceMaxWorkGroupSize)
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		if b, wg := xgemmLocal(tn.Xgemm); uint64(b) > lm || uint64(wg) > mw {
			return fmt.Errorf("%w: CLBlast's Xgemm parameters %s need %d bytes of local memory and work-groups of %d (MDIMC·NDIMC); the device has %d bytes and work-groups of at most %d", device.ErrNotAvailable, key, b, wg, lm, mw)
		}
	}
	var err error
	if len(tn.Xgemm) == 0 {
		err = cl.BlastClearCache() // back to CLBlast's database
	} else {
		err = cl.BlastOverride(d.h.dev, "Xgemm", tn.Xgemm)
	}
	if err != nil {
		return fmt.Errorf("CLBlast's Xgemm parameters %s: %w", key, err)
	}
	blastSets[d.h.dev] = key
	return nil
}

// xgemm returns the CLBlast Xgemm parameters set on d's OpenCL device,
// as XgemmString writes them ("none": CLBlast's database).
func (d *Device) xgemm() string {
	blastMu.Lock()
	defer blastMu.Unlock()
	if k, ok := blastSets[d.h.dev]; ok {
		return k
	}
	return "none"
}

// clLinear is the OpenCL device's tiles.Backend for one call; the
// device's lock is held while it lives.
type clLinear struct {
	d   *Device
	lin *ce.Linear
	g   *ce.LinearGrad
	pl  tiles.Plan
	D   int

	b                        buffers
	h, w, bias, ones, dh, dw cl.Mem
	db                       cl.Mem
	z                        cl.Mem // the tile (R × C, dense at its width)
	rows                     []int  // the chunk's rows
	c                        int
	dwResident               bool   // dw is the caller's buffer: nothing to read back
	inv, bmax                cl.Mem // the gradient filter's row factors and block maxima

	// The row kernels' buffers: targets, class weights, row scale, the
	// forward's outputs (loss, lse, correct), the partials' and the
	// backward's inputs and its fix's (ce.Fix); and which host slices tg,
	// sc, bin and the fix's hold.
	tg, wts, sc       cl.Mem
	outs              [3]cl.Mem
	pouts             [8]cl.Mem
	bin               [4]cl.Mem
	fex, fcols, fvals cl.Mem
	tgOf              *int32
	scOfF, fixOf      *float32
	partOf            *ce.Partial

	// The pick's buffers (Tuning.Pick, pickOn): each row's classes and
	// logits (N × k), the chunk's rows of H; pickOf is the chunk whose
	// rows rix holds.
	pcols, pz, rix cl.Mem
	pickOf         *int

	hb     [2][]float32 // H's chunk gathered on the host, double-buffered
	hev    [2]cl.Event  // their writes
	nchunk int
	dhs    []dhRead // dH reads in flight
	zeros  []float32
}

// dhRead is a chunk's dH on its way to the host.
type dhRead struct {
	rows []int
	buf  []float32
	ev   cl.Event
}

// resident returns the device memory of m when it is one of d's buffers
// (d's lock held, so that Release cannot run meanwhile), 0 for host rows.
func (d *Device) resident(m ce.Matrix) (cl.Mem, error) {
	if m.Buf == nil {
		return 0, nil
	}
	b, ok := m.Buf.(*Buffer)
	if !ok || b.d != d {
		return 0, fmt.Errorf("opencl: %s: %w (of %s)", d.h.name, device.ErrForeign, device.SpecOf(m.Buf))
	}
	if b.mem == 0 {
		return 0, fmt.Errorf("opencl: %w", device.ErrReleased)
	}
	return b.mem, nil
}

// newCLLinear makes the call's buffers and uploads W (and the bias, dW
// and dBias to add to); a held W of a half type is widened on the device
// for the call.
func (d *Device) newCLLinear(lin *ce.Linear, g *ce.LinearGrad, pl tiles.Plan, p *ce.Problem) (*clLinear, error) {
	if lin.H.Buf != nil {
		return nil, fmt.Errorf("opencl: %w: the hidden states of a fused linear are host rows", device.ErrNotImplemented)
	}
	wRes, err := d.resident(lin.W)
	if err != nil {
		return nil, err
	}
	var dwRes cl.Mem
	if g != nil {
		if dwRes, err = d.resident(g.W); err != nil {
			return nil, err
		}
	}
	V, D := lin.W.Rows, lin.H.Cols
	if int64(V)*int64(D)*4 > d.maxAlloc || int64(pl.R)*int64(pl.C)*4 > d.maxAlloc {
		return nil, fmt.Errorf("%w: W (%d × %d) or the tile (%d × %d) exceeds one allocation of %d bytes", ErrTooLarge, V, D, pl.R, pl.C, d.maxAlloc)
	}
	l := &clLinear{d: d, lin: lin, g: g, pl: pl, D: D, dwResident: dwRes != 0}
	mk := func(bytes int) cl.Mem {
		m, e := l.b.mem(d.p.ctx, bytes)
		err = errors.Join(err, e)
		return m
	}
	R := pl.R
	l.h, l.ones, l.w = mk(4*R*D), mk(4*R), wRes
	if wRes == 0 {
		l.w = mk(4 * V * D)
	}
	l.z = mk(4 * R * pl.C)
	if lin.Bias != nil {
		l.bias = mk(4 * V)
	}
	l.tg, l.wts, l.sc = mk(4*R), mk(4*max(p.Classes(V), 1)), mk(4*R)
	l.outs = [3]cl.Mem{mk(4 * R), mk(4 * R), mk(R)}
	for k := range l.pouts {
		l.pouts[k] = mk(4 * R)
	}
	for k := range l.bin {
		l.bin[k] = mk(4 * R)
	}
	fk := 1
	if g != nil && g.Fix != nil {
		fk = max(g.Fix.K, 1)
	}
	l.fex, l.fcols, l.fvals = mk(4*R), mk(4*R*fk), mk(4*R*fk)
	if g != nil {
		if g.H.Data != nil {
			l.dh = mk(4 * R * D)
		}
		switch {
		case dwRes != 0:
			l.dw = dwRes
		case g.W.Data != nil:
			l.dw = mk(4 * V * D)
		}
		if g.Bias != nil {
			l.db = mk(4 * V)
		}
	}
	if err != nil {
		l.release()
		return nil, d.wrap(err)
	}
	ones := make([]float32, R)
	for k := range ones {
		ones[k] = 1
	}
	err = l.write(l.ones, ones)
	if p.Weights != nil {
		err = errors.Join(err, l.write(l.wts, p.Weights))
	}
	if wRes == 0 {
		err = errors.Join(err, l.writeRows(l.w, lin.W))
	} else if err == nil { // CLBlast's products are float32: a half W widened on the device
		l.w, err = d.heldWide(&l.b, wRes, lin.W.Buf.Type(), ce.F32, V*D)
	}
	if lin.Bias != nil {
		err = errors.Join(err, l.write(l.bias, lin.Bias))
	}
	if l.dw != 0 && dwRes == 0 {
		err = errors.Join(err, l.writeRows(l.dw, g.W))
	}
	if l.db != 0 {
		err = errors.Join(err, l.write(l.db, g.Bias))
	}
	if err != nil {
		l.release()
		return nil, d.wrap(err)
	}
	return l, nil
}

// write enqueues a write of v into m; v stays pinned until the call ends.
func (l *clLinear) write(m cl.Mem, v []float32) error {
	_, err := l.b.ev(cl.Write(l.d.q, m, false, 0, v, nil))
	return err
}

// writeRows writes a host matrix densely into m.
func (l *clLinear) writeRows(m cl.Mem, x ce.Matrix) error {
	return l.rowsIO(m, x, cl.WriteRect[float32])
}

// readRows reads m (dense) into a host matrix.
func (l *clLinear) readRows(m cl.Mem, x ce.Matrix) error {
	return l.rowsIO(m, x, cl.ReadRect[float32])
}

func (l *clLinear) rowsIO(m cl.Mem, x ce.Matrix, io func(cl.Queue, cl.Mem, bool, cl.Rect, []float32, []cl.Event) (cl.Event, error)) error {
	if x.Rows == 0 {
		return nil
	}
	r := cl.Rect{Pitch: 4 * x.Cols, HostPitch: 4 * x.Stride, RowBytes: 4 * x.Cols, Rows: x.Rows}
	_, err := l.b.ev(io(l.d.q, m, true, r, x.Data[:(x.Rows-1)*x.Stride+x.Cols], nil))
	return err
}

func (l *clLinear) release() error { return l.b.release() }

// Chunk implements tiles.Backend: the chunk's H rows are written to the
// device after the previous chunk's products (the queue is in order), in
// place when they are consecutive, else gathered on the host into one of
// two buffers (the host waits for the write two chunks back before it
// reuses one); the previous chunk's dH is read back.
func (l *clLinear) Chunk(rows []int) error {
	if err := l.readDH(); err != nil {
		return err
	}
	l.rows = rows
	l.partOf = nil // the driver reuses its partials' array for each chunk
	H := l.lin.H
	if tiles.Consecutive(rows) {
		x := H.RowRange(rows[0], rows[0]+len(rows))
		r := cl.Rect{Pitch: 4 * l.D, HostPitch: 4 * x.Stride, RowBytes: 4 * l.D, Rows: x.Rows}
		_, err := l.b.ev(cl.WriteRect(l.d.q, l.h, false, r, x.Data[:(x.Rows-1)*x.Stride+l.D], nil))
		return err
	}
	k := l.nchunk % 2
	l.nchunk++
	if l.hev[k] != 0 {
		if err := cl.Wait(l.hev[k]); err != nil {
			return err
		}
	}
	if l.hb[k] == nil {
		l.hb[k] = make([]float32, l.pl.R*l.D)
	}
	hb := l.hb[k]
	for k, i := range rows {
		copy(hb[k*l.D:(k+1)*l.D], H.Data[i*H.Stride:i*H.Stride+l.D])
	}
	var err error
	l.hev[k], err = l.b.ev(cl.Write(l.d.q, l.h, false, 0, hb[:len(rows)*l.D], nil))
	return err
}

// readDH enqueues the read of the chunk's dH (its products done: the
// queue is in order), to be added or copied into the caller's at Sync.
func (l *clLinear) readDH() error {
	if l.dh == 0 || l.rows == nil {
		return nil
	}
	r := dhRead{rows: l.rows, buf: make([]float32, len(l.rows)*l.D)}
	var err error
	r.ev, err = l.b.ev(cl.Read(l.d.q, l.dh, false, 0, r.buf, nil))
	l.dhs = append(l.dhs, r)
	return err
}

// Sync implements tiles.Backend: it waits for the queue and sets (or,
// with AddH, adds) the chunks' dH rows read back.
func (l *clLinear) Sync() error {
	if err := l.readDH(); err != nil {
		return err
	}
	l.rows = nil
	if err := l.d.q.Finish(); err != nil {
		return err
	}
	for _, r := range l.dhs {
		H := l.g.H
		for k, i := range r.rows {
			dst, src := H.Data[i*H.Stride:i*H.Stride+l.D], r.buf[k*l.D:(k+1)*l.D]
			if !l.g.AddH {
				copy(dst, src)
				continue
			}
			for d := range dst {
				dst[d] += src[d]
			}
		}
	}
	l.dhs = nil
	return nil
}

// Logits implements tiles.Backend.
func (l *clLinear) Logits(v0, v1 int) error {
	n, q := len(l.rows), l.d.q
	l.c = v1 - v0
	err := q.Sgemm(false, true, n, l.c, l.D, 1, l.h, 0, l.D, l.w, v0*l.D, l.D, 0, l.z, 0, l.c)
	if err == nil && l.bias != 0 { // z += 1·bᵀ
		err = q.Sgemm(false, false, n, l.c, 1, 1, l.ones, 0, 1, l.bias, v0, l.c, 1, l.z, 0, l.c)
	}
	return err
}

// inputs writes the targets and the scale of the chunk, unless the
// buffers hold them already (the driver's slices are the call's own).
func (l *clLinear) inputs(targets []int32, scale []float32) error {
	if len(targets) == 0 {
		return nil
	}
	if &targets[0] != l.tgOf {
		if _, err := l.b.ev(cl.Write(l.d.q, l.tg, false, 0, targets, nil)); err != nil {
			return err
		}
		l.tgOf = &targets[0]
	}
	if len(scale) > 0 && &scale[0] != l.scOfF {
		if err := l.write(l.sc, scale); err != nil {
			return err
		}
		l.scOfF = &scale[0]
	}
	return nil
}

// kernel launches op on the tile with args after the logits and the
// descriptor.
func (l *clLinear) kernel(op op, p *ce.Problem, grad bool, args ...any) error {
	c := &call{op: op, x: ce.Matrix{Rows: len(l.rows), Cols: l.c, Stride: l.c}, p: p}
	if grad {
		c.grad = &ce.Grad{}
	}
	_, err := l.d.launch(&l.b, &rowBufs{args: args}, c, l.z, 0, len(l.rows), nil)
	return err
}

// CrossEntropy implements tiles.Backend: out is read back at Sync.
func (l *clLinear) CrossEntropy(out ce.Out, grad bool, targets []int32, scale []float32, p *ce.Problem) error {
	if err := l.inputs(targets, scale); err != nil {
		return err
	}
	err := l.kernel(opCE, p, grad, l.tg, l.wts, l.sc, l.outs[0], l.outs[1], l.outs[2])
	for k, v := range []any{out.Loss, out.LSE, boolBytes(out.Correct)} {
		if err == nil {
			err = l.b.read(l.d.q, l.outs[k], v, nil)
		}
	}
	return err
}

// Partials implements tiles.Backend: the host waits for them.
func (l *clLinear) Partials(dst []ce.Partial, targets []int32, p *ce.Problem) error {
	if err := l.inputs(targets, nil); err != nil {
		return err
	}
	args := []any{l.tg, l.wts}
	for _, m := range l.pouts {
		args = append(args, m)
	}
	if err := l.kernel(opPartials, p, false, args...); err != nil {
		return err
	}
	po := newPartialOuts(len(l.rows))
	var err error
	for k, v := range po.slices() {
		if err == nil {
			err = l.b.read(l.d.q, l.pouts[k], v, nil)
		}
	}
	if err == nil {
		err = l.d.q.Finish()
	}
	if err == nil {
		po.to(dst, targets)
	}
	return err
}

// Backward implements tiles.Backend; the merged partials are written once
// a chunk (their inputs computed on the host here: part is not kept).
func (l *clLinear) Backward(targets []int32, scale []float32, fix *ce.Fix, part []ce.Partial, p *ce.Problem) error {
	if err := l.inputs(targets, scale); err != nil {
		return err
	}
	fk := int32(0)
	if fix != nil && len(fix.Extra) > 0 {
		fk = int32(fix.K)
		if &fix.Extra[0] != l.fixOf {
			if err := errors.Join(l.write(l.fex, fix.Extra), l.write(l.fvals, fix.Vals)); err != nil {
				return err
			}
			if _, err := l.b.ev(cl.Write(l.d.q, l.fcols, false, 0, fix.Cols, nil)); err != nil {
				return err
			}
			l.fixOf = &fix.Extra[0]
		}
	}
	if len(part) > 0 && &part[0] != l.partOf {
		for k, v := range backwardIns(part) {
			if err := l.write(l.bin[k], v); err != nil {
				return err
			}
		}
		l.partOf = &part[0]
	}
	return l.kernel(opBackward, p, false, l.tg, l.wts, l.sc, l.bin[0], l.bin[1], l.bin[2], l.bin[3], fk, l.fex, l.fcols, l.fvals)
}

// Grads implements tiles.Backend. The chunk's dH accumulates on the
// device over its tiles (from 0 at the first call), and is read back when
// the next chunk comes (set or added at Sync).
func (l *clLinear) Grads(t0, v0, v1 int, first bool) error {
	n, c, k, q := len(l.rows), l.c, v1-v0, l.d.q
	zo := v0 - t0 // the tile's columns [v0, v1) start there, row stride c
	var err error
	if l.dh != 0 {
		beta := float32(1)
		if first {
			beta = 0
		}
		if k == 0 {
			if first {
				if l.zeros == nil {
					l.zeros = make([]float32, l.pl.R*l.D)
				}
				err = l.write(l.dh, l.zeros[:n*l.D])
			}
		} else {
			err = q.Sgemm(false, false, n, l.D, k, 1, l.z, zo, c, l.w, v0*l.D, l.D, beta, l.dh, 0, l.D)
		}
	}
	if k == 0 {
		return err
	}
	if err == nil && l.dw != 0 { // dW[v0:v1] += Gᵀ·H
		err = q.Sgemm(true, false, k, l.D, n, 1, l.z, zo, c, l.h, 0, l.D, 1, l.dw, v0*l.D, l.D)
	}
	if err == nil && l.db != 0 { // db[v0:v1] += Gᵀ·1
		err = q.Sgemm(true, false, k, 1, n, 1, l.z, zo, c, l.ones, 0, 1, 1, l.db, v0, 1)
	}
	return err
}

// pickOn makes the pick's buffers of the call (Tuning.Pick): cols, k a
// row of H (-1 in ignored rows), and the logits picked, 0 until a tile
// sets them.
func (l *clLinear) pickOn(cols []int32, k int, targets []int32) error {
	n := l.lin.H.Rows * k
	tg := pickCols(cols[:n], k, targets)
	var err error
	for _, m := range []*cl.Mem{&l.pcols, &l.pz} {
		if err == nil {
			*m, err = l.b.mem(l.d.p.ctx, 4*n)
		}
	}
	if err == nil {
		l.rix, err = l.b.mem(l.d.p.ctx, 4*l.pl.R)
	}
	if err == nil {
		_, err = l.b.ev(cl.Write(l.d.q, l.pcols, false, 0, tg, nil))
	}
	if err == nil {
		err = l.write(l.pz, make([]float32, n))
	}
	return err
}

// Pick implements tiles.Picker (Tuning.Pick): xent_tile_pick on the tile
// into the call's pz (pickOn), after its products on the queue.
func (l *clLinear) Pick(_ []float32, _ []int32, k, v0, v1 int) error {
	n, d := len(l.rows), l.d
	if n == 0 {
		return nil
	}
	if &l.rows[0] != l.pickOf { // a new chunk: its rows
		rix := make([]int32, n)
		for r, i := range l.rows {
			rix[r] = int32(i)
		}
		if _, err := l.b.ev(cl.Write(d.q, l.rix, false, 0, rix, nil)); err != nil {
			return err
		}
		l.pickOf = &l.rows[0]
	}
	d.p.kernelMu.Lock()
	defer d.p.kernelMu.Unlock()
	err := d.p.pickK.SetArgs(l.z, int32(l.c), int32(n), l.rix, l.pcols, int32(k), int32(v0), int32(v1), l.pz)
	if err == nil {
		_, err = l.b.ev(d.q.NDRange(d.p.pickK, entryGroups(n*k, d.p.tn.WG), d.p.tn.WG, nil))
	}
	return err
}

// BlockMax implements tiles.Backend with xent_blockmax; the host waits
// for it.
func (l *clLinear) BlockMax(dst []float32, inv []float32) error {
	d, n := l.d, len(l.rows)
	if l.inv == 0 {
		var err error
		if l.inv, err = l.b.mem(d.p.ctx, 4*l.pl.R); err == nil {
			l.bmax, err = l.b.mem(d.p.ctx, 4*((l.pl.C+ce.FilterBlock-1)/ce.FilterBlock))
		}
		if err != nil {
			return err
		}
	}
	if err := l.write(l.inv, slices.Clone(inv[:n])); err != nil { // the driver reuses inv
		return err
	}
	d.p.kernelMu.Lock()
	err := d.p.blockK.SetArgs(l.z, int32(n), int32(l.c), int32(ce.FilterBlock), l.inv, l.bmax, int32(len(dst)))
	if err == nil {
		_, err = l.b.ev(d.q.NDRange(d.p.blockK, len(dst), 1, nil))
	}
	d.p.kernelMu.Unlock()
	if err != nil {
		return err
	}
	_, err = l.b.ev(cl.Read(d.q, l.bmax, true, 0, dst, nil))
	return err
}

// finish reads back dW and dBias.
func (l *clLinear) finish() error {
	var err error
	if l.dw != 0 && !l.dwResident {
		err = l.readRows(l.dw, l.g.W)
	}
	if err == nil && l.db != 0 {
		_, err = l.b.ev(cl.Read(l.d.q, l.db, true, 0, l.g.Bias, nil))
	}
	return err
}

// LinearPlan returns the tiles CLBlast's path runs a call of lin in:
// tiles.PlanOf's with gradients (grads), and without them
// tiles.WidePlanOf's where Tuning.Wide asks for them (opt-in: untimed on a
// GPU). Benchmarks size the device memory a call takes from it.
func (d *Device) LinearPlan(lin *ce.Linear, targets []int32, grads bool) tiles.Plan {
	if !grads && d.wide == 1 {
		return tiles.WidePlanOf(lin, targets)
	}
	return tiles.PlanOf(lin, targets)
}

// linear runs f on a backend for lin under the device's lock and
// releases it; with gradients dW and dBias are read back at the end.
func (d *Device) linear(ctx context.Context, lin *ce.Linear, g *ce.LinearGrad, targets []int32, p *ce.Problem, f func(*clLinear, tiles.Plan) error) (err error) {
	if err := linearAvailable(); err != nil {
		return err
	}
	if err := d.begin(ctx); err != nil {
		return err
	}
	defer d.mu.Unlock()
	// CLBlast's products here are float32: half-precision H and W are
	// widened on the host (twice their bytes cross the bus).
	lin = widenedLinear(lin)
	pl := d.LinearPlan(lin, targets, g != nil)
	l, err := d.newCLLinear(lin, g, pl, p)
	if err != nil {
		return err
	}
	defer func() {
		if rerr := l.release(); err == nil && rerr != nil {
			err = d.wrap(rerr)
		}
	}()
	if err := f(l, pl); err != nil {
		return d.wrap(err)
	}
	if g != nil {
		if err := l.finish(); err != nil {
			return d.wrap(err)
		}
	}
	// A resident dW is read on another queue (Download): the products
	// into it are done before the call returns.
	if err := d.q.Finish(); err != nil {
		return d.wrap(err)
	}
	return nil
}

// widenedLinear returns lin with a half-precision host H or W widened to
// float32 copies, lin itself when both are float32.
func widenedLinear(lin *ce.Linear) *ce.Linear {
	if lin.H.Type == ce.F32 && lin.W.Type == ce.F32 {
		return lin
	}
	w := *lin
	for _, m := range []*ce.Matrix{&w.H, &w.W} {
		if m.Buf == nil {
			*m = cpu.Widened(*m)
		}
	}
	return &w
}

// LinearCrossEntropy implements device.FusedLinear.
func (d *Device) LinearCrossEntropy(ctx context.Context, out ce.Out, g *ce.LinearGrad, lin *ce.Linear, targets []int32, p *ce.Problem) error {
	if d.fusedOn() {
		return d.fusedCrossEntropy(ctx, out, g, lin, targets, p)
	}
	var scale []float32
	if g != nil {
		scale = g.Scale
	}
	return d.linear(ctx, lin, g, targets, p, func(l *clLinear, pl tiles.Plan) error {
		for i, t := range targets { // once the inputs are known good
			if t < 0 {
				out.Set(i, 0, 0, false)
			}
		}
		g.ClearIgnored(targets)
		return tiles.Run(ctx, l, pl, out, scale, lin.Filter, targets, p)
	})
}

// LinearPartials implements device.FusedLinear.
func (d *Device) LinearPartials(ctx context.Context, dst []ce.Partial, lin *ce.Linear, targets []int32, p *ce.Problem) error {
	if d.fusedOn() {
		return d.fusedCall(ctx, lin, targets, p, func(f *fused) error {
			_, _, err := f.partials(dst, targets)
			return err
		})
	}
	return d.linear(ctx, lin, nil, targets, p, func(l *clLinear, pl tiles.Plan) error {
		return tiles.RunPartials(ctx, l, pl, dst, targets, p)
	})
}

// LinearPartialsAt implements device.LinearPicker: on linear.cl's kernels
// fused.pick (xent_lin_gather on the call's H and W, the products of
// lin_z in the same order); on CLBlast's path, with Tuning.Pick (opt-in),
// the tiles' own logits (clLinear.Pick), else device.ErrNotImplemented
// (the caller computes them apart).
func (d *Device) LinearPartialsAt(ctx context.Context, dst []ce.Partial, z []float32, cols []int32, k int, lin *ce.Linear, targets []int32, p *ce.Problem) error {
	if !d.fusedOn() {
		if d.pick == 0 {
			return fmt.Errorf("opencl: %w: the logits at chosen classes from CLBlast's tiles (opt-in: Tuning.Pick)", device.ErrNotImplemented)
		}
		return d.linear(ctx, lin, nil, targets, p, func(l *clLinear, pl tiles.Plan) error {
			if err := l.pickOn(cols, k, targets); err != nil {
				return err
			}
			if err := tiles.RunPartialsAt(ctx, l, l, pl, dst, z, cols, k, targets, p); err != nil {
				return err
			}
			return l.b.read(d.q, l.pz, z[:lin.H.Rows*k], nil) // done before linear returns (its Finish)
		})
	}
	clear(z)
	return d.fusedCall(ctx, lin, targets, p, func(f *fused) error {
		if _, _, err := f.partials(dst, targets); err != nil {
			return err
		}
		return f.pick(z, cols, k, targets)
	})
}

// LinearBackward implements device.FusedLinear.
func (d *Device) LinearBackward(ctx context.Context, g ce.LinearGrad, lin *ce.Linear, targets []int32, part []ce.Partial, p *ce.Problem) error {
	if d.fusedOn() {
		return d.fusedCall(ctx, lin, targets, p, func(f *fused) error {
			g.ClearIgnored(targets)
			bin, err := f.hostIns(part)
			if err != nil {
				return err
			}
			return f.backward(&g, bin)
		})
	}
	return d.linear(ctx, lin, &g, targets, p, func(l *clLinear, pl tiles.Plan) error {
		g.ClearIgnored(targets)
		return tiles.RunBackward(ctx, l, pl, g.Scale, g.Fix, lin.Filter, targets, part, p)
	})
}
