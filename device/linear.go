package device

import (
	"context"
	"fmt"

	"github.com/xentlab/xent/cpu"
	"github.com/xentlab/xent/device/blas"
)

// DefaultBudget is the bytes of logits a fused linear call holds at once
// when Linear.Budget is 0: 16 MiB (83 rows of GPT-2's 50257 classes), or
// 64 rows of the vocabulary when that is more (32 MiB for Llama 3's
// 128256), so that by default the gradients come in the forward pass.
// Measured at 1024 × 50257 × 768 on 2 cores with OpenBLAS, forward +
// backward took 1.9 s at 16 MiB and 1.5 s at 64 MiB (PyTorch: 2.1 s and
// +664 MB).
const DefaultBudget = 16 << 20

// Linear is the input of a fused linear cross-entropy: the logits are z =
// H·Wᵀ + Bias, never held whole. H is N × D (one row per token), W is V ×
// D (nn.Linear's layout: one row per class, the classes [p.Col0,
// p.Col0+V) of the vocabulary), Bias has V values or is nil. Budget is
// the bytes of logits the device may hold at a time (0: DefaultBudget):
// it computes them in tiles of rows × classes within it, a chunk of rows
// over all V classes when that fits at least min(N, 64) rows (the
// gradients then come in the same pass), else tiles of the classes too,
// recomputed for the gradient.
type Linear struct {
	H, W   Matrix
	Bias   []float32
	Budget int
}

// LinearGrad says where the gradients of a fused linear cross-entropy go:
// dH (N × D) is written, or added to with AddH (the shards of a
// vocabulary add theirs); dW (V × D) and dBias (V) are added to, for
// gradient accumulation over micro-batches. A nil Data or Bias is not
// wanted. Scale is the per-row upstream factor, as in Grad; ignored rows
// contribute nothing (their dH row is 0).
type LinearGrad struct {
	H     Matrix
	AddH  bool
	W     Matrix
	Bias  []float32
	Scale []float32
}

// linearRows is the minimum number of rows of a chunk over the whole
// vocabulary: fewer make the matrix products slow, and tiles of the
// vocabulary take over.
const linearRows = 64

// linearRun is one fused linear call on the CPU: the counted rows, the
// tile shape and its buffers.
type linearRun struct {
	impl    *cpu.Impl
	blas    *blas.BLAS
	lin     *Linear
	p       *Problem
	targets []int32
	g       *LinearGrad
	rows    []int // the counted rows, in order
	r, c    int   // tile: r rows × c classes
	V, D    int

	// chunk state: rows rows[lo:hi]
	lo, hi int
	h      []float32 // H's rows of the chunk, lda ldh
	ldh    int
	tg     []int32
	sc     []float32
	z      []float32 // the tile's logits, r × c (dense)
	hb, dh []float32 // gathered H rows and dH rows (r × D)
	ones   []float32
}

func newLinearRun(impl *cpu.Impl, b *blas.BLAS, lin *Linear, targets []int32, p *Problem, g *LinearGrad) *linearRun {
	n, V, D := lin.H.Rows, lin.W.Rows, lin.H.Cols
	l := &linearRun{impl: impl, blas: b, lin: lin, p: p, targets: targets, g: g, V: V, D: D}
	for i, t := range targets[:n] {
		if t >= 0 {
			l.rows = append(l.rows, i)
		}
	}
	budget := lin.Budget
	if budget <= 0 {
		budget = max(DefaultBudget, 4*V*min(n, linearRows))
	}
	elems := max(1, budget/4)
	nv := len(l.rows)
	if r := elems / max(V, 1); r >= min(nv, linearRows) {
		l.r, l.c = max(1, min(nv, r)), V
	} else {
		l.r = max(1, min(nv, linearRows, elems/16))
		l.c = max(1, min(V, elems/l.r))
	}
	return l
}

// chunk makes rows rows[lo:hi] the current chunk: H's rows (in place when
// they are consecutive, else gathered), their targets and scales.
func (l *linearRun) chunk(lo, hi int) {
	l.lo, l.hi = lo, hi
	rs := l.rows[lo:hi]
	H := l.lin.H
	if l.tg == nil {
		l.tg = make([]int32, l.r)
		l.sc = make([]float32, l.r)
		l.z = make([]float32, l.r*l.c)
	}
	l.tg, l.sc = l.tg[:len(rs)], l.sc[:len(rs)]
	for k, i := range rs {
		l.tg[k] = l.targets[i]
		if l.g != nil {
			l.sc[k] = l.g.Scale[i]
		}
	}
	if rs[len(rs)-1]-rs[0] == len(rs)-1 {
		l.h, l.ldh = H.Data[rs[0]*H.Stride:], H.Stride
		return
	}
	if l.hb == nil {
		l.hb = make([]float32, l.r*l.D)
	}
	for k, i := range rs {
		copy(l.hb[k*l.D:(k+1)*l.D], H.Data[i*H.Stride:i*H.Stride+l.D])
	}
	l.h, l.ldh = l.hb, l.D
}

// logits sets the tile to the chunk's logits of classes [v0, v1) of W
// and returns it as a matrix (its problem: the shard of those classes).
func (l *linearRun) logits(v0, v1 int) (cpu.Matrix, *Problem) {
	n, c, W := l.hi-l.lo, v1-v0, l.lin.W
	z := l.z[:n*c]
	l.blas.Sgemm(false, true, n, c, l.D, 1, l.h, l.ldh, W.Data[v0*W.Stride:], W.Stride, 0, z, c)
	if l.lin.Bias != nil { // z += 1·bᵀ
		l.blas.Sgemm(false, false, n, c, 1, 1, l.onesN(n), 1, l.lin.Bias[v0:v1], c, 1, z, c)
	}
	p := l.p
	if c != l.V || p.Vocab > 0 {
		p = shard(l.p, l.V, v0)
	}
	return cpu.Matrix{Data: z, Rows: n, Cols: c, Stride: c}, p
}

func (l *linearRun) onesN(n int) []float32 {
	if len(l.ones) < n {
		l.ones = make([]float32, l.r)
		for k := range l.ones {
			l.ones[k] = 1
		}
	}
	return l.ones[:n]
}

// grads adds the gradients of the tile (its logits replaced by dL/dz, the
// classes [v0, v1)): dH of the chunk (set by the first tile unless AddH,
// then added), dW and dBias of the classes.
func (l *linearRun) grads(v0, v1 int, first bool) {
	g, W := l.g, l.lin.W
	n, c := l.hi-l.lo, v1-v0
	z := l.z[:n*c]
	if g.H.Data != nil {
		rs := l.rows[l.lo:l.hi]
		beta := float32(1)
		if first && !g.AddH {
			beta = 0
		}
		if rs[n-1]-rs[0] == n-1 { // in place
			l.blas.Sgemm(false, false, n, l.D, c, 1, z, c, W.Data[v0*W.Stride:], W.Stride, beta, g.H.Data[rs[0]*g.H.Stride:], g.H.Stride)
		} else {
			if l.dh == nil {
				l.dh = make([]float32, l.r*l.D)
			}
			l.blas.Sgemm(false, false, n, l.D, c, 1, z, c, W.Data[v0*W.Stride:], W.Stride, 0, l.dh, l.D)
			for k, i := range rs {
				dst, src := g.H.Data[i*g.H.Stride:i*g.H.Stride+l.D], l.dh[k*l.D:(k+1)*l.D]
				if beta == 0 {
					copy(dst, src)
				} else {
					for d := range dst {
						dst[d] += src[d]
					}
				}
			}
		}
	}
	if g.W.Data != nil { // dW[v0:v1] += Gᵀ·H
		l.blas.Sgemm(true, false, c, l.D, n, 1, z, c, l.h, l.ldh, 1, g.W.Data[v0*g.W.Stride:], g.W.Stride)
	}
	if g.Bias != nil { // db[v0:v1] += Gᵀ·1
		l.blas.Sgemm(true, false, c, 1, n, 1, z, c, l.onesN(n), 1, 1, g.Bias[v0:v1], 1)
	}
}

// clearIgnored zeroes the dH rows of the ignored rows (unless AddH).
func (l *linearRun) clearIgnored() {
	if l.g == nil || l.g.H.Data == nil || l.g.AddH {
		return
	}
	H := l.g.H
	for i := range H.Rows {
		if l.targets[i] < 0 {
			clear(H.Data[i*H.Stride : i*H.Stride+l.D])
		}
	}
}

// each calls f on every chunk of counted rows, checking ctx before each.
func (l *linearRun) each(ctx context.Context, f func() error) error {
	for lo := 0; lo < len(l.rows); lo += l.r {
		if err := ctx.Err(); err != nil {
			return err
		}
		l.chunk(lo, min(len(l.rows), lo+l.r))
		if err := f(); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// partials merges the chunk's partials over W's classes into part (one
// per row of the chunk).
func (l *linearRun) partials(ctx context.Context, part []Partial) error {
	tmp := make([]Partial, l.hi-l.lo)
	for v0 := 0; v0 < l.V; v0 += l.c {
		if err := ctx.Err(); err != nil {
			return err
		}
		z, p := l.logits(v0, min(l.V, v0+l.c))
		l.impl.Partials(tmp, z, l.tg, p)
		for k := range tmp {
			part[k].Merge(tmp[k])
		}
	}
	return nil
}

// backward adds the chunk's gradients given its merged partials.
func (l *linearRun) backward(ctx context.Context, part []Partial) error {
	for v0 := 0; v0 < l.V; v0 += l.c {
		if err := ctx.Err(); err != nil {
			return err
		}
		v1 := min(l.V, v0+l.c)
		z, p := l.logits(v0, v1)
		l.impl.Backward(cpu.Grad{Data: z.Data, Stride: z.Stride, Scale: l.sc}, z, l.tg, part, p)
		l.grads(v0, v1, v0 == 0)
	}
	return nil
}

// LinearCrossEntropy implements Device: the per-row results and, when g
// is not nil, the gradients of z = H·Wᵀ + Bias, W the whole vocabulary.
func (d *CPUDevice) LinearCrossEntropy(ctx context.Context, out Out, g *LinearGrad, lin *Linear, targets []int32, p *Problem) error {
	if err := linearHost(lin); err != nil {
		return err
	}
	l := newLinearRun(d.impl, d.blas, lin, targets, p, g)
	for i, t := range targets {
		if t < 0 {
			out.Set(i, 0, 0, false)
		}
	}
	l.clearIgnored()
	C := p.Classes(l.V)
	var o Out
	part := make([]Partial, l.r)
	return l.each(ctx, func() error {
		n := l.hi - l.lo
		if l.c == l.V { // the whole vocabulary: one pass, gradients with it
			if o.Loss == nil {
				o = Out{Loss: make([]float32, l.r), LSE: make([]float32, l.r), Correct: make([]bool, l.r)}
			}
			oc := Out{Loss: o.Loss[:n], LSE: o.LSE[:n], Correct: o.Correct[:n]}
			z, _ := l.logits(0, l.V)
			var cg *cpu.Grad
			if g != nil {
				cg = &cpu.Grad{Data: z.Data, Stride: z.Stride, Scale: l.sc}
			}
			l.impl.CrossEntropy(oc, cg, z, l.tg, p)
			for k, i := range l.rows[l.lo:l.hi] {
				out.Set(i, float64(oc.Loss[k]), float64(oc.LSE[k]), oc.Correct[k])
			}
			if g != nil {
				l.grads(0, l.V, true)
			}
			return nil
		}
		pc := part[:n]
		for k := range pc {
			pc[k] = EmptyPartial()
		}
		if err := l.partials(ctx, pc); err != nil {
			return err
		}
		for k, i := range l.rows[l.lo:l.hi] {
			loss, lse, correct := p.Finish(&pc[k], int(l.tg[k]), C)
			out.Set(i, loss, lse, correct)
		}
		if g != nil {
			return l.backward(ctx, pc)
		}
		return nil
	})
}

// LinearPartials implements Device: dst[i] is merged with row i's partial
// over W's classes; ignored rows' entries are left as they are.
func (d *CPUDevice) LinearPartials(ctx context.Context, dst []Partial, lin *Linear, targets []int32, p *Problem) error {
	if err := linearHost(lin); err != nil {
		return err
	}
	l := newLinearRun(d.impl, d.blas, lin, targets, p, nil)
	part := make([]Partial, l.r)
	return l.each(ctx, func() error {
		pc := part[:l.hi-l.lo]
		for k := range pc {
			pc[k] = EmptyPartial()
		}
		if err := l.partials(ctx, pc); err != nil {
			return err
		}
		for k, i := range l.rows[l.lo:l.hi] {
			dst[i].Merge(pc[k])
		}
		return nil
	})
}

// LinearBackward implements Device: the gradients of W's classes given
// part[i], row i's partial merged over the whole vocabulary.
func (d *CPUDevice) LinearBackward(ctx context.Context, g LinearGrad, lin *Linear, targets []int32, part []Partial, p *Problem) error {
	if err := linearHost(lin); err != nil {
		return err
	}
	l := newLinearRun(d.impl, d.blas, lin, targets, p, &g)
	l.clearIgnored()
	pc := make([]Partial, l.r)
	return l.each(ctx, func() error {
		pc = pc[:l.hi-l.lo]
		for k, i := range l.rows[l.lo:l.hi] {
			pc[k] = part[i]
		}
		return l.backward(ctx, pc)
	})
}

// linearHost returns the error for a fused linear input in a device's
// memory: the CPU's take host matrices.
func linearHost(lin *Linear) error {
	if lin.H.Buf != nil || lin.W.Buf != nil {
		return fmt.Errorf("%w: the CPU's fused linear cross-entropy takes host matrices", ErrNotImplemented)
	}
	return nil
}

// notLinear is the error of a device without the fused linear operations.
func notLinear(spec string) error {
	return fmt.Errorf("%w: %s has no fused linear cross-entropy (the CPU has)", ErrNotImplemented, spec)
}
