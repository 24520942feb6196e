package batch

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/xentlab/xent/ce"
	"github.com/xentlab/xent/cpu"
	"github.com/xentlab/xent/device"
)

// Teacher is a teacher's top-k distribution of each row (see Distill):
// row i's K classes IDs[i*K : (i+1)*K] and their log-probabilities
// LogProbs[i*K : (i+1)*K].
type Teacher = ce.Teacher

// TeacherMassSlack is how far above 1 a teacher row's mass Σ_j p_j may be
// (its log-probabilities' rounding): 2^-10. The tail 1 - Σ_j p_j is then
// taken as 0.
const TeacherMassSlack = 0x1p-10

// Distill adds top-k distillation from a teacher to every call of the
// loss (Forward, ForwardBackward; a Linear's too): row i's loss becomes
//
//	(1-α)·CE_i + α·KL_i,   α in [0, 1],
//
// with KL_i = KL(teacher ‖ student) over the teacher's K classes and one
// tail bin for the rest of the vocabulary (ce.Distill: the tail's teacher
// mass 1 - Σ_j p_j clamped at 0; a student's tail below its rounding
// floored), of the student's softmax as the loss sees it (capped, divided
// by the temperature), and its gradient with respect to the raw logits.
// Token weights and the reduction apply to the mixed loss as to the
// cross-entropy; Stats.KL is Σ w_i·KL_i. The teacher holds one row per
// row of every call: its classes distinct classes of the vocabulary, its
// log-probabilities ≤ 0 (-Inf for 0) of a mass at most 1 +
// TeacherMassSlack; a row that is not is a *TeacherError. An ignored
// row's entries are not read. The slices are copied. Class weights do not
// combine with it (ErrOption). The student's logits at the teacher's
// classes are gathered where the logits are (device.GatherOf): read from
// host rows, and from a device matrix (Upload; a Linear's W) on its
// device, K a row, the matrix staying there. A Linear's are the partials'
// own products where its device picks them (device.LinearPicker: the CPU,
// OpenCL's linear.cl path, its CLBlast path with Tuning.Pick), so that the
// tail has no error of its own; elsewhere they are computed apart, in
// float64 on the host for a host W, in float32 on W's device for a device
// matrix. With a Shard of the vocabulary, its steps are PartialsWithKL
// (merged with MergeKL: one all-reduce, a Linear's tail exact as above),
// or Partials and then KLPartials (two), then FinishKL and BackwardKL.
func Distill(t Teacher, alpha float64) Option {
	return func(c *config) {
		t.IDs = append([]int32(nil), t.IDs...)
		t.LogProbs = append([]float32(nil), t.LogProbs...)
		c.teacher, c.alpha = &t, alpha
	}
}

// validateTeacher checks the options that combine with a teacher.
func (c *config) validateTeacher() error {
	t := c.teacher
	if t == nil {
		return nil
	}
	switch {
	case !(c.alpha >= 0 && c.alpha <= 1):
		return errorf(ErrOption, "distillation weight α = %g is outside [0, 1]", c.alpha)
	case t.K < 1:
		return errorf(ErrOption, "a teacher's top-k of k = %d: it must be ≥ 1", t.K)
	case len(t.IDs) != len(t.LogProbs) || len(t.IDs)%t.K != 0:
		return errorf(ErrShape, "a teacher's %d classes and %d log-probabilities are not rows of k = %d each", len(t.IDs), len(t.LogProbs), t.K)
	case c.weights != nil:
		return errorf(ErrOption, "class weights do not combine with distillation (the KL has no target class to weight)")
	}
	return nil
}

// teacherShape checks that t's classes and log-probabilities are rows of
// its k ≥ 1 each (a teacher given to a call; Distill's is checked by
// validateTeacher).
func teacherShape(t *ce.Teacher) error {
	if t.K < 1 || len(t.IDs) != len(t.LogProbs) || len(t.IDs)%t.K != 0 {
		return errorf(ErrShape, "a teacher's %d classes and %d log-probabilities are not rows of k = %d each", len(t.IDs), len(t.LogProbs), t.K)
	}
	return nil
}

// checkTeacher validates t's rows of the counted rows of p against a
// vocabulary of vocab classes.
func checkTeacher(t *ce.Teacher, p *prepared, vocab int) error {
	rows := len(p.targets)
	if len(t.IDs) != rows*t.K {
		return errorf(ErrShape, "expected a teacher's %d rows × k = %d classes to match %d rows, got %d rows", rows, t.K, rows, len(t.IDs)/t.K)
	}
	// mark[c] is 1 + the last row whose classes held c, at[c] its entry.
	mark, at := make([]int32, vocab), make([]int32, vocab)
	for i, tg := range p.targets {
		if tg < 0 {
			continue
		}
		ids, lp := t.Row(i)
		mass := 0.0
		for k, id := range ids {
			if id < 0 || int(id) >= vocab {
				return &TeacherError{Row: i, Pos: k, Msg: fmt.Sprintf("class %d is out of bounds [0, %d)", id, vocab)}
			}
			if mark[id] == int32(i+1) {
				return &TeacherError{Row: i, Pos: k, Msg: fmt.Sprintf("class %d appears twice (entries %d and %d)", id, at[id], k)}
			}
			mark[id], at[id] = int32(i+1), int32(k)
			v := float64(lp[k])
			if math.IsNaN(v) || math.IsInf(v, 1) {
				return &TeacherError{Row: i, Pos: k, Msg: fmt.Sprintf("log-probability %g is not a number ≤ 0", v)}
			}
			mass += math.Exp(v)
		}
		if mass > 1+TeacherMassSlack {
			return &TeacherError{Row: i, Pos: -1, Msg: fmt.Sprintf("the probabilities sum to %.6g, more than 1 beyond rounding (%g)", mass, TeacherMassSlack)}
		}
	}
	return nil
}

// KLPart is what a shard of the vocabulary gives for one row's
// distillation (see ce.KLPart): given the row's merged Partial
// (Loss.KLPartials, merged with KLPart.Merge), or the shard's own, from
// the partials' pass (PartialsWithKL, merged with MergeKL); finished by
// FinishKL and BackwardKL.
type KLPart = ce.KLPart

// eachRows runs f over [0, rows) in contiguous ranges, on every core when
// the rows' k entries are many: the host's share of a distillation (an
// entry's exp, log and KL terms cost about 16 of a streaming kernel's
// elements).
func eachRows(rows, k int, f func(lo, hi int)) { cpu.Parallel(rows, 16*k, f) }

// students calls f, on every core, with each counted row i of p, its
// teacher's classes ids and log-probabilities lp, and z, the student's
// logits at them as the loss sees them (capped, divided by the
// temperature) where in[k] (their class is of the shard sh), 0 elsewhere.
// The shard's raw logits at those classes are gathered first, every
// row's in one call of sh.gather.
func students(ctx context.Context, t *ce.Teacher, p *prepared, sh shard, f func(i int, ids []int32, lp, z []float32, in []bool)) error {
	K, rows := t.K, len(p.targets)
	cols := teacherCols(t, p, sh)
	raw := make([]float32, rows*K)
	if err := sh.gather(ctx, raw, cols, K); err != nil {
		return err
	}
	eachRows(rows, K, func(lo, hi int) {
		z, in := make([]float32, K), make([]bool, K)
		for i := lo; i < hi; i++ {
			if p.targets[i] < 0 {
				continue
			}
			ids, lp := t.Row(i)
			n := i * K
			for k, id := range ids {
				j := int(id) - sh.col0
				in[k], z[k] = j >= 0 && j < sh.cols, 0
				if in[k] {
					z[k] = p.prob.Apply(raw[n])
					n++
				}
			}
			f(i, ids, lp, z, in)
		}
	})
	return nil
}

// teacherCols returns the columns of the shard sh that t's classes of
// p's counted rows are, K a row: row i's classes in the shard first, as
// its columns, then -1.
func teacherCols(t *ce.Teacher, p *prepared, sh shard) []int32 {
	K := t.K
	cols := make([]int32, len(p.targets)*K)
	for i, tg := range p.targets {
		c, n := cols[i*K:(i+1)*K], 0
		if tg >= 0 {
			ids, _ := t.Row(i)
			for _, id := range ids {
				if j := int(id) - sh.col0; j >= 0 && j < sh.cols {
					c[n] = int32(j)
					n++
				}
			}
		}
		for ; n < K; n++ {
			c[n] = -1
		}
	}
	return cols
}

// shard is where a call's matrix lies in the vocabulary: its classes
// [col0, col0+cols) of vocab, and gather, which sets z[i·k+j] to row i's
// raw logit at the matrix's column cols[i·k+j] (0 where that is -1).
type shard struct {
	col0, cols, vocab int
	gather            func(ctx context.Context, z []float32, cols []int32, k int) error
}

// klPartials sets kp[i] to the shard's KLPart of each counted row of p
// given part[i], the row's merged partial.
func klPartials(ctx context.Context, kp []KLPart, t *ce.Teacher, p *prepared, sh shard, part []Partial) error {
	return students(ctx, t, p, sh, func(i int, ids []int32, lp, z []float32, in []bool) {
		var k KLPart
		for j, id := range ids {
			if in[j] {
				k.Add(&part[i], id, lp[j], z[j])
			}
		}
		kp[i] = k
	})
}

// newFix returns the empty fix of p's rows for t.
func newFix(t *ce.Teacher, rows int) *ce.Fix {
	return &ce.Fix{Extra: make([]float32, rows), K: t.K, Cols: t.IDs, Vals: make([]float32, rows*t.K)}
}

// fixRow sets row i's fix for its distillation d (ce.Problem.FixRow) and
// scales its upstream factor scale[i] by 1-α, the cross-entropy's share.
func (l *Loss) fixRow(fix *ce.Fix, p *prepared, d ce.Distillation, part *Partial, i, C int, ids []int32, lp, z []float32, scale []float32) {
	k := fix.K
	p.prob.FixRow(d, part, int(p.targets[i]), C, ids, lp, z, l.cfg.alpha, float64(scale[i]), &fix.Extra[i], fix.Vals[i*k:(i+1)*k])
	scale[i] = float32(float64(scale[i]) * (1 - l.cfg.alpha))
}

// mixed returns the per-row results of the counted rows of p from their
// merged partials and KL parts: the loss (1-α)·CE + α·KL, and the KLs.
func (l *Loss) mixed(p *prepared, part []Partial, kp []KLPart, C int) (ce.Out, []float64, error) {
	rows := len(p.targets)
	out := ce.Out{Loss: make([]float32, rows), Correct: make([]bool, rows)}
	if l.cfg.zloss > 0 || l.cfg.keepRows {
		out.LSE = make([]float32, rows)
	}
	kl := make([]float64, rows)
	t, a := l.cfg.teacher, l.cfg.alpha
	for i, tg := range p.targets {
		if tg < 0 {
			continue
		}
		if !part[i].HasT {
			return out, nil, errorf(ErrShape, "row %d: no shard held its target %d (were all shards' partials merged?)", i, tg)
		}
		_, lp := t.Row(i)
		kl[i] = ce.DistillOf(&part[i], kp[i], lp).KL
		loss, lse, correct := p.prob.Finish(&part[i], int(tg), C)
		out.Set(i, (1-a)*loss+a*kl[i], lse, correct)
	}
	return out, kl, nil
}

// reduceKL is reduce with each counted row's KL summed into Stats.KL,
// token-weighted (and kept in Result.KLRows with KeepRows).
func (l *Loss) reduceKL(p *prepared, out ce.Out, kl []float64) Result {
	r := l.reduce(p, out)
	if l.cfg.keepRows {
		r.KLRows = kl
	}
	for i, t := range p.targets {
		if t < 0 {
			continue
		}
		w := 1.0
		if l.cfg.tokens != nil {
			w = float64(l.cfg.tokens[i])
		}
		r.KL += w * kl[i]
	}
	return r
}

// distill runs a call of the whole vocabulary with a teacher: partials
// (the device's pass), then each counted row's KL part and, with a
// gradient (backward not nil), its fix from the student's logits at the
// teacher's classes, and the backward pass with the fix and the
// cross-entropy's scale times 1-α.
func (l *Loss) distill(ctx context.Context, p *prepared, sh shard, partials func([]Partial) error, scale []float32, backward func([]Partial, []float32, *ce.Fix) error) (Result, error) {
	t := l.cfg.teacher
	rows := len(p.targets)
	part := ce.EmptyPartials(rows)
	if rows > 0 {
		if err := partials(part); err != nil {
			return Result{}, err
		}
	}
	kp := make([]KLPart, rows)
	var fix *ce.Fix
	if backward != nil {
		fix = newFix(t, rows)
	}
	err := students(ctx, t, p, sh, func(i int, ids []int32, lp, z []float32, _ []bool) {
		var k KLPart
		for j, id := range ids {
			k.Add(&part[i], id, lp[j], z[j])
		}
		kp[i] = k
		if fix != nil {
			l.fixRow(fix, p, ce.DistillOf(&part[i], k, lp), &part[i], i, sh.vocab, ids, lp, z, scale)
		}
	})
	if err != nil {
		return Result{}, err
	}
	out, kl, err := l.mixed(p, part, kp, sh.vocab)
	if err != nil {
		return Result{}, err
	}
	if fix != nil && rows > 0 {
		if err := backward(part, scale, fix); err != nil {
			return Result{}, err
		}
	}
	return l.reduceKL(p, out, kl), nil
}

// logitsShard returns the shard of p's logits, gathered where they are:
// host rows on the host, a device matrix on its device
// (device.GatherOf).
func (l *Loss) logitsShard(p *prepared) shard {
	x := p.x
	g := device.GatherOf(l.dev, x)
	return shard{col0: p.prob.Col0, cols: x.Cols, vocab: p.prob.Classes(x.Cols), gather: func(ctx context.Context, z []float32, cols []int32, k int) error {
		return g.Gather(ctx, z, x, cols, k)
	}}
}

// linearShard returns the shard of the fused linear lin's logits h_i·w_c
// + b_c: of a host W computed in float64 (rounded once) on the host, of a
// device matrix W on its device, in float32 (device.GatherOf). The
// device's sum s comes from its own float32 products, which may differ
// from these by their rounding; the tail Q (s less these classes' terms)
// is off by as much (see ce.DistillOf), which a tail far below 1
// amplifies in P/Q.
func (l *Linear) linearShard(p *prepared, lin *ce.Linear) shard {
	g := device.GatherOf(l.loss.dev, lin.W)
	return shard{col0: p.prob.Col0, cols: lin.W.Rows, vocab: p.prob.Classes(lin.W.Rows), gather: func(ctx context.Context, z []float32, cols []int32, k int) error {
		return g.LinearGather(ctx, z, lin, cols, k)
	}}
}

// distillLogits runs a call of logits x with a teacher (see distill).
func (l *Loss) distillLogits(ctx context.Context, p *prepared, g *ce.Grad) (Result, error) {
	sh := l.logitsShard(p)
	if err := checkTeacher(l.cfg.teacher, p, sh.vocab); err != nil {
		return Result{}, err
	}
	partials := func(part []Partial) error { return l.dev.Partials(ctx, part, p.x, p.targets, &p.prob) }
	if g == nil {
		return l.distill(ctx, p, sh, partials, nil, nil)
	}
	return l.distill(ctx, p, sh, partials, g.Scale, func(part []Partial, scale []float32, fix *ce.Fix) error {
		gf := *g
		gf.Scale, gf.Fix = scale, fix
		return l.dev.Backward(ctx, gf, p.x, p.targets, part, &p.prob)
	})
}

// distillLinear runs a fused linear call with a teacher (see distill):
// the student's logits at the teacher's classes are h_i·w_c + b_c, from
// the partials' own products where the device picks them (picking).
func (l *Linear) distillLinear(ctx context.Context, p *prepared, lin *ce.Linear, g *ce.LinearGrad) (Result, error) {
	t := l.loss.cfg.teacher
	sh := l.linearShard(p, lin)
	if err := checkTeacher(t, p, sh.vocab); err != nil {
		return Result{}, err
	}
	partials, sh := l.picking(ctx, p, lin, t, sh)
	if g == nil {
		return l.loss.distill(ctx, p, sh, partials, nil, nil)
	}
	return l.loss.distill(ctx, p, sh, partials, g.Scale, func(part []Partial, scale []float32, fix *ce.Fix) error {
		gf := *g
		gf.Scale, gf.Fix = scale, fix
		return l.fused.LinearBackward(ctx, gf, lin, p.targets, part, &p.prob)
	})
}

// PartialsKL is Partials and then KL in one pass over the products: dst
// and kl as those two give them, the Linear's classes the whole
// vocabulary (no Shard, or one of all of it). The student's logits at
// t's classes come from the partials' own products where the device picks
// them (device.LinearPicker), so that the tail (each row's sum less their
// terms) has no error of its own; elsewhere they are computed apart, as
// KL's. t's rows are checked before any work, as KL's.
func (l *Linear) PartialsKL(ctx context.Context, dst []Partial, kl []float64, h, w Matrix, bias []float32, targets []int32, t Teacher) error {
	p, lin, err := l.prepareLinear(h, w, bias, targets)
	if err != nil {
		return err
	}
	switch sh := l.linearShard(p, lin); {
	case len(dst) != h.Rows || len(kl) != h.Rows:
		return errorf(ErrBuffer, "expected %d partials and KLs to match %d rows, got %d and %d", h.Rows, h.Rows, len(dst), len(kl))
	case sh.col0 != 0 || sh.cols != sh.vocab:
		return errorf(ErrOption, "the KL of a shard of the vocabulary: it needs the whole vocabulary's logits (KLPartials takes a shard's)")
	default:
		if err := teacherShape(&t); err != nil {
			return err
		}
		if err := checkTeacher(&t, p, sh.vocab); err != nil {
			return err
		}
		if h.Rows == 0 {
			return nil
		}
		sh, err := l.pickedPartials(ctx, dst, p, lin, &t, sh)
		if err != nil {
			return err
		}
		return klOf(ctx, kl, &t, p, sh, dst)
	}
}

// pickedPartials sets dst[i] to the partial of each counted row i of p
// over lin's classes and returns sh with a gather that reads the
// student's logits at t's classes as that pass gave them, where the
// device picks them (picking).
func (l *Linear) pickedPartials(ctx context.Context, dst []Partial, p *prepared, lin *ce.Linear, t *ce.Teacher, sh shard) (shard, error) {
	for i, tg := range p.targets {
		if tg >= 0 {
			dst[i] = ce.EmptyPartial()
		}
	}
	partials, sh := l.picking(ctx, p, lin, t, sh)
	return sh, partials(dst)
}

// picking returns the partials pass of p's rows over lin's classes
// (merged into its argument, as LinearPartials) and sh with a gather
// that, once that pass has run, reads the student's logits at t's classes
// as the pass's own products gave them, where the device picks them
// (device.LinearPicker: one pass, and the tail, the row's sum less those
// classes' terms, has no error of its own); else they are computed apart
// (linearShard: K·D products a row).
func (l *Linear) picking(ctx context.Context, p *prepared, lin *ce.Linear, t *ce.Teacher, sh shard) (func([]Partial) error, shard) {
	partials := func(part []Partial) error { return l.fused.LinearPartials(ctx, part, lin, p.targets, &p.prob) }
	pk, ok := l.fused.(device.LinearPicker)
	if !ok {
		return partials, sh
	}
	cols := teacherCols(t, p, sh)
	z := make([]float32, len(cols))
	apart, picked := sh.gather, false
	sh.gather = func(ctx context.Context, dst []float32, cols []int32, k int) error {
		if picked { // the same columns (teacherCols)
			copy(dst, z)
			return nil
		}
		return apart(ctx, dst, cols, k)
	}
	return func(part []Partial) error {
		err := pk.LinearPartialsAt(ctx, part, z, cols, t.K, lin, p.targets, &p.prob)
		if errors.Is(err, device.ErrNotImplemented) { // this device's path: computed apart
			return partials(part)
		}
		picked = err == nil
		return err
	}, sh
}

// KLPartials sets dst[i] to row i's KLPart over x's columns (the Loss's
// Shard; the whole vocabulary without one) given part[i], the row's
// partial merged over the whole vocabulary (Partials, merged), for the
// Loss's teacher (Distill): the shard's share of each row's distillation.
// Ignored rows' entries are left as they are. KL parts of the shards
// merge with KLPart.Merge; FinishKL gives the loss and BackwardKL each
// shard's gradient. The student's logits at the teacher's classes are
// gathered where x is (device.GatherOf).
func (l *Loss) KLPartials(ctx context.Context, dst []KLPart, x Matrix, targets []int32, part []Partial) error {
	p, sh, err := l.prepareKL(x, targets, len(dst), part)
	if err != nil {
		return err
	}
	return klPartials(ctx, dst, l.cfg.teacher, p, sh, part)
}

// PartialsWithKL is Partials and KLPartials in one pass, so that a
// distillation over shards of the vocabulary needs one all-reduce, not
// two: dst[i] the partial of row i over x's columns (the Loss's Shard),
// as Partials gives it, and kp[i] its KL part for the Loss's teacher
// (Distill) taken against dst[i], the shard's own partial, not the
// merged one. Pairs of partials and parts of disjoint shards merge with
// MergeKL, in any order and any tree; FinishKL and BackwardKL take the
// merged ones, as they take KLPartials'. Ignored rows' entries are left
// as they are.
func (l *Loss) PartialsWithKL(ctx context.Context, dst []Partial, kp []KLPart, x Matrix, targets []int32) error {
	p, err := l.prepare(x, targets)
	if err != nil {
		return err
	}
	sh := l.logitsShard(p)
	if err := checkShardKL(l.cfg.teacher, p, sh.vocab, len(dst), len(kp)); err != nil || p.x.Rows == 0 {
		return err
	}
	if err := l.dev.Partials(ctx, dst, p.x, p.targets, &p.prob); err != nil {
		return err
	}
	return klPartials(ctx, kp, l.cfg.teacher, p, sh, dst)
}

// MergeKL sets a and ka to the partial and KL part of the union of two
// disjoint shards of a row, each pair from PartialsWithKL or an earlier
// MergeKL (see ce.MergeKL); NewPartials' partial with a zero KLPart is
// the identity.
func MergeKL(a *Partial, ka *KLPart, b Partial, kb KLPart) { ce.MergeKL(a, ka, b, kb) }

// checkShardKL checks what PartialsWithKL takes: a teacher t, a partial
// (np) and a KL part (nk) a row of p, and t's rows against a vocabulary
// of vocab classes.
func checkShardKL(t *ce.Teacher, p *prepared, vocab, np, nk int) error {
	rows := len(p.targets)
	switch {
	case t == nil:
		return errorf(ErrOption, "a distillation's step without a teacher (Distill)")
	case np != rows || nk != rows:
		return errorf(ErrBuffer, "expected %d partials and KL parts to match %d rows, got %d and %d", rows, rows, np, nk)
	}
	return checkTeacher(t, p, vocab)
}

// checkKL checks what the KL's steps take: a teacher t, n outputs (KL
// parts, KLs) and the merged partials of p's rows, and t's rows against a
// vocabulary of vocab classes.
func checkKL(t *ce.Teacher, p *prepared, vocab, n int, part []Partial) error {
	rows := len(p.targets)
	switch {
	case t == nil:
		return errorf(ErrOption, "a distillation's step without a teacher (Distill)")
	case n != rows || len(part) != rows:
		return errorf(ErrBuffer, "expected %d KL parts and partials to match %d rows, got %d and %d", rows, rows, n, len(part))
	}
	if err := teacherShape(t); err != nil {
		return err
	}
	for i, tg := range p.targets {
		if tg >= 0 && !part[i].HasT {
			return errorf(ErrShape, "row %d: no shard held its target %d (were all shards' partials merged?)", i, tg)
		}
	}
	return checkTeacher(t, p, vocab)
}

// prepareKL prepares a KL step on the logits x: the call, its shard, and
// checkKL's checks of n outputs and part.
func (l *Loss) prepareKL(x Matrix, targets []int32, n int, part []Partial) (*prepared, shard, error) {
	p, err := l.prepare(x, targets)
	if err != nil {
		return nil, shard{}, err
	}
	sh := l.logitsShard(p)
	return p, sh, checkKL(l.cfg.teacher, p, sh.vocab, n, part)
}

// FinishKL is Finish of a distillation (Distill): the Result of rows
// whose partials and KL parts over the whole vocabulary (every shard's,
// merged) are part and kp: the mixed loss and Stats.KL.
func (l *Loss) FinishKL(part []Partial, kp []KLPart, targets []int32) (Result, error) {
	p, err := l.prepareMerged("FinishKL", part, targets)
	if err != nil {
		return Result{}, err
	}
	if l.cfg.teacher == nil || len(kp) != len(part) {
		return Result{}, errorf(ErrOption, "FinishKL takes a Distill's Loss and a KL part a row (%d partials, %d KL parts)", len(part), len(kp))
	}
	if err := checkTeacher(l.cfg.teacher, p, l.cfg.vocab); err != nil {
		return Result{}, err
	}
	out, kl, err := l.mixed(p, part, kp, l.cfg.vocab)
	if err != nil {
		return Result{}, err
	}
	return l.reduceKL(p, out, kl), nil
}

// BackwardKL is Backward of a distillation (Distill): the gradient of x's
// columns (the Loss's Shard) given part and kp, the partials and KL parts
// of its rows over the whole vocabulary (every shard's, merged).
func (l *Loss) BackwardKL(ctx context.Context, grad Grad, x Matrix, targets []int32, part []Partial, kp []KLPart, up Upstream) error {
	p, sh, err := l.prepareKL(x, targets, len(kp), part)
	if err != nil {
		return err
	}
	g, err := l.gradOf(p, grad, up)
	if err != nil {
		return err
	}
	if p.x.Rows == 0 {
		return nil
	}
	if g.Fix, err = l.fixOf(ctx, p, sh, part, kp, g.Scale); err != nil {
		return err
	}
	return l.dev.Backward(ctx, *g, p.x, p.targets, part, &p.prob)
}

// fixOf returns the fix of the shard sh of p's rows given their merged
// partials and KL parts, scaling the rows' upstream factors by 1-α.
func (l *Loss) fixOf(ctx context.Context, p *prepared, sh shard, part []Partial, kp []KLPart, scale []float32) (*ce.Fix, error) {
	t := l.cfg.teacher
	fix := newFix(t, len(p.targets))
	err := students(ctx, t, p, sh, func(i int, ids []int32, lp, z []float32, _ []bool) {
		l.fixRow(fix, p, ce.DistillOf(&part[i], kp[i], lp), &part[i], i, sh.vocab, ids, lp, z, scale)
	})
	return fix, err
}

// KL sets dst[i] to KL(teacher ‖ student) of each counted row i of the
// logits x (rows of the whole vocabulary: a Loss of no shard, or of the
// shard of all of it) over t's top-k and a tail bin (see Distill),
// given part[i], row i's partial merged over the whole vocabulary (from
// Partials); an ignored row's is left as it is. It is Distill's KL on the
// partials' path (the calibration's, the ranks'), for a report of both;
// the loss's options apply to the student, t's rows are checked as
// Distill's.
func (l *Loss) KL(ctx context.Context, dst []float64, x Matrix, targets []int32, part []Partial, t Teacher) error {
	p, err := l.prepare(x, targets)
	if err != nil {
		return err
	}
	return klOf(ctx, dst, &t, p, l.logitsShard(p), part)
}

// KL is Loss.KL of the logits h·Wᵀ + bias (the student's logits at the
// teacher's classes as Linear.KLPartials computes them, apart from the
// partials' products: K·D products a row). PartialsKL gives the partials
// and the KL in one pass, the tail without the error that puts in it.
func (l *Linear) KL(ctx context.Context, dst []float64, h, w Matrix, bias []float32, targets []int32, part []Partial, t Teacher) error {
	p, lin, err := l.prepareLinear(h, w, bias, targets)
	if err != nil {
		return err
	}
	return klOf(ctx, dst, &t, p, l.linearShard(p, lin), part)
}

// klOf sets dst[i] to the KL of each counted row of p (t's rows) over the
// whole vocabulary sh from part[i], its merged partial.
func klOf(ctx context.Context, dst []float64, t *ce.Teacher, p *prepared, sh shard, part []Partial) error {
	if sh.col0 != 0 || sh.cols != sh.vocab {
		return errorf(ErrOption, "the KL of a shard of the vocabulary: it needs the whole vocabulary's logits (KLPartials takes a shard's)")
	}
	if err := checkKL(t, p, sh.vocab, len(dst), part); err != nil {
		return err
	}
	return students(ctx, t, p, sh, func(i int, ids []int32, lp, z []float32, _ []bool) {
		dst[i] = ce.Distill(&part[i], ids, lp, z).KL
	})
}

// CheckTeacher checks t against rows of targets (ignore: the ignore index)
// over vocab classes as Distill's and KL's calls do, computing nothing:
// for a program that reads a teacher's files to say what is wrong before
// any work.
func CheckTeacher(t Teacher, targets []int32, ignore, vocab int) error {
	if err := teacherShape(&t); err != nil {
		return err
	}
	p := &prepared{targets: make([]int32, len(targets))}
	for i, v := range targets {
		if int64(v) == int64(ignore) || v < 0 {
			v = -1
		}
		p.targets[i] = v
	}
	return checkTeacher(&t, p, vocab)
}
