package opencl

import (
	"context"
	"errors"
	"fmt"

	"github.com/xentlab/xent/device"
	"github.com/xentlab/xent/device/opencl/internal/cl"
)

// The fused linear cross-entropy on OpenCL: H's chunk, W, the bias, dH's
// chunk, dW and dBias in device buffers, the matrix products from CLBlast
// on the device's queue, and xent.cl's row kernels on the tile of logits
// in between (the same driver as the CPU's, device.RunLinear). The queue
// is in order, so each product follows the kernel before it.

// linearAvailable returns nil when CLBlast loads, else the error (wrapping
// device.ErrNotAvailable) of the linear operations.
func linearAvailable() error {
	if name, err := cl.LoadCLBlast(); err != nil {
		return fmt.Errorf("opencl: %w: the fused linear cross-entropy needs CLBlast (%s; Debian libclblast1, or XENT_CLBLAST_LIB): %v", device.ErrNotAvailable, name, err)
	}
	return nil
}

// clblastName names the fused linear's BLAS, empty without CLBlast.
func clblastName() string {
	if linearAvailable() != nil {
		return ""
	}
	return "CLBlast"
}

// clLinear is the OpenCL device's device.LinearBackend.
type clLinear struct {
	d   *Device
	lin *device.Linear
	g   *device.LinearGrad
	pl  device.LinearPlan
	D   int

	b                        buffers
	h, w, bias, ones, dh, dw cl.Mem
	db                       cl.Mem
	z                        *Buffer // the tile (R × C, dense at its width)
	hb                       []float32
	rows, dhRows             []int // the chunk's rows; those dh holds
	c                        int
	ctx                      context.Context
	dwResident               bool   // dw is the caller's buffer: nothing to read back
	inv, bmax                cl.Mem // the gradient filter's row factors and block maxima
}

// newCLLinear uploads W (and the bias, dW and dBias to add to) and makes
// the chunk's buffers.
func (d *Device) newCLLinear(ctx context.Context, lin *device.Linear, g *device.LinearGrad, pl device.LinearPlan) (*clLinear, error) {
	if err := linearAvailable(); err != nil {
		return nil, err
	}
	if lin.H.Buf != nil {
		return nil, fmt.Errorf("opencl: %w: the hidden states of a fused linear are host rows", device.ErrNotImplemented)
	}
	// W and dW may be the device's own buffers (they stay there).
	resident := func(m device.Matrix) (cl.Mem, error) {
		if m.Buf == nil {
			return 0, nil
		}
		b, ok := m.Buf.(*Buffer)
		if !ok || b.d != d {
			return 0, fmt.Errorf("opencl: %s: %w (of %s)", d.h.name, device.ErrForeign, m.Buf.Owner().Info().Spec)
		}
		if b.mem == 0 {
			return 0, fmt.Errorf("opencl: %w", device.ErrReleased)
		}
		return b.mem, nil
	}
	wRes, err := resident(lin.W)
	if err != nil {
		return nil, err
	}
	var dwRes cl.Mem
	if g != nil {
		if dwRes, err = resident(g.W); err != nil {
			return nil, err
		}
	}
	V, D := lin.W.Rows, lin.H.Cols
	if int64(V)*int64(D)*4 > d.maxAlloc || int64(pl.R)*int64(pl.C)*4 > d.maxAlloc {
		return nil, fmt.Errorf("%w: W (%d × %d) or the tile (%d × %d) exceeds one allocation of %d bytes", ErrTooLarge, V, D, pl.R, pl.C, d.maxAlloc)
	}
	l := &clLinear{d: d, lin: lin, g: g, pl: pl, D: D, ctx: ctx, dwResident: dwRes != 0}
	mk := func(floats int) cl.Mem {
		m, e := l.b.mem(d.p.ctx, 4*floats)
		err = errors.Join(err, e)
		return m
	}
	l.h, l.ones, l.w = mk(pl.R*D), mk(pl.R), wRes
	if wRes == 0 {
		l.w = mk(V * D)
	}
	z := mk(pl.R * pl.C)
	l.z = &Buffer{d: d, mem: z, rows: pl.R, cols: pl.C}
	if lin.Bias != nil {
		l.bias = mk(V)
	}
	if g != nil {
		if g.H.Data != nil {
			l.dh = mk(pl.R * D)
		}
		switch {
		case dwRes != 0:
			l.dw = dwRes
		case g.W.Data != nil:
			l.dw = mk(V * D)
		}
		if g.Bias != nil {
			l.db = mk(V)
		}
	}
	if err != nil {
		l.release()
		return nil, d.wrap(err)
	}
	ones := make([]float32, pl.R)
	for k := range ones {
		ones[k] = 1
	}
	err = l.write(l.ones, ones)
	if wRes == 0 {
		err = errors.Join(err, l.writeRows(l.w, lin.W))
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

func (l *clLinear) write(m cl.Mem, v []float32) error {
	_, err := l.b.ev(cl.Write(l.d.q, m, true, 0, v, nil))
	return err
}

// writeRows writes a host matrix densely into m.
func (l *clLinear) writeRows(m cl.Mem, x device.Matrix) error {
	return l.rowsIO(m, x, cl.WriteRect[float32])
}

// readRows reads m (dense) into a host matrix.
func (l *clLinear) readRows(m cl.Mem, x device.Matrix) error {
	return l.rowsIO(m, x, cl.ReadRect[float32])
}

func (l *clLinear) rowsIO(m cl.Mem, x device.Matrix, io func(cl.Queue, cl.Mem, bool, cl.Rect, []float32, []cl.Event) (cl.Event, error)) error {
	if x.Rows == 0 {
		return nil
	}
	r := cl.Rect{Pitch: 4 * x.Cols, HostPitch: 4 * x.Stride, RowBytes: 4 * x.Cols, Rows: x.Rows}
	_, err := l.b.ev(io(l.d.q, m, true, r, x.Data[:(x.Rows-1)*x.Stride+x.Cols], nil))
	return err
}

func (l *clLinear) release() error { return l.b.release() }

// Chunk implements device.LinearBackend: the chunk's H rows, gathered on
// the host, are written to the device (after the previous chunk's dH is
// read back).
func (l *clLinear) Chunk(rows []int) error {
	if err := l.flushDH(); err != nil {
		return err
	}
	l.rows = rows
	H := l.lin.H
	if l.hb == nil {
		l.hb = make([]float32, l.pl.R*l.D)
	}
	for k, i := range rows {
		copy(l.hb[k*l.D:(k+1)*l.D], H.Data[i*H.Stride:i*H.Stride+l.D])
	}
	return l.write(l.h, l.hb[:len(rows)*l.D])
}

// flushDH reads the chunk's dH rows back into the host dH: set, or added
// with AddH.
func (l *clLinear) flushDH() error {
	if l.dhRows == nil {
		return nil
	}
	rs := l.dhRows
	l.dhRows = nil
	buf := make([]float32, len(rs)*l.D)
	if _, err := l.b.ev(cl.Read(l.d.q, l.dh, true, 0, buf, nil)); err != nil {
		return err
	}
	H := l.g.H
	for k, i := range rs {
		dst, src := H.Data[i*H.Stride:i*H.Stride+l.D], buf[k*l.D:(k+1)*l.D]
		if !l.g.AddH {
			copy(dst, src)
			continue
		}
		for d := range dst {
			dst[d] += src[d]
		}
	}
	return nil
}

// tile returns the tile as a matrix held by the device.
func (l *clLinear) tile() device.Matrix {
	return device.Matrix{Rows: len(l.rows), Cols: l.c, Stride: l.c, Buf: l.z}
}

// Logits implements device.LinearBackend.
func (l *clLinear) Logits(v0, v1 int) error {
	n, q := len(l.rows), l.d.q
	l.c = v1 - v0
	err := q.Sgemm(false, true, n, l.c, l.D, 1, l.h, 0, l.D, l.w, v0*l.D, l.D, 0, l.z.mem, 0, l.c)
	if err == nil && l.bias != 0 { // z += 1·bᵀ
		err = q.Sgemm(false, false, n, l.c, 1, 1, l.ones, 0, 1, l.bias, v0, l.c, 1, l.z.mem, 0, l.c)
	}
	return err
}

// CrossEntropy implements device.LinearBackend.
func (l *clLinear) CrossEntropy(out device.Out, grad bool, targets []int32, scale []float32, p *device.Problem) error {
	var g *device.Grad
	if grad {
		g = &device.Grad{Scale: scale, Buf: l.z}
	}
	return l.d.CrossEntropy(l.ctx, out, g, l.tile(), targets, p)
}

// Partials implements device.LinearBackend.
func (l *clLinear) Partials(dst []device.Partial, targets []int32, p *device.Problem) error {
	return l.d.Partials(l.ctx, dst, l.tile(), targets, p)
}

// Backward implements device.LinearBackend.
func (l *clLinear) Backward(targets []int32, scale []float32, part []device.Partial, p *device.Problem) error {
	return l.d.Backward(l.ctx, device.Grad{Scale: scale, Buf: l.z}, l.tile(), targets, part, p)
}

// Grads implements device.LinearBackend. The chunk's dH accumulates on the
// device over its tiles (from 0 at the first call), and is read back when
// the next chunk comes (set or added there).
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
				err = l.write(l.dh, make([]float32, n*l.D))
			}
		} else {
			err = q.Sgemm(false, false, n, l.D, k, 1, l.z.mem, zo, c, l.w, v0*l.D, l.D, beta, l.dh, 0, l.D)
		}
		l.dhRows = l.rows
	}
	if k == 0 {
		return err
	}
	if err == nil && l.dw != 0 { // dW[v0:v1] += Gᵀ·H
		err = q.Sgemm(true, false, k, l.D, n, 1, l.z.mem, zo, c, l.h, 0, l.D, 1, l.dw, v0*l.D, l.D)
	}
	if err == nil && l.db != 0 { // db[v0:v1] += Gᵀ·1
		err = q.Sgemm(true, false, k, 1, n, 1, l.z.mem, zo, c, l.ones, 0, 1, 1, l.db, v0, 1)
	}
	return err
}

// BlockMax implements device.LinearBackend with xent_blockmax.
func (l *clLinear) BlockMax(dst []float32, inv []float32) error {
	d, n := l.d, len(l.rows)
	if l.inv == 0 {
		var err error
		if l.inv, err = l.b.mem(d.p.ctx, 4*l.pl.R); err == nil {
			l.bmax, err = l.b.mem(d.p.ctx, 4*((l.pl.C+device.FilterBlock-1)/device.FilterBlock))
		}
		if err != nil {
			return err
		}
	}
	if err := l.write(l.inv, inv[:n]); err != nil {
		return err
	}
	d.p.kernelMu.Lock()
	err := d.p.blockK.SetArgs(l.z.mem, int32(n), int32(l.c), int32(device.FilterBlock), l.inv, l.bmax, int32(len(dst)))
	var ev cl.Event
	if err == nil {
		ev, err = l.b.ev(d.q.NDRange(d.p.blockK, len(dst), 1, nil))
	}
	d.p.kernelMu.Unlock()
	if err != nil {
		return err
	}
	_, err = l.b.ev(cl.Read(d.q, l.bmax, true, 0, dst, []cl.Event{ev}))
	return err
}

// finish reads back dH's last chunk, dW and dBias.
func (l *clLinear) finish() error {
	err := l.flushDH()
	if err == nil && l.dw != 0 && !l.dwResident {
		err = l.readRows(l.dw, l.g.W)
	}
	if err == nil && l.db != 0 {
		_, err = l.b.ev(cl.Read(l.d.q, l.db, true, 0, l.g.Bias, nil))
	}
	return err
}

// linear runs f on a backend for lin and releases it; with gradients the
// results are read back at the end.
func (d *Device) linear(ctx context.Context, lin *device.Linear, g *device.LinearGrad, targets []int32, f func(*clLinear, device.LinearPlan) error) (err error) {
	// CLBlast's products here are float32: half-precision H and W are
	// widened on the host (twice their bytes cross the bus).
	lin = lin.Widened()
	pl := device.PlanLinear(lin, targets)
	l, err := d.newCLLinear(ctx, lin, g, pl)
	if err != nil {
		return err
	}
	defer func() {
		if rerr := l.release(); err == nil && rerr != nil {
			err = d.wrap(rerr)
		}
	}()
	if err := f(l, pl); err != nil {
		return err
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

// LinearCrossEntropy implements device.Device (see device.Linear).
func (d *Device) LinearCrossEntropy(ctx context.Context, out device.Out, g *device.LinearGrad, lin *device.Linear, targets []int32, p *device.Problem) error {
	var scale []float32
	if g != nil {
		scale = g.Scale
	}
	return d.linear(ctx, lin, g, targets, func(l *clLinear, pl device.LinearPlan) error {
		for i, t := range targets { // once the inputs are known good
			if t < 0 {
				out.Set(i, 0, 0, false)
			}
		}
		device.ClearIgnored(g, targets)
		return device.RunLinear(ctx, l, pl, out, scale, lin.Filter, targets, p)
	})
}

// LinearPartials implements device.Device.
func (d *Device) LinearPartials(ctx context.Context, dst []device.Partial, lin *device.Linear, targets []int32, p *device.Problem) error {
	return d.linear(ctx, lin, nil, targets, func(l *clLinear, pl device.LinearPlan) error {
		return device.RunLinearPartials(ctx, l, pl, dst, targets, p)
	})
}

// LinearBackward implements device.Device.
func (d *Device) LinearBackward(ctx context.Context, g device.LinearGrad, lin *device.Linear, targets []int32, part []device.Partial, p *device.Problem) error {
	return d.linear(ctx, lin, &g, targets, func(l *clLinear, pl device.LinearPlan) error {
		device.ClearIgnored(&g, targets)
		return device.RunLinearBackward(ctx, l, pl, g.Scale, lin.Filter, targets, part, p)
	})
}
