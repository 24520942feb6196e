package batch

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"sync"

	"github.com/xentlab/xent/ce"
)

// Teacher is a teacher's top-k distribution of each row (see Distill):
// row i's K classes IDs[i*K : (i+1)*K] and their log-probabilities
// LogProbs[i*K : (i+1)*K].
type Teacher = ce.Teacher

// ErrTeacher is matched by every error about a teacher's data (TeacherError).
var ErrTeacher = fmt.Errorf("batch: bad teacher data")

// TeacherError is the error for a teacher's entry that is not a
// distribution's: errors.As gives the row, the position in it and what
// is wrong; it matches ErrTeacher with errors.Is.
type TeacherError struct {
	Row, Pos int    // the row and the position of the entry among its K (-1: the row's)
	Msg      string // what is wrong
}

func (e *TeacherError) Error() string {
	if e.Pos < 0 {
		return fmt.Sprintf("batch: teacher row %d: %s", e.Row, e.Msg)
	}
	return fmt.Sprintf("batch: teacher row %d, entry %d: %s", e.Row, e.Pos, e.Msg)
}

// Unwrap returns ErrTeacher.
func (e *TeacherError) Unwrap() error { return ErrTeacher }

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
// TeacherMassSlack. An ignored row's entries are not read. The slices are
// copied. Class weights and shards of the vocabulary do not combine with
// it (ErrOption), nor do device matrices (ErrOption: the student's logits
// at the teacher's classes are read on the host).
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
	case c.vocab > 0:
		return errorf(ErrOption, "distillation of a shard of the vocabulary: the KL needs every class's partial and the teacher's classes' logits")
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
			if math.IsNaN(v) || v > 0 && math.IsInf(v, 1) {
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

// distillCall is a call with a teacher: its steps on the device, whatever
// the input (logits, the fused linear).
type distillCall struct {
	partials func(part []Partial) error
	// gather returns a gatherer, one a goroutine: it sets z to the
	// student's raw logits of row i at ids.
	gather   func() gatherer
	backward func(part []Partial, scale []float32, fix *ce.Fix) error // nil: no gradient
	scale    []float32                                                // the gradient's per-row scales (scales), with backward
	classes  int                                                      // C, the vocabulary's
}

// distill runs c: the partials of the whole vocabulary, then each counted
// row's cross-entropy (ce.Problem.Finish) and distillation (ce.Distill)
// from its partial and the student's logits at the teacher's classes,
// and with a gradient the backward pass with their fix (ce.Fix): the
// cross-entropy's scale times 1-α.
func (l *Loss) distill(p *prepared, c distillCall) (Result, error) {
	rows := len(p.targets)
	t, alpha := l.cfg.teacher, l.cfg.alpha
	out := ce.Out{Loss: make([]float32, rows), Correct: make([]bool, rows)}
	if l.cfg.zloss > 0 || l.cfg.keepRows {
		out.LSE = make([]float32, rows)
	}
	kl := make([]float64, rows)
	if rows == 0 {
		return l.reduceKL(p, out, kl), nil
	}
	part := ce.EmptyPartials(rows)
	if err := c.partials(part); err != nil {
		return Result{}, err
	}
	var fix *ce.Fix
	if c.backward != nil {
		fix = &ce.Fix{Extra: make([]float32, rows), K: t.K, Cols: t.IDs, Vals: make([]float32, len(t.IDs))}
	}
	C := c.classes
	eachRows(rows, t.K, func(lo, hi int) {
		gather, z := c.gather(), make([]float32, t.K)
		for i := lo; i < hi; i++ {
			tg := p.targets[i]
			if tg < 0 {
				out.Set(i, 0, 0, false)
				continue
			}
			ids, lp := t.Row(i)
			student(p, gather, i, ids, z)
			loss, lse, correct := p.prob.Finish(&part[i], int(tg), C)
			var d ce.Distillation
			if fix != nil {
				d = p.prob.DistillRow(&part[i], int(tg), C, ids, lp, z, alpha, float64(c.scale[i]), &fix.Extra[i], fix.Vals[i*t.K:(i+1)*t.K])
				c.scale[i] = float32(float64(c.scale[i]) * (1 - alpha))
			} else {
				d = ce.Distill(&part[i], ids, lp, z)
			}
			kl[i] = d.KL
			out.Set(i, (1-alpha)*loss+alpha*d.KL, lse, correct)
		}
	})
	if fix != nil {
		if err := c.backward(part, c.scale, fix); err != nil {
			return Result{}, err
		}
	}
	return l.reduceKL(p, out, kl), nil
}

// reduceKL is reduce with each counted row's KL summed into Stats.KL,
// token-weighted.
func (l *Loss) reduceKL(p *prepared, out ce.Out, kl []float64) Result {
	r := l.reduce(p, out)
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

// distillLogits runs a call of logits x with a teacher (see distill).
func (l *Loss) distillLogits(ctx context.Context, p *prepared, g *ce.Grad) (Result, error) {
	if p.x.Buf != nil {
		return Result{}, errorf(ErrOption, "distillation of a device matrix: the logits at the teacher's classes are read on the host")
	}
	if err := checkTeacher(l.cfg.teacher, p, p.x.Cols); err != nil {
		return Result{}, err
	}
	c := distillCall{
		classes:  p.x.Cols,
		partials: func(part []Partial) error { return l.dev.Partials(ctx, part, p.x, p.targets, &p.prob) },
		gather:   logitsAt(p.x),
	}
	if g != nil {
		c.scale = g.Scale
		c.backward = func(part []Partial, scale []float32, fix *ce.Fix) error {
			gf := *g
			gf.Scale, gf.Fix = scale, fix
			return l.dev.Backward(ctx, gf, p.x, p.targets, part, &p.prob)
		}
	}
	return l.distill(p, c)
}

// distillLinear runs a fused linear call with a teacher (see distill):
// the student's logits at the teacher's classes are h_i·w_c + b_c, in
// float64 on the host (K·D products a row).
func (l *Linear) distillLinear(ctx context.Context, p *prepared, lin *ce.Linear, g *ce.LinearGrad) (Result, error) {
	if lin.W.Buf != nil {
		return Result{}, errorf(ErrOption, "distillation with a device matrix W: the logits at the teacher's classes are computed on the host")
	}
	if err := checkTeacher(l.loss.cfg.teacher, p, lin.W.Rows); err != nil {
		return Result{}, err
	}
	c := distillCall{
		classes:  lin.W.Rows,
		partials: func(part []Partial) error { return l.fused.LinearPartials(ctx, part, lin, p.targets, &p.prob) },
		gather:   linearAt(lin),
	}
	if g != nil {
		c.scale = g.Scale
		c.backward = func(part []Partial, scale []float32, fix *ce.Fix) error {
			gf := *g
			gf.Scale, gf.Fix = scale, fix
			return l.fused.LinearBackward(ctx, gf, lin, p.targets, part, &p.prob)
		}
	}
	return l.loss.distill(p, c)
}

// A gatherer sets z to row i's raw logits at the classes ids.
type gatherer func(i int, ids []int32, z []float32)

// eachRows runs f over [0, rows) in contiguous ranges, on up to
// GOMAXPROCS goroutines when the rows' k entries are many: the host's
// share of a distillation (its gathers miss the cache).
func eachRows(rows, k int, f func(lo, hi int)) {
	workers := min(runtime.GOMAXPROCS(0), max(1, rows*k/4096))
	if workers <= 1 {
		f(0, rows)
		return
	}
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := rows*w/workers, rows*(w+1)/workers
		wg.Go(func() { f(lo, hi) })
	}
	wg.Wait()
}

// student sets z to row i's logits at ids as p's loss sees them (capped,
// divided by the temperature), from gather's raw ones.
func student(p *prepared, gather gatherer, i int, ids []int32, z []float32) {
	gather(i, ids, z)
	for k := range z {
		z[k] = p.prob.Apply(z[k])
	}
}

// logitsAt returns the gatherers of host logits x.
func logitsAt(x Matrix) func() gatherer {
	return func() gatherer {
		return func(i int, ids []int32, z []float32) {
			for k, id := range ids {
				z[k] = x.At(i, int(id))
			}
		}
	}
}

// linearAt returns the gatherers of the fused linear lin: h_i·w_c + b_c
// at the classes c of ids, in float64 (rounded once).
func linearAt(lin *ce.Linear) func() gatherer {
	return func() gatherer {
		return linearGather(lin)
	}
}

// linearGather returns a gatherer of lin, with a row of its own.
func linearGather(lin *ce.Linear) gatherer {
	h := make([]float64, lin.H.Cols)
	return func(i int, ids []int32, z []float32) {
		for d := range h {
			h[d] = float64(lin.H.At(i, d))
		}
		for k, id := range ids {
			s := 0.0
			for d, v := range h {
				s += v * float64(lin.W.At(int(id), d))
			}
			if lin.Bias != nil {
				s += float64(lin.Bias[id])
			}
			z[k] = float32(s)
		}
	}
}

// klRows sets dst[i] to the KL of each counted row of p (t's rows, checked
// against vocab classes) from part[i], its partial merged over the whole
// vocabulary, and gather, the student's raw logits at t's classes.
func klRows(dst []float64, t *ce.Teacher, p *prepared, vocab int, part []Partial, gather func() gatherer) error {
	switch {
	case len(dst) != len(p.targets) || len(part) != len(p.targets):
		return errorf(ErrBuffer, "expected %d KLs and partials to match %d rows, got %d and %d", len(p.targets), len(p.targets), len(dst), len(part))
	case t.K < 1 || len(t.IDs) != len(t.LogProbs) || len(t.IDs)%t.K != 0:
		return errorf(ErrShape, "a teacher's %d classes and %d log-probabilities are not rows of k = %d each", len(t.IDs), len(t.LogProbs), t.K)
	case p.prob.Col0 != 0 || p.prob.Vocab != 0 && p.prob.Vocab != vocab:
		return errorf(ErrOption, "the KL of a shard of the vocabulary: it needs the whole vocabulary's logits")
	}
	if err := checkTeacher(t, p, vocab); err != nil {
		return err
	}
	for i, tg := range p.targets {
		if tg >= 0 && !part[i].HasT {
			return errorf(ErrShape, "row %d: its partial holds no target (were all shards' partials merged?)", i)
		}
	}
	eachRows(len(p.targets), t.K, func(lo, hi int) {
		g, z := gather(), make([]float32, t.K)
		for i := lo; i < hi; i++ {
			if p.targets[i] >= 0 {
				ids, lp := t.Row(i)
				student(p, g, i, ids, z)
				dst[i] = ce.Distill(&part[i], ids, lp, z).KL
			}
		}
	})
	return nil
}

// KL sets dst[i] to KL(teacher ‖ student) of each counted row i of the
// logits x (host rows of the whole vocabulary: a Loss of no shard, or of
// the shard of all of it) over t's top-k and a tail bin (see Distill),
// given part[i], row i's partial merged over the whole vocabulary (from
// Partials); an ignored row's is left as it is. It is Distill's KL on the
// partials' path (the calibration's, the ranks'), for a report of both;
// the loss's options apply to the student, t's rows are checked as
// Distill's.
func (l *Loss) KL(dst []float64, x Matrix, targets []int32, part []Partial, t Teacher) error {
	p, err := l.prepare(x, targets)
	if err != nil {
		return err
	}
	if p.x.Buf != nil {
		return errorf(ErrOption, "the KL of a device matrix: the logits at the teacher's classes are read on the host")
	}
	return klRows(dst, &t, p, p.x.Cols, part, logitsAt(p.x))
}

// KL is Loss.KL of the logits h·Wᵀ + bias (the student's logits at the
// teacher's classes computed on the host, K·D products a row).
func (l *Linear) KL(dst []float64, h, w Matrix, bias []float32, targets []int32, part []Partial, t Teacher) error {
	p, lin, err := l.prepareLinear(h, w, bias, targets)
	if err != nil {
		return err
	}
	if lin.W.Buf != nil {
		return errorf(ErrOption, "the KL with a device matrix W: the logits at the teacher's classes are computed on the host")
	}
	return klRows(dst, &t, p, lin.W.Rows, part, linearAt(lin))
}

// CheckTeacher checks t against rows of targets (ignore: the ignore index)
// over vocab classes as Distill's and KL's calls do, computing nothing:
// for a program that reads a teacher's files to say what is wrong before
// any work.
func CheckTeacher(t Teacher, targets []int32, ignore, vocab int) error {
	if t.K < 1 || len(t.IDs) != len(t.LogProbs) || len(t.IDs)%t.K != 0 {
		return errorf(ErrShape, "a teacher's %d classes and %d log-probabilities are not rows of k = %d each", len(t.IDs), len(t.LogProbs), t.K)
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
