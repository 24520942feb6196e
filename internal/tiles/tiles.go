// Package tiles is the loop of the fused linear cross-entropy, written
// once for every device that runs it: the plan of a call (Plan: which
// rows count, how many rows and classes a tile of logits holds), the
// chunks of rows, the tiles of classes, the merges of the tiles' partials
// and the gradient filter's choice of blocks, over a Backend that computes
// a tile's logits and runs its row kernels and products on it (the CPU's
// with its BLAS and package cpu, OpenCL's with CLBlast and xent.cl).
package tiles

import (
	"context"

	"github.com/xentlab/xent/ce"
)

// linearRows is the minimum number of rows of a chunk over the whole
// vocabulary: fewer make the matrix products slow, and tiles of the
// vocabulary take over.
const linearRows = 64

// Backend is what a device gives the fused linear driver
// (Run): products into a tile of logits held on the device, and its
// row kernels on that tile. The driver owns the plan (Plan), the
// loops and the merges, so every device chunks and tiles alike.
//
// The slices the driver passes as out, targets and scale are views of
// arrays of the call, which no later chunk reuses: a backend may read them
// and write out asynchronously, until Sync. The partials (part, dst) and
// inv are the chunk's, and the next chunk reuses them: a backend reads
// them before it returns. Only Partials and BlockMax give their results
// on return (the driver decides with them).
type Backend interface {
	// Chunk makes H's rows rows (counted rows, ascending) the chunk.
	Chunk(rows []int) error
	// Logits sets the tile to the chunk's logits of W's classes [v0, v1).
	Logits(v0, v1 int) error
	// CrossEntropy runs CrossEntropy on the tile (all of W's classes) into
	// out (one entry per chunk row, written by the time Sync returns),
	// with the gradient in place when grad, scaled by scale.
	CrossEntropy(out ce.Out, grad bool, targets []int32, scale []float32, p *ce.Problem) error
	// Partials runs Partials on the tile (p: its classes' shard).
	Partials(dst []ce.Partial, targets []int32, p *ce.Problem) error
	// Backward runs Backward on the tile, the gradient in place, with the
	// chunk's rows of fix (nil: none).
	Backward(targets []int32, scale []float32, fix *ce.Fix, part []ce.Partial, p *ce.Problem) error
	// Grads adds the tile's gradient of classes [v0, v1) (a range of the
	// tile's, which starts at t0) into the chunk's dH (which starts from 0
	// at its first call for the chunk; with AddH the chunk's dH is then
	// added to the caller's, else it replaces it), dW[v0:v1] and
	// dBias[v0:v1], those that are wanted. v0 == v1 adds nothing (a
	// first call so leaves the chunk's dH 0).
	Grads(t0, v0, v1 int, first bool) error
	// BlockMax sets dst[b] to max |G_ij|·inv_i over the chunk's rows and
	// the tile's classes [b·ce.FilterBlock, (b+1)·ce.FilterBlock) (NaN when one
	// is NaN), G the gradient in the tile.
	BlockMax(dst []float32, inv []float32) error
	// Sync returns once every result asked for is written.
	Sync() error
}

// Picker is the pick of a Backend that has one: the tile's own logits at
// chosen classes (device.LinearPicker).
type Picker interface {
	// Pick sets z[i·k+j], for each of the chunk's rows i, to the tile's
	// logit at W's class cols[i·k+j] where that is one of the tile's
	// classes [v0, v1), leaving the other entries as they are.
	Pick(z []float32, cols []int32, k, v0, v1 int) error
}

// Consecutive reports whether rows (ascending) are one run of H's rows:
// a chunk a backend can read in place.
func Consecutive(rows []int) bool { return rows[len(rows)-1]-rows[0] == len(rows)-1 }

// Plan is how a fused linear call tiles its logits: Rows are the
// counted rows (H's indices), a tile is R rows × C classes of W's V.
type Plan struct {
	Rows    []int
	R, C, V int
}

// wideClasses is the fewest classes of a tile of WidePlanOf's (or all of
// W's, when fewer).
const wideClasses = 1024

// PlanOf returns the plan of lin against targets (see Linear): tiles of
// whole rows of the vocabulary where the budget holds linearRows of them,
// so that a pass with gradients computes them with its products (the
// gradient of a whole row needs its lse); else the fewest rows that keep
// the products fast, each over tiles of the vocabulary.
func PlanOf(lin *ce.Linear, targets []int32) Plan {
	pl, elems := startPlan(lin, targets)
	V, nv := pl.V, len(pl.Rows)
	if r := elems / max(V, 1); r >= min(nv, linearRows) {
		pl.R, pl.C = max(1, min(nv, r)), V
	} else {
		pl.R = max(1, min(nv, linearRows, elems/16))
		pl.C = max(1, min(V, elems/pl.R))
	}
	return pl
}

// WidePlanOf returns the plan of a pass of lin without gradients (the
// forward, partials, picks, ranks), which needs no row whole in a tile:
// as many rows as the budget holds with wideClasses classes each, and no
// more rows than put 2·R·D elements of H (a chunk gathered or widened)
// above the budget's (but linearRows), the tile's classes the rest of
// the budget. Fewer, wider products pack W fewer times: measured on a
// 2-core AMD EPYC with OpenBLAS, 1024 × 50257 × 768 went from 0.56 s
// (PlanOf's 83 rows × the whole vocabulary) to 0.41 s (1024 × 4096).
func WidePlanOf(lin *ce.Linear, targets []int32) Plan {
	pl, elems := startPlan(lin, targets)
	D := max(1, lin.H.Cols)
	pl.R = max(1, min(len(pl.Rows), elems/min(pl.V, wideClasses), max(linearRows, elems/(2*D))))
	pl.C = max(1, min(pl.V, elems/pl.R))
	return pl
}

// Budget returns the bytes of logits a call of lin holds: lin.Budget, or
// when that is 0 the default, ce.DefaultBudget or linearRows whole rows of
// W's classes when more (a device may set a larger one: the CPU's,
// device.CPUDevice.LinearPlan).
func Budget(lin *ce.Linear) int {
	if lin.Budget > 0 {
		return lin.Budget
	}
	return max(ce.DefaultBudget, 4*lin.W.Rows*min(lin.H.Rows, linearRows))
}

// startPlan returns lin's plan with its counted rows and V set, and the
// elements its budget (Budget) holds.
func startPlan(lin *ce.Linear, targets []int32) (Plan, int) {
	n, V := lin.H.Rows, lin.W.Rows
	pl := Plan{V: V}
	for i, t := range targets[:n] {
		if t >= 0 {
			pl.Rows = append(pl.Rows, i)
		}
	}
	return pl, max(1, Budget(lin)/4)
}

// run is the driver's state for one call.
type run struct {
	b       Backend
	pl      Plan
	p       *ce.Problem
	targets []int32
	scale   []float32 // per row of H, nil without gradients
	fix     *ce.Fix   // per row of H, nil without one
	filter  float32
	rows    []int // the chunk's rows
	tg      []int32
	sc      []float32
	fx      *ce.Fix // the chunk's rows of fix
	first   bool    // no Grads yet for this chunk
	bm, inv []float32
	pick    func(v0, v1 int) error // after each tile's Logits, nil: none
}

// grads hands the tile's gradient (classes [v0, v1)) to the backend: the
// whole tile, or with filtering the runs of blocks that are kept. It
// returns the number of blocks skipped.
func (l *run) grads(v0, v1 int) (int, error) {
	first := l.first
	l.first = false
	if l.filter <= 0 {
		return 0, l.b.Grads(v0, v0, v1, first)
	}
	nb := (v1 - v0 + ce.FilterBlock - 1) / ce.FilterBlock
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
		if err := l.b.Grads(v0, v0+b*ce.FilterBlock, min(v1, v0+e*ce.FilterBlock), first); err != nil {
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

// each calls f on every chunk of counted rows, checking ctx before each;
// lo is the chunk's first among the counted rows.
func (l *run) each(ctx context.Context, f func(lo int) error) error {
	rs := l.pl.Rows
	tg, sc := make([]int32, len(rs)), make([]float32, len(rs))
	for k, i := range rs {
		tg[k] = l.targets[i]
		if l.scale != nil {
			sc[k] = l.scale[i]
		}
	}
	fx := l.fix.Gather(rs)
	for lo := 0; lo < len(rs); lo += l.pl.R {
		if err := ctx.Err(); err != nil {
			return err
		}
		hi := min(len(rs), lo+l.pl.R)
		l.rows, l.tg, l.sc, l.fx = rs[lo:hi], tg[lo:hi], sc[lo:hi], fx.RowRange(lo, hi)
		l.first = true
		if err := l.b.Chunk(l.rows); err != nil {
			return err
		}
		if err := f(lo); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return l.b.Sync()
}

// tiles calls f on each tile of classes [v0, v1) of the chunk, its
// logits set, with the tile's problem (a shard of p's vocabulary).
func (l *run) tiles(ctx context.Context, f func(v0, v1 int, p *ce.Problem) error) error {
	for v0 := 0; v0 < l.pl.V; v0 += l.pl.C {
		if err := ctx.Err(); err != nil {
			return err
		}
		v1 := min(l.pl.V, v0+l.pl.C)
		if err := l.b.Logits(v0, v1); err != nil {
			return err
		}
		if l.pick != nil {
			if err := l.pick(v0, v1); err != nil {
				return err
			}
		}
		p := l.p
		if v1-v0 != l.pl.V || p.Vocab > 0 {
			p = l.p.Shard(l.pl.V, v0)
		}
		if err := f(v0, v1, p); err != nil {
			return err
		}
	}
	return nil
}

// partials returns the chunk's partials over W's classes, merged tile by
// tile in part's room (the chunk's rows of it).
func (l *run) partials(ctx context.Context, part []ce.Partial) ([]ce.Partial, error) {
	pc := part[:len(l.rows)]
	for k := range pc {
		pc[k] = ce.EmptyPartial()
	}
	tmp := make([]ce.Partial, len(l.rows))
	return pc, l.tiles(ctx, func(_, _ int, p *ce.Problem) error {
		if err := l.b.Partials(tmp, l.tg, p); err != nil {
			return err
		}
		for k := range tmp {
			pc[k].Merge(tmp[k])
		}
		return nil
	})
}

// backward adds the chunk's gradients given its merged partials.
func (l *run) backward(ctx context.Context, part []ce.Partial) error {
	return l.tiles(ctx, func(v0, v1 int, p *ce.Problem) error {
		if err := l.b.Backward(l.tg, l.sc, l.fx, part, p); err != nil {
			return err
		}
		_, err := l.grads(v0, v1)
		return err
	})
}

// Run drives b through LinearCrossEntropy: the per-row results of
// the counted rows into out (ignored rows' are left to the caller) and,
// with scale (g's), the gradients.
func Run(ctx context.Context, b Backend, pl Plan, out ce.Out, scale []float32, filter float32, targets []int32, p *ce.Problem) error {
	l := &run{b: b, pl: pl, p: p, targets: targets, scale: scale, filter: filter}
	C := p.Classes(pl.V)
	nr := len(pl.Rows)
	if pl.C == pl.V { // the whole vocabulary: one pass, gradients with it
		o := ce.Out{Loss: make([]float32, nr), LSE: make([]float32, nr), Correct: make([]bool, nr)}
		err := l.each(ctx, func(lo int) error {
			hi := lo + len(l.rows)
			oc := ce.Out{Loss: o.Loss[lo:hi], LSE: o.LSE[lo:hi], Correct: o.Correct[lo:hi]}
			if err := b.Logits(0, pl.V); err != nil {
				return err
			}
			if err := b.CrossEntropy(oc, scale != nil, l.tg, l.sc, p); err != nil {
				return err
			}
			if scale != nil {
				_, err := l.grads(0, pl.V)
				return err
			}
			return nil
		})
		if err != nil {
			return err
		}
		for k, i := range pl.Rows {
			out.Set(i, float64(o.Loss[k]), float64(o.LSE[k]), o.Correct[k])
		}
		return nil
	}
	part := make([]ce.Partial, pl.R)
	return l.each(ctx, func(int) error {
		pc, err := l.partials(ctx, part)
		if err != nil {
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

// RunPartials drives b through LinearPartials: dst[i] is merged
// with row i's partial over W's classes.
func RunPartials(ctx context.Context, b Backend, pl Plan, dst []ce.Partial, targets []int32, p *ce.Problem) error {
	return runPartials(ctx, &run{b: b, pl: pl, p: p, targets: targets}, dst)
}

// RunPartialsAt drives b through LinearPartialsAt (device.LinearPicker):
// RunPartials, and z[i·k+j] is row i's logit at W's class cols[i·k+j]
// from the tile that holds it, 0 where that is -1 and in ignored rows.
func RunPartialsAt(ctx context.Context, b Backend, pk Picker, pl Plan, dst []ce.Partial, z []float32, cols []int32, k int, targets []int32, p *ce.Problem) error {
	clear(z)
	l := &run{b: b, pl: pl, p: p, targets: targets}
	l.pick = func(v0, v1 int) error { return pk.Pick(z, cols, k, v0, v1) }
	return runPartials(ctx, l, dst)
}

func runPartials(ctx context.Context, l *run, dst []ce.Partial) error {
	part := make([]ce.Partial, l.pl.R)
	return l.each(ctx, func(int) error {
		pc, err := l.partials(ctx, part)
		if err != nil {
			return err
		}
		for k, i := range l.rows {
			dst[i].Merge(pc[k])
		}
		return nil
	})
}

// RunBackward drives b through LinearBackward, given part[i], row
// i's merged partial, with fix (rows of H; nil: none).
func RunBackward(ctx context.Context, b Backend, pl Plan, scale []float32, fix *ce.Fix, filter float32, targets []int32, part []ce.Partial, p *ce.Problem) error {
	l := &run{b: b, pl: pl, p: p, targets: targets, scale: scale, fix: fix, filter: filter}
	pc := make([]ce.Partial, pl.R)
	return l.each(ctx, func(int) error {
		pc = pc[:len(l.rows)]
		for k, i := range l.rows {
			pc[k] = part[i]
		}
		return l.backward(ctx, pc)
	})
}

// Ranker is the rank pass of a Backend that has one: the ranks of the
// chunk's rows over the tile's classes (cpu's Impl.Ranks), given their
// merged partials.
type Ranker interface {
	Ranks(dst []ce.Rank, targets []int32, part []ce.Partial, p *ce.Problem) error
}

// RunRanks drives b through LinearRanks: dst[i] is merged with row i's
// rank over W's classes, given part[i], its merged partial.
func RunRanks(ctx context.Context, b Ranker, bk Backend, pl Plan, dst []ce.Rank, targets []int32, part []ce.Partial, p *ce.Problem) error {
	l := &run{b: bk, pl: pl, p: p, targets: targets}
	pc := make([]ce.Partial, pl.R)
	tmp := make([]ce.Rank, pl.R)
	return l.each(ctx, func(int) error {
		pc = pc[:len(l.rows)]
		for k, i := range l.rows {
			pc[k] = part[i]
		}
		return l.tiles(ctx, func(_, _ int, p *ce.Problem) error {
			t := tmp[:len(l.rows)]
			clear(t)
			if err := b.Ranks(t, l.tg, pc, p); err != nil {
				return err
			}
			for k, i := range l.rows {
				dst[i].Merge(t[k])
			}
			return nil
		})
	})
}
