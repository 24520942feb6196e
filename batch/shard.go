package batch

import (
	"context"
	"math"

	"github.com/xentlab/xent/ce"
	"github.com/xentlab/xent/device"
)

// Partials sets dst[i] to the partial of row i of x, whose columns are the
// classes of the Loss's Shard (the whole vocabulary without one): its max,
// sum of exponentials, argmax and, when the target is among x's classes,
// target logit. Ignored rows' entries are left as they are. Partials of
// disjoint shards merge with Partial.Merge (the sums are float64 and the
// max is exact: an all-reduce may sum them as Merge does); Finish gives
// the loss from the merged partials, and Backward each shard's gradient.
func (l *Loss) Partials(ctx context.Context, dst []Partial, x Matrix, targets []int32) error {
	p, err := l.prepare(x, targets)
	if err != nil {
		return err
	}
	if len(dst) != p.x.Rows {
		return errorf(ErrBuffer, "expected %d partials to match %d rows, got %d", p.x.Rows, p.x.Rows, len(dst))
	}
	if p.x.Rows == 0 {
		return nil
	}
	return l.dev.Partials(ctx, dst, p.x, p.targets, &p.prob)
}

// NewPartials returns rows partials that hold nothing yet: the identity of
// Merge, to merge shards into.
func NewPartials(rows int) []Partial {
	ps := make([]Partial, rows)
	for i := range ps {
		ps[i] = ce.EmptyPartial()
	}
	return ps
}

// Finish returns the Result of rows whose partials over the whole
// vocabulary (every shard's, merged) are part. It needs no device: after
// an all-reduce of partials, every machine finishes alike.
func (l *Loss) Finish(part []Partial, targets []int32) (Result, error) {
	if l.cfg.teacher != nil {
		return Result{}, errorf(ErrOption, "Finish of a distillation: FinishKL takes its KL parts too")
	}
	p, err := l.prepareMerged("Finish", part, targets)
	if err != nil {
		return Result{}, err
	}
	return l.run(p, func(out ce.Out) error {
		return l.eachMerged(p, part, func(i int, loss, lse float64, correct bool) {
			out.Set(i, loss, lse, correct)
		})
	})
}

// prepareMerged checks what Finish, Calibration and RankStats (what)
// take: the Loss has a Shard (the vocabulary's size), and a target for
// each partial.
func (l *Loss) prepareMerged(what string, part []Partial, targets []int32) (*prepared, error) {
	if l.cfg.vocab == 0 {
		return nil, errorf(ErrOption, "%s takes the partials of a Loss with a Shard (it needs the vocabulary's size)", what)
	}
	return l.prepareTargets(len(part), l.cfg.vocab, targets)
}

// eachMerged calls f with each counted row and the loss, lse and argmax
// test of its merged partial (ce.Problem.Finish), or returns the error of
// a row whose target no shard held.
func (l *Loss) eachMerged(p *prepared, part []Partial, f func(i int, loss, lse float64, correct bool)) error {
	for i, t := range p.targets {
		if t < 0 {
			continue
		}
		if !part[i].HasT {
			return errorf(ErrShape, "row %d: no shard held its target %d (were all shards' partials merged?)", i, t)
		}
		loss, lse, correct := p.prob.Finish(&part[i], int(t), l.cfg.vocab)
		f(i, loss, lse, correct)
	}
	return nil
}

// Ranks sets dst[i] to row i's Rank over x's columns (the Loss's Shard,
// the whole vocabulary without one) given part[i], the row's partial
// merged over the whole vocabulary (Partials, merged): how many logits
// are strictly greater than the target's, and the sum behind the
// entropy. Ignored rows' entries are left as they are. It is a pass of
// its own over x (device.RanksOf: the CPU's over host rows, the device's
// over a matrix it holds). Ranks of the shards merge with Rank.Merge;
// RankStats sums them up.
func (l *Loss) Ranks(ctx context.Context, dst []Rank, x Matrix, targets []int32, part []Partial) error {
	p, err := l.prepare(x, targets)
	if err != nil {
		return err
	}
	if len(dst) != p.x.Rows || len(part) != p.x.Rows {
		return errorf(ErrBuffer, "expected %d ranks and partials to match %d rows, got %d and %d", p.x.Rows, p.x.Rows, len(dst), len(part))
	}
	if p.x.Rows == 0 {
		return nil
	}
	return device.RanksOf(l.dev, p.x).Ranks(ctx, dst, p.x, p.targets, part, &p.prob)
}

// RankStats returns the RankStats (top-k accuracy for each k of ks, the
// reciprocal rank, the entropy) of the counted rows whose partials and
// ranks over the whole vocabulary (every shard's, merged) are part and
// ranks. A row whose loss is NaN is never in a top k, its reciprocal
// rank is 0 and its entropy NaN (so is the mean's).
func (l *Loss) RankStats(ks []int, part []Partial, ranks []Rank, targets []int32) (RankStats, error) {
	s, err := NewRankStats(ks)
	if err != nil {
		return RankStats{}, err
	}
	if len(ranks) != len(part) {
		return RankStats{}, errorf(ErrBuffer, "expected %d ranks to match %d partials, got %d", len(part), len(part), len(ranks))
	}
	p, err := l.prepareMerged("RankStats", part, targets)
	if err != nil {
		return RankStats{}, err
	}
	err = l.eachMerged(p, part, func(i int, loss, _ float64, _ bool) {
		s.add(math.IsNaN(loss), ranks[i].Greater, ranks[i].Entropy(&part[i]))
	})
	return s, err
}

// Calibration returns the Calibration of the counted rows whose partials
// over the whole vocabulary (every shard's, merged) are part, as Finish
// takes them: the confidences and argmax of the rows' Finish, so that
// its Correct rows are Stats.Correct's.
func (l *Loss) Calibration(part []Partial, targets []int32) (Calibration, error) {
	p, err := l.prepareMerged("Calibration", part, targets)
	if err != nil {
		return Calibration{}, err
	}
	var cal Calibration
	err = l.eachMerged(p, part, func(i int, _, _ float64, correct bool) {
		cal.Add(part[i].Confidence(), correct)
	})
	return cal, err
}

// Backward writes into grad the gradient of x's columns (the Loss's
// Shard) given part, the partials of its rows over the whole vocabulary
// (every shard's, merged), and dL/dloss up. grad may be InPlace(x) for an
// in-place gradient, as in ForwardBackward.
func (l *Loss) Backward(ctx context.Context, grad Grad, x Matrix, targets []int32, part []Partial, up Upstream) error {
	if l.cfg.teacher != nil {
		return errorf(ErrOption, "Backward of a distillation: BackwardKL takes its KL parts too")
	}
	p, err := l.prepare(x, targets)
	if err != nil {
		return err
	}
	if len(part) != p.x.Rows {
		return errorf(ErrBuffer, "expected %d partials to match %d rows, got %d", p.x.Rows, p.x.Rows, len(part))
	}
	g, err := l.gradOf(p, grad, up)
	if err != nil {
		return err
	}
	if p.x.Rows == 0 {
		return nil
	}
	return l.dev.Backward(ctx, *g, p.x, p.targets, part, &p.prob)
}
