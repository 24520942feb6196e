package device

import (
	"context"
	"fmt"

	"github.com/xentlab/xent/ce"
	"github.com/xentlab/xent/cpu"
	"github.com/xentlab/xent/device/blas"
	"github.com/xentlab/xent/internal/tiles"
)

// The CPU's fused linear cross-entropy: the loop of package
// internal/tiles over a tile of logits in host memory, its products from
// the device's BLAS, package cpu's row kernels on the tile.

// cpuLinear is the CPU's tiles.Backend: the tile in host memory, products
// from its BLAS, the row kernels of package cpu.
type cpuLinear struct {
	impl *cpu.Impl
	blas *blas.BLAS
	lin  *ce.Linear
	g    *ce.LinearGrad
	pl   tiles.Plan
	D    int

	rows   []int
	h      []float32 // H's rows of the chunk, row stride ldh
	ldh    int
	w      []float32 // W's rows of the tile from class w0, row stride ldw
	w0     int
	ldw    int
	wb     []float32 // a half-precision W's tile, widened (C × D)
	wv     [2]int    // the classes [v0, v1) in wb (0, 0: none)
	z      []float32 // the tile, dense
	c      int       // its classes
	hb, dh []float32 // gathered H rows and dH rows (R × D)
	ones   []float32
}

func newCPULinear(d *CPUDevice, lin *ce.Linear, g *ce.LinearGrad, pl tiles.Plan) *cpuLinear {
	return &cpuLinear{impl: d.impl, blas: d.lib(), lin: lin, g: g, pl: pl, D: lin.H.Cols, z: make([]float32, pl.R*pl.C)}
}

// Chunk implements tiles.Backend: H's rows in place when consecutive and
// float32, else gathered (and widened, for a half-precision H).
func (l *cpuLinear) Chunk(rows []int) error {
	l.rows = rows
	H := l.lin.H
	if tiles.Consecutive(rows) && H.Type == ce.F32 {
		l.h, l.ldh = H.Data[rows[0]*H.Stride:], H.Stride
		return nil
	}
	if l.hb == nil {
		l.hb = make([]float32, l.pl.R*l.D)
	}
	for k, i := range rows {
		if H.Type == ce.F32 {
			copy(l.hb[k*l.D:(k+1)*l.D], H.Data[i*H.Stride:i*H.Stride+l.D])
		} else {
			cpu.Widen(l.hb[k*l.D:(k+1)*l.D], H.Half[i*H.Stride:i*H.Stride+l.D], H.Type)
		}
	}
	l.h, l.ldh = l.hb, l.D
	return nil
}

// wtile makes W's classes [v0, v1) the tile's: in place for a float32 W,
// else widened, a tile at a time, into wb (once, when every chunk's tile
// is the whole vocabulary).
func (l *cpuLinear) wtile(v0, v1 int) {
	W := l.lin.W
	if W.Type == ce.F32 {
		l.w, l.w0, l.ldw = W.Data[v0*W.Stride:], v0, W.Stride
		return
	}
	l.w, l.w0, l.ldw = l.wb, v0, l.D
	if l.wv == [2]int{v0, v1} {
		return
	}
	if l.wb == nil {
		l.wb = make([]float32, l.pl.C*l.D)
		l.w = l.wb
	}
	l.wv = [2]int{v0, v1}
	for j := v0; j < v1; j++ {
		cpu.Widen(l.wb[(j-v0)*l.D:(j-v0+1)*l.D], W.Half[j*W.Stride:j*W.Stride+l.D], W.Type)
	}
}

// wrows returns the tile's W from class v (of the tile's classes).
func (l *cpuLinear) wrows(v int) []float32 { return l.w[(v-l.w0)*l.ldw:] }

func (l *cpuLinear) tile() ce.Matrix {
	n := len(l.rows)
	return ce.Matrix{Data: l.z[:n*l.c], Rows: n, Cols: l.c, Stride: l.c}
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

// Logits implements tiles.Backend: z = H·W[v0:v1]ᵀ (+ 1·bᵀ).
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

func (l *cpuLinear) grad(scale []float32) *ce.Grad {
	z := l.tile()
	return &ce.Grad{Data: z.Data, Stride: z.Stride, Scale: scale}
}

// CrossEntropy implements tiles.Backend.
func (l *cpuLinear) CrossEntropy(out ce.Out, grad bool, targets []int32, scale []float32, p *ce.Problem) error {
	var g *ce.Grad
	if grad {
		g = l.grad(scale)
	}
	l.impl.CrossEntropy(out, g, l.tile(), targets, p)
	return nil
}

// Partials implements tiles.Backend.
func (l *cpuLinear) Partials(dst []ce.Partial, targets []int32, p *ce.Problem) error {
	l.impl.Partials(dst, l.tile(), targets, p)
	return nil
}

// Pick implements tiles.Picker.
func (l *cpuLinear) Pick(z []float32, cols []int32, k, v0, v1 int) error {
	for r, i := range l.rows {
		for e := i * k; e < (i+1)*k; e++ {
			if c := int(cols[e]); c >= v0 && c < v1 {
				z[e] = l.z[r*l.c+c-v0]
			}
		}
	}
	return nil
}

// Ranks implements tiles.Ranker.
func (l *cpuLinear) Ranks(dst []ce.Rank, targets []int32, part []ce.Partial, p *ce.Problem) error {
	l.impl.Ranks(dst, l.tile(), targets, part, p)
	return nil
}

// Backward implements tiles.Backend.
func (l *cpuLinear) Backward(targets []int32, scale []float32, fix *ce.Fix, part []ce.Partial, p *ce.Problem) error {
	g := l.grad(scale)
	g.Fix = fix
	l.impl.Backward(*g, l.tile(), targets, part, p)
	return nil
}

// Grads implements tiles.Backend.
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
		if rs := l.rows; tiles.Consecutive(rs) { // in place
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

// BlockMax implements tiles.Backend.
func (l *cpuLinear) BlockMax(dst []float32, inv []float32) error {
	z := l.tile()
	for b := range dst {
		j0, j1 := b*ce.FilterBlock, min(z.Cols, (b+1)*ce.FilterBlock)
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
func (d *CPUDevice) LinearCrossEntropy(ctx context.Context, out ce.Out, g *ce.LinearGrad, lin *ce.Linear, targets []int32, p *ce.Problem) error {
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
	g.ClearIgnored(targets)
	var scale []float32
	if g != nil {
		scale = g.Scale
	}
	pl := d.LinearPlan(lin, targets, g != nil)
	return tiles.Run(ctx, newCPULinear(d, lin, g, pl), pl, out, scale, lin.Filter, targets, p)
}

// LinearPartials implements Device: dst[i] is merged with row i's partial
// over W's classes; ignored rows' entries are left as they are.
func (d *CPUDevice) LinearPartials(ctx context.Context, dst []ce.Partial, lin *ce.Linear, targets []int32, p *ce.Problem) error {
	return d.reading(lin, targets, func(b *cpuLinear, pl tiles.Plan) error {
		return tiles.RunPartials(ctx, b, pl, dst, targets, p)
	})
}

// LinearPartialsAt implements LinearPicker: LinearPartials, the logits
// at cols read from the tiles the partials are made of (cpuLinear.Pick).
func (d *CPUDevice) LinearPartialsAt(ctx context.Context, dst []ce.Partial, z []float32, cols []int32, k int, lin *ce.Linear, targets []int32, p *ce.Problem) error {
	return d.reading(lin, targets, func(b *cpuLinear, pl tiles.Plan) error {
		return tiles.RunPartialsAt(ctx, b, b, pl, dst, z, cols, k, targets, p)
	})
}

// LinearRanks implements LinearRanker: dst[i] is merged with row i's
// rank over W's classes, given part[i], its partial merged over the
// whole vocabulary.
func (d *CPUDevice) LinearRanks(ctx context.Context, dst []ce.Rank, lin *ce.Linear, targets []int32, part []ce.Partial, p *ce.Problem) error {
	return d.reading(lin, targets, func(b *cpuLinear, pl tiles.Plan) error {
		return tiles.RunRanks(ctx, b, b, pl, dst, targets, part, p)
	})
}

// cpuRows is the whole rows of W's classes the CPU's default budget
// holds (min(N, cpuRows), within cpuBudgetMost): OpenBLAS packs W for
// each product, once a chunk, and at 83 rows (16 MiB of GPT-2's 50257
// classes) that made H·Wᵀ and G·W run at 151 and 155 GFLOP/s against 187
// and 195 at 256 rows (and 181 and 194 at 333; Gᵀ·H at 200–206 from 83
// rows), measured on a 2-core AMD EPYC with AVX-512. Gonum's Sgemm,
// which packs nothing, keeps the shared default (forward + backward of
// 1024 × 50257 × 768: 13.5 and 16.0 s with it, 16.6 and 17.2 s with 256
// rows, single runs alternated there).
const cpuRows = 256

// cpuBudgetMost bounds the CPU's default budget (budget): 256 rows of up
// to 262144 classes (Gemma's 256000 included).
const cpuBudgetMost = 256 << 20

// budget returns the bytes of logits a call of lin holds on the CPU:
// lin.Budget, or when that is 0 the default, min(N, cpuRows) whole rows of
// W's classes within cpuBudgetMost, or tiles.Budget's default when more
// (and with gonum's Sgemm).
func (d *CPUDevice) budget(lin *ce.Linear) int {
	if lin.Budget > 0 || d.lib() == blas.Gonum() {
		return tiles.Budget(lin)
	}
	return max(tiles.Budget(lin), min(4*lin.W.Rows*min(lin.H.Rows, cpuRows), cpuBudgetMost))
}

// LinearPlan returns the plan of a call of lin on d, within d's budget
// (budget): tiles.PlanOf's with gradients (grads); without them wide
// tiles (tiles.WidePlanOf) with OpenBLAS, which packs W's tile for each
// product (1024 × 50257 × 768 forward 0.56 → 0.41 s, measured on a
// 2-core AMD EPYC), and tiles.PlanOf's with gonum's Sgemm, which wide
// tiles did not make faster there (3.6–3.7 s with them, 2.9–3.9 s
// without: single runs, within its noise).
func (d *CPUDevice) LinearPlan(lin *ce.Linear, targets []int32, grads bool) tiles.Plan {
	if lin.Budget <= 0 {
		l := *lin
		l.Budget = d.budget(lin)
		lin = &l
	}
	if grads || d.lib() == blas.Gonum() {
		return tiles.PlanOf(lin, targets)
	}
	return tiles.WidePlanOf(lin, targets)
}

// reading runs f on a backend of lin with no gradients and its plan
// (LinearPlan), W (d's buffer, when it is one) held read-locked while f
// runs.
func (d *CPUDevice) reading(lin *ce.Linear, targets []int32, f func(b *cpuLinear, pl tiles.Plan) error) error {
	lin, _, done, err := d.resident(lin, nil)
	defer done()
	if err != nil {
		return err
	}
	pl := d.LinearPlan(lin, targets, false)
	return f(newCPULinear(d, lin, nil, pl), pl)
}

// LinearBackward implements Device: the gradients of W's classes given
// part[i], row i's partial merged over the whole vocabulary.
func (d *CPUDevice) LinearBackward(ctx context.Context, g ce.LinearGrad, lin *ce.Linear, targets []int32, part []ce.Partial, p *ce.Problem) error {
	lin, gp, done, err := d.resident(lin, &g)
	defer done()
	if err != nil {
		return err
	}
	gp.ClearIgnored(targets)
	pl := d.LinearPlan(lin, targets, true)
	return tiles.RunBackward(ctx, newCPULinear(d, lin, gp, pl), pl, gp.Scale, gp.Fix, lin.Filter, targets, part, p)
}

// errHostH is the error of a fused linear's hidden states held by a
// device.
var errHostH = fmt.Errorf("%w: the hidden states of a fused linear are host rows", ErrNotImplemented)

// resident returns lin and g with W and dW, when they are in d's
// buffers, replaced by the buffers' host rows (held until done is called:
// W read-locked, dW write-locked).
func (d *CPUDevice) resident(lin *ce.Linear, g *ce.LinearGrad) (*ce.Linear, *ce.LinearGrad, func(), error) {
	var dones []func()
	done := func() {
		for _, f := range dones {
			f()
		}
	}
	if lin.H.Buf != nil {
		return nil, nil, done, errHostH
	}
	if lin.W.Buf != nil {
		w, release, err := d.host(lin.W)
		if err != nil {
			return nil, nil, done, err
		}
		dones = append(dones, release)
		l := *lin
		l.W = ce.Matrix{Type: w.Type, Data: w.Data, Half: w.Half, Rows: w.Rows, Cols: w.Cols, Stride: w.Stride}
		lin = &l
	}
	if g != nil && g.W.Buf != nil {
		b, ok := g.W.Buf.(*cpuBuffer)
		if !ok || b.d != d {
			done()
			return nil, nil, func() {}, fmt.Errorf("%w: %s accumulates into a matrix of %s", ErrForeign, d.Info().Spec, SpecOf(g.W.Buf))
		}
		b.mu.Lock()
		if b.released {
			b.mu.Unlock()
			done()
			return nil, nil, func() {}, ErrReleased
		}
		dones = append(dones, b.mu.Unlock)
		c := *g
		c.W = ce.Matrix{Data: b.x.Data, Rows: b.x.Rows, Cols: b.x.Cols, Stride: b.x.Stride}
		g = &c
	}
	return lin, g, done, nil
}

func abs32(x float32) float32 {
	if x < 0 {
		return -x
	}
	return x
}

// Sync implements tiles.Backend: the CPU's results are written on return.
func (l *cpuLinear) Sync() error { return nil }
