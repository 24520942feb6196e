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
//
// Filter > 0 turns on gradient filtering (Cut Cross-Entropy's): in the
// backward, a block of FilterBlock classes × a chunk's rows whose every
// unscaled gradient |dL/dz_ij|/|s_i| is below Filter adds nothing to dH,
// dW and dBias (its products are skipped). The loss is unchanged; each
// gradient entry moves by at most Filter·|s_i| times the sum of the
// skipped classes' |w| (dH) or the rows' |h| (dW).
type Linear struct {
	H, W   Matrix
	Bias   []float32
	Budget int
	Filter float32
}

// Widened returns lin with a half-precision H or W (host rows) widened
// to float32 copies, lin itself when both are float32: for back ends
// whose products take float32 only.
func (lin *Linear) Widened() *Linear {
	if lin.H.Type == F32 && lin.W.Type == F32 {
		return lin
	}
	w := *lin
	for _, m := range []*Matrix{&w.H, &w.W} {
		if m.Buf == nil {
			*m = m.Widened()
		}
	}
	return &w
}

// FilterBlock is the number of classes of a block that gradient filtering
// skips or keeps whole.
const FilterBlock = 256

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

// LinearBackend is what a device gives the fused linear driver
// (RunLinear): products into a tile of logits held on the device, and its
// row kernels on that tile. The driver owns the plan (LinearPlan), the
// loops and the merges, so every device chunks and tiles alike.
type LinearBackend interface {
	// Chunk makes H's rows rows (counted rows, ascending) the chunk.
	Chunk(rows []int) error
	// Logits sets the tile to the chunk's logits of W's classes [v0, v1).
	Logits(v0, v1 int) error
	// CrossEntropy runs CrossEntropy on the tile (all of W's classes) into
	// out (one entry per chunk row), with the gradient in place when grad,
	// scaled by scale.
	CrossEntropy(out Out, grad bool, targets []int32, scale []float32, p *Problem) error
	// Partials runs Partials on the tile (p: its classes' shard).
	Partials(dst []Partial, targets []int32, p *Problem) error
	// Backward runs Backward on the tile, the gradient in place.
	Backward(targets []int32, scale []float32, part []Partial, p *Problem) error
	// Grads adds the tile's gradient of classes [v0, v1) (a range of the
	// tile's, which starts at t0) into the chunk's dH (which starts from 0
	// at its first call for the chunk; with AddH the chunk's dH is then
	// added to the caller's, else it replaces it), dW[v0:v1] and
	// dBias[v0:v1], those that are wanted. v0 == v1 adds nothing (a
	// first call so leaves the chunk's dH 0).
	Grads(t0, v0, v1 int, first bool) error
	// BlockMax sets dst[b] to max |G_ij|·inv_i over the chunk's rows and
	// the tile's classes [b·FilterBlock, (b+1)·FilterBlock) (NaN when one
	// is NaN), G the gradient in the tile.
	BlockMax(dst []float32, inv []float32) error
}

// LinearPlan is how a fused linear call tiles its logits: Rows are the
// counted rows (H's indices), a tile is R rows × C classes of W's V.
type LinearPlan struct {
	Rows    []int
	R, C, V int
}

// PlanLinear returns the plan of lin against targets (see Linear).
func PlanLinear(lin *Linear, targets []int32) LinearPlan {
	n, V := lin.H.Rows, lin.W.Rows
	pl := LinearPlan{V: V}
	for i, t := range targets[:n] {
		if t >= 0 {
			pl.Rows = append(pl.Rows, i)
		}
	}
	budget := lin.Budget
	if budget <= 0 {
		budget = max(DefaultBudget, 4*V*min(n, linearRows))
	}
	elems := max(1, budget/4)
	nv := len(pl.Rows)
	if r := elems / max(V, 1); r >= min(nv, linearRows) {
		pl.R, pl.C = max(1, min(nv, r)), V
	} else {
		pl.R = max(1, min(nv, linearRows, elems/16))
		pl.C = max(1, min(V, elems/pl.R))
	}
	return pl
}

// linearRun is the driver's state for one call.
type linearRun struct {
	b       LinearBackend
	pl      LinearPlan
	p       *Problem
	targets []int32
	scale   []float32 // per row of H, nil without gradients
	filter  float32
	rows    []int // the chunk's rows
	tg      []int32
	sc      []float32
	first   bool // no Grads yet for this chunk
	bm, inv []float32
}

// grads hands the tile's gradient (classes [v0, v1)) to the backend: the
// whole tile, or with filtering the runs of blocks that are kept. It
// returns the number of blocks skipped.
func (l *linearRun) grads(v0, v1 int) (int, error) {
	first := l.first
	l.first = false
	if l.filter <= 0 {
		return 0, l.b.Grads(v0, v0, v1, first)
	}
	nb := (v1 - v0 + FilterBlock - 1) / FilterBlock
	if cap(l.bm) < nb {
		l.bm = make([]float32, nb)
	}
	bm := l.bm[:nb]
	l.inv = l.inv[:0]
	for _, s := range l.sc {
		inv := float32(0)
		if s != 0 {
			inv = 1 / abs32(s)
		}
		l.inv = append(l.inv, inv)
	}
	if err := l.b.BlockMax(bm, l.inv); err != nil {
		return 0, err
	}
	skipped := 0
	for b := 0; b < nb; {
		if bm[b] < l.filter { // NaN is kept
			skipped++
			b++
			continue
		}
		e := b + 1
		for e < nb && !(bm[e] < l.filter) {
			e++
		}
		if err := l.b.Grads(v0, v0+b*FilterBlock, min(v1, v0+e*FilterBlock), first); err != nil {
			return 0, err
		}
		first = false
		b = e
	}
	if first { // every block skipped: the chunk's dH is still set (to 0)
		return skipped, l.b.Grads(v0, v0, v0, true)
	}
	return skipped, nil
}

func abs32(x float32) float32 {
	if x < 0 {
		return -x
	}
	return x
}

// each calls f on every chunk of counted rows, checking ctx before each.
func (l *linearRun) each(ctx context.Context, f func() error) error {
	rs := l.pl.Rows
	l.tg, l.sc = make([]int32, l.pl.R), make([]float32, l.pl.R)
	for lo := 0; lo < len(rs); lo += l.pl.R {
		if err := ctx.Err(); err != nil {
			return err
		}
		l.rows = rs[lo:min(len(rs), lo+l.pl.R)]
		l.tg, l.sc = l.tg[:len(l.rows)], l.sc[:len(l.rows)]
		l.first = true
		for k, i := range l.rows {
			l.tg[k] = l.targets[i]
			if l.scale != nil {
				l.sc[k] = l.scale[i]
			}
		}
		if err := l.b.Chunk(l.rows); err != nil {
			return err
		}
		if err := f(); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// tiles calls f on each tile of classes [v0, v1) of the chunk, its
// logits set, with the tile's problem (a shard of p's vocabulary).
func (l *linearRun) tiles(ctx context.Context, f func(v0, v1 int, p *Problem) error) error {
	for v0 := 0; v0 < l.pl.V; v0 += l.pl.C {
		if err := ctx.Err(); err != nil {
			return err
		}
		v1 := min(l.pl.V, v0+l.pl.C)
		if err := l.b.Logits(v0, v1); err != nil {
			return err
		}
		p := l.p
		if v1-v0 != l.pl.V || p.Vocab > 0 {
			p = shard(l.p, l.pl.V, v0)
		}
		if err := f(v0, v1, p); err != nil {
			return err
		}
	}
	return nil
}

// partials merges the chunk's partials over W's classes into part.
func (l *linearRun) partials(ctx context.Context, part []Partial) error {
	tmp := make([]Partial, len(l.rows))
	return l.tiles(ctx, func(_, _ int, p *Problem) error {
		if err := l.b.Partials(tmp, l.tg, p); err != nil {
			return err
		}
		for k := range tmp {
			part[k].Merge(tmp[k])
		}
		return nil
	})
}

// backward adds the chunk's gradients given its merged partials.
func (l *linearRun) backward(ctx context.Context, part []Partial) error {
	return l.tiles(ctx, func(v0, v1 int, p *Problem) error {
		if err := l.b.Backward(l.tg, l.sc, part, p); err != nil {
			return err
		}
		_, err := l.grads(v0, v1)
		return err
	})
}

// RunLinear drives b through LinearCrossEntropy: the per-row results of
// the counted rows into out (ignored rows' are left to the caller) and,
// with scale (g's), the gradients.
func RunLinear(ctx context.Context, b LinearBackend, pl LinearPlan, out Out, scale []float32, filter float32, targets []int32, p *Problem) error {
	l := &linearRun{b: b, pl: pl, p: p, targets: targets, scale: scale, filter: filter}
	C := p.Classes(pl.V)
	o := Out{Loss: make([]float32, pl.R), LSE: make([]float32, pl.R), Correct: make([]bool, pl.R)}
	part := make([]Partial, pl.R)
	return l.each(ctx, func() error {
		n := len(l.rows)
		if pl.C == pl.V { // the whole vocabulary: one pass, gradients with it
			oc := Out{Loss: o.Loss[:n], LSE: o.LSE[:n], Correct: o.Correct[:n]}
			if err := b.Logits(0, pl.V); err != nil {
				return err
			}
			if err := b.CrossEntropy(oc, scale != nil, l.tg, l.sc, p); err != nil {
				return err
			}
			for k, i := range l.rows {
				out.Set(i, float64(oc.Loss[k]), float64(oc.LSE[k]), oc.Correct[k])
			}
			if scale != nil {
				_, err := l.grads(0, pl.V)
				return err
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
		for k, i := range l.rows {
			loss, lse, correct := p.Finish(&pc[k], int(l.tg[k]), C)
			out.Set(i, loss, lse, correct)
		}
		if scale != nil {
			return l.backward(ctx, pc)
		}
		return nil
	})
}

// RunLinearPartials drives b through LinearPartials: dst[i] is merged
// with row i's partial over W's classes.
func RunLinearPartials(ctx context.Context, b LinearBackend, pl LinearPlan, dst []Partial, targets []int32, p *Problem) error {
	l := &linearRun{b: b, pl: pl, p: p, targets: targets}
	part := make([]Partial, pl.R)
	return l.each(ctx, func() error {
		pc := part[:len(l.rows)]
		for k := range pc {
			pc[k] = EmptyPartial()
		}
		if err := l.partials(ctx, pc); err != nil {
			return err
		}
		for k, i := range l.rows {
			dst[i].Merge(pc[k])
		}
		return nil
	})
}

// RunLinearBackward drives b through LinearBackward, given part[i], row
// i's merged partial.
func RunLinearBackward(ctx context.Context, b LinearBackend, pl LinearPlan, scale []float32, filter float32, targets []int32, part []Partial, p *Problem) error {
	l := &linearRun{b: b, pl: pl, p: p, targets: targets, scale: scale, filter: filter}
	pc := make([]Partial, pl.R)
	return l.each(ctx, func() error {
		pc = pc[:len(l.rows)]
		for k, i := range l.rows {
			pc[k] = part[i]
		}
		return l.backward(ctx, pc)
	})
}

// ClearIgnored zeroes the rows of a host dH whose target is ignored
// (unless add: a shard adds its part).
func ClearIgnored(g *LinearGrad, targets []int32) {
	if g == nil || g.H.Data == nil || g.AddH {
		return
	}
	for i := range g.H.Rows {
		if targets[i] < 0 {
			clear(g.H.Data[i*g.H.Stride : i*g.H.Stride+g.H.Cols])
		}
	}
}

// cpuLinear is the CPU's LinearBackend: the tile in host memory, products
// from its BLAS, the row kernels of package cpu.
type cpuLinear struct {
	impl *cpu.Impl
	blas *blas.BLAS
	lin  *Linear
	g    *LinearGrad
	pl   LinearPlan
	D    int

	rows   []int
	h      []float32 // H's rows of the chunk, row stride ldh
	ldh    int
	w      []float32 // W's rows of the tile from class w0, row stride ldw
	w0     int
	ldw    int
	wb     []float32 // a half-precision W's tile, widened (C × D)
	z      []float32 // the tile, dense
	c      int       // its classes
	hb, dh []float32 // gathered H rows and dH rows (R × D)
	ones   []float32
}

func newCPULinear(d *CPUDevice, lin *Linear, g *LinearGrad, pl LinearPlan) *cpuLinear {
	return &cpuLinear{impl: d.impl, blas: d.blas, lin: lin, g: g, pl: pl, D: lin.H.Cols, z: make([]float32, pl.R*pl.C)}
}

// consecutive reports whether rows are one run of H's rows.
func consecutive(rows []int) bool { return rows[len(rows)-1]-rows[0] == len(rows)-1 }

// Chunk implements LinearBackend: H's rows in place when consecutive and
// float32, else gathered (and widened, for a half-precision H).
func (l *cpuLinear) Chunk(rows []int) error {
	l.rows = rows
	H := l.lin.H
	if consecutive(rows) && H.Type == F32 {
		l.h, l.ldh = H.Data[rows[0]*H.Stride:], H.Stride
		return nil
	}
	if l.hb == nil {
		l.hb = make([]float32, l.pl.R*l.D)
	}
	for k, i := range rows {
		if H.Type == F32 {
			copy(l.hb[k*l.D:(k+1)*l.D], H.Data[i*H.Stride:i*H.Stride+l.D])
		} else {
			cpu.Widen(l.hb[k*l.D:(k+1)*l.D], H.Half[i*H.Stride:i*H.Stride+l.D], H.Type)
		}
	}
	l.h, l.ldh = l.hb, l.D
	return nil
}

// wtile makes W's classes [v0, v1) the tile's: in place for a float32 W,
// else widened, a tile at a time, into wb.
func (l *cpuLinear) wtile(v0, v1 int) {
	W := l.lin.W
	if W.Type == F32 {
		l.w, l.w0, l.ldw = W.Data[v0*W.Stride:], v0, W.Stride
		return
	}
	if l.wb == nil {
		l.wb = make([]float32, l.pl.C*l.D)
	}
	for j := v0; j < v1; j++ {
		cpu.Widen(l.wb[(j-v0)*l.D:(j-v0+1)*l.D], W.Half[j*W.Stride:j*W.Stride+l.D], W.Type)
	}
	l.w, l.w0, l.ldw = l.wb, v0, l.D
}

// wrows returns the tile's W from class v (of the tile's classes).
func (l *cpuLinear) wrows(v int) []float32 { return l.w[(v-l.w0)*l.ldw:] }

func (l *cpuLinear) tile() cpu.Matrix {
	n := len(l.rows)
	return cpu.Matrix{Data: l.z[:n*l.c], Rows: n, Cols: l.c, Stride: l.c}
}

func (l *cpuLinear) onesN(n int) []float32 {
	if len(l.ones) < n {
		l.ones = make([]float32, l.pl.R)
		for k := range l.ones {
			l.ones[k] = 1
		}
	}
	return l.ones[:n]
}

// Logits implements LinearBackend: z = H·W[v0:v1]ᵀ (+ 1·bᵀ).
func (l *cpuLinear) Logits(v0, v1 int) error {
	n := len(l.rows)
	l.c = v1 - v0
	z := l.z[:n*l.c]
	l.wtile(v0, v1)
	l.blas.Sgemm(false, true, n, l.c, l.D, 1, l.h, l.ldh, l.w, l.ldw, 0, z, l.c)
	if l.lin.Bias != nil {
		l.blas.Sgemm(false, false, n, l.c, 1, 1, l.onesN(n), 1, l.lin.Bias[v0:v1], l.c, 1, z, l.c)
	}
	return nil
}

func (l *cpuLinear) grad(scale []float32) *cpu.Grad {
	z := l.tile()
	return &cpu.Grad{Data: z.Data, Stride: z.Stride, Scale: scale}
}

// CrossEntropy implements LinearBackend.
func (l *cpuLinear) CrossEntropy(out Out, grad bool, targets []int32, scale []float32, p *Problem) error {
	var g *cpu.Grad
	if grad {
		g = l.grad(scale)
	}
	l.impl.CrossEntropy(out, g, l.tile(), targets, p)
	return nil
}

// Partials implements LinearBackend.
func (l *cpuLinear) Partials(dst []Partial, targets []int32, p *Problem) error {
	l.impl.Partials(dst, l.tile(), targets, p)
	return nil
}

// Backward implements LinearBackend.
func (l *cpuLinear) Backward(targets []int32, scale []float32, part []Partial, p *Problem) error {
	l.impl.Backward(*l.grad(scale), l.tile(), targets, part, p)
	return nil
}

// Grads implements LinearBackend.
func (l *cpuLinear) Grads(t0, v0, v1 int, first bool) error {
	g := l.g
	n, c, k := len(l.rows), l.c, v1-v0
	var w []float32 // W's rows [v0, v1) of the tile (none when k is 0: no tile may have been made)
	if k > 0 {
		w = l.wrows(v0)
	}
	z := l.z[v0-t0:] // the tile's columns [v0, v1), row stride c
	if g.H.Data != nil {
		set := first && !g.AddH
		beta := float32(1)
		if set {
			beta = 0
		}
		if rs := l.rows; consecutive(rs) { // in place
			l.blas.Sgemm(false, false, n, l.D, k, 1, z, c, w, l.ldw, beta, g.H.Data[rs[0]*g.H.Stride:], g.H.Stride)
		} else {
			if l.dh == nil {
				l.dh = make([]float32, l.pl.R*l.D)
			}
			l.blas.Sgemm(false, false, n, l.D, k, 1, z, c, w, l.ldw, 0, l.dh, l.D)
			for kk, i := range rs {
				dst, src := g.H.Data[i*g.H.Stride:i*g.H.Stride+l.D], l.dh[kk*l.D:(kk+1)*l.D]
				if set {
					copy(dst, src)
				} else {
					for d := range dst {
						dst[d] += src[d]
					}
				}
			}
		}
	}
	if k == 0 {
		return nil
	}
	if g.W.Data != nil { // dW[v0:v1] += Gᵀ·H
		l.blas.Sgemm(true, false, k, l.D, n, 1, z, c, l.h, l.ldh, 1, g.W.Data[v0*g.W.Stride:], g.W.Stride)
	}
	if g.Bias != nil { // db[v0:v1] += Gᵀ·1
		l.blas.Sgemm(true, false, k, 1, n, 1, z, c, l.onesN(n), 1, 1, g.Bias[v0:v1], 1)
	}
	return nil
}

// BlockMax implements LinearBackend.
func (l *cpuLinear) BlockMax(dst []float32, inv []float32) error {
	z := l.tile()
	for b := range dst {
		j0, j1 := b*FilterBlock, min(z.Cols, (b+1)*FilterBlock)
		m := float32(0)
		for i := range z.Rows {
			s := inv[i]
			for _, v := range z.Data[i*z.Stride+j0 : i*z.Stride+j1] {
				if a := abs32(v) * s; a > m || a != a {
					m = a
				}
			}
			if m != m {
				break
			}
		}
		dst[b] = m
	}
	return nil
}

// LinearCrossEntropy implements Device: the per-row results and, when g
// is not nil, the gradients of z = H·Wᵀ + Bias, W the whole vocabulary.
func (d *CPUDevice) LinearCrossEntropy(ctx context.Context, out Out, g *LinearGrad, lin *Linear, targets []int32, p *Problem) error {
	lin, g, done, err := d.resident(lin, g)
	defer done()
	if err != nil {
		return err
	}
	for i, t := range targets {
		if t < 0 {
			out.Set(i, 0, 0, false)
		}
	}
	ClearIgnored(g, targets)
	pl := PlanLinear(lin, targets)
	var scale []float32
	if g != nil {
		scale = g.Scale
	}
	return RunLinear(ctx, newCPULinear(d, lin, g, pl), pl, out, scale, lin.Filter, targets, p)
}

// LinearPartials implements Device: dst[i] is merged with row i's partial
// over W's classes; ignored rows' entries are left as they are.
func (d *CPUDevice) LinearPartials(ctx context.Context, dst []Partial, lin *Linear, targets []int32, p *Problem) error {
	lin, _, done, err := d.resident(lin, nil)
	defer done()
	if err != nil {
		return err
	}
	pl := PlanLinear(lin, targets)
	return RunLinearPartials(ctx, newCPULinear(d, lin, nil, pl), pl, dst, targets, p)
}

// LinearBackward implements Device: the gradients of W's classes given
// part[i], row i's partial merged over the whole vocabulary.
func (d *CPUDevice) LinearBackward(ctx context.Context, g LinearGrad, lin *Linear, targets []int32, part []Partial, p *Problem) error {
	lin, gp, done, err := d.resident(lin, &g)
	defer done()
	if err != nil {
		return err
	}
	ClearIgnored(gp, targets)
	pl := PlanLinear(lin, targets)
	return RunLinearBackward(ctx, newCPULinear(d, lin, gp, pl), pl, gp.Scale, lin.Filter, targets, part, p)
}

// resident returns lin and g with W and dW, when they are in d's
// buffers, replaced by the buffers' host rows (held until done is called:
// W read-locked, dW write-locked).
func (d *CPUDevice) resident(lin *Linear, g *LinearGrad) (*Linear, *LinearGrad, func(), error) {
	var dones []func()
	done := func() {
		for _, f := range dones {
			f()
		}
	}
	if lin.H.Buf != nil {
		return nil, nil, done, fmt.Errorf("%w: the hidden states of a fused linear are host rows", ErrNotImplemented)
	}
	if lin.W.Buf != nil {
		w, release, err := d.host(lin.W)
		if err != nil {
			return nil, nil, done, err
		}
		dones = append(dones, release)
		l := *lin
		l.W = Matrix{Data: w.Data, Rows: w.Rows, Cols: w.Cols, Stride: w.Stride}
		lin = &l
	}
	if g != nil && g.W.Buf != nil {
		b, ok := g.W.Buf.(*cpuBuffer)
		if !ok || b.d != d {
			done()
			return nil, nil, func() {}, fmt.Errorf("%w: %s accumulates into a matrix of %s", ErrForeign, d.Info().Spec, g.W.Buf.Owner().Info().Spec)
		}
		b.mu.Lock()
		if b.released {
			b.mu.Unlock()
			done()
			return nil, nil, func() {}, ErrReleased
		}
		dones = append(dones, b.mu.Unlock)
		c := *g
		c.W = Matrix{Data: b.x.Data, Rows: b.x.Rows, Cols: b.x.Cols, Stride: b.x.Stride}
		g = &c
	}
	return lin, g, done, nil
}
