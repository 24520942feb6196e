package corpus

import (
	"context"
	"fmt"
	"slices"

	"github.com/xentlab/xent/device"
)

// A Pair is the paired statistics of two models' evaluations of the same
// rows (model A's lines and model B's, line by line): each one's total,
// and the Diffs of B − A. Pairs of disjoint lines merge (Merge).
type Pair struct {
	A, B Total
	Diffs
}

// Diffs is the spread of B − A over the clusters (the sequences; each
// row of a 1-D file), of a Pair and of a partial's PairStats: of each
// cluster, B's loss sum less A's and its share of the mean's
// denominator, the same for both, so that the mean of the differences is
// B's mean loss less A's and Diff.StdErr its standard error, paired (the
// clusters' own difficulty cancels). Lower counts the clusters whose
// loss sum B has below A's. AccDiff is the same of the top-1 accuracy: of
// each cluster, B's correct rows less A's and its counted rows; TopKDiff
// of each top-k accuracy and MRRDiff of the MRR, of each row's 1/rank
// (Config.TopK; nil without); KLDiff a teacher's mean KL's
// (Config.Distill; nil without): of each cluster, B's token-weighted KL
// sum less A's and its token weights; DiffPositions the loss's by
// position (Config.SeqLen or ByPosition; nil without), with its spreads.
type Diffs struct {
	Diff          Spread     `json:"diff"`
	AccDiff       Spread     `json:"accuracy_diff"`
	TopKDiff      []Spread   `json:"topk_diff,omitempty"`
	MRRDiff       *Spread    `json:"mrr_diff,omitempty"`
	KLDiff        *Spread    `json:"kl_diff,omitempty"`
	DiffPositions *Positions `json:"diff_by_position,omitempty"`
	Lower         int64      `json:"b_lower"`
}

// Merge adds o, the pair of other lines of the same comparison.
func (p *Pair) Merge(o Pair) error {
	if err := p.A.Merge(o.A); err != nil {
		return err
	}
	if err := p.B.Merge(o.B); err != nil {
		return err
	}
	return p.Diffs.Merge(o.Diffs)
}

// Merge adds o, the differences of other lines of the same comparison.
func (d *Diffs) Merge(o Diffs) error {
	d.Diff.Merge(o.Diff)
	d.AccDiff.Merge(o.AccDiff)
	mergeSpread(&d.KLDiff, o.KLDiff)
	mergeSpread(&d.MRRDiff, o.MRRDiff)
	d.Lower += o.Lower
	if o.DiffPositions != nil {
		if d.DiffPositions == nil {
			d.DiffPositions = new(Positions)
		}
		if err := d.DiffPositions.Merge(o.DiffPositions); err != nil {
			return err
		}
	}
	return mergeSpreads(&d.TopKDiff, o.TopKDiff)
}

// Compare evaluates line a (model A's) and line b (model B's) on dev and
// returns their comparison. They must be of the same rows: as many, of
// the same shape, with the same targets and token weights (an error names
// the first row apart), and of as many classes.
func (e *Evaluator) Compare(ctx context.Context, dev device.Device, a, b Line) (Pair, error) {
	tg, tw, seq, err := e.pairRows(a, b)
	if err != nil {
		return Pair{}, err
	}
	keep := e.cfg.KeepRows
	e.cfg.KeepRows = true // the per-row losses, which the difference takes
	defer func() { e.cfg.KeepRows = keep }()
	ra, err := e.Eval(ctx, dev, a)
	if err != nil {
		return Pair{}, err
	}
	rb, err := e.Eval(ctx, dev, b)
	if err != nil {
		return Pair{}, err
	}
	var q Pair
	sums := clusters{c: -1, done: func(s, w float64) {
		q.Diff.Add(s, w)
		if s < 0 {
			q.Lower++
		}
	}}
	hits := clusters{c: -1, done: q.AccDiff.Add}
	var kl, mrr Spread
	kls, rrs := clusters{c: -1, done: kl.Add}, clusters{c: -1, done: mrr.Add}
	var tops []clusters
	if ks := e.cfg.TopK; ks != nil {
		q.TopKDiff, tops = spreads(len(ks))
	}
	if e.cfg.byPosition() && seq > 0 {
		q.DiffPositions = NewPositions(seq)
		q.DiffPositions.Spread = make([]Spread, seq)
	}
	e.counted(tg, tw, seq, func(i, c int, d float64) {
		sums.add(c, float64(rb.Rows[i])-float64(ra.Rows[i]), d)
		if q.DiffPositions != nil {
			q.DiffPositions.add(i%seq, float64(rb.Rows[i])-float64(ra.Rows[i]), d)
		}
		hits.add(c, one(rb.Correct[i])-one(ra.Correct[i]), 1)
		if e.cfg.Distill {
			kls.add(c, d*(rb.KLRows[i]-ra.KLRows[i]), d)
		}
		for j, k := range e.cfg.TopK {
			tops[j].add(c, one(rb.Greater[i] < int64(k))-one(ra.Greater[i] < int64(k)), 1)
		}
		if e.cfg.TopK != nil {
			rrs.add(c, reciprocal(rb.Greater[i])-reciprocal(ra.Greater[i]), 1)
		}
	})
	sums.flush()
	hits.flush()
	kls.flush()
	rrs.flush()
	for j := range tops {
		tops[j].flush()
	}
	if e.cfg.Distill {
		q.KLDiff = &kl
	}
	if e.cfg.TopK != nil {
		q.MRRDiff = &mrr
	}
	if !keep {
		for _, r := range []*Result{&ra, &rb} {
			r.Rows, r.Correct, r.Greater, r.Entropies, r.KLRows = nil, nil, nil, nil, nil
		}
	}
	q.A, q.B = TotalOf(ra), TotalOf(rb)
	return q, nil
}

// pairRows returns the targets, token weights and sequences' length of
// lines a and b, checking that they are the same rows of as many classes.
func (e *Evaluator) pairRows(a, b Line) (tg []int32, tw []float32, seq int, err error) {
	rows, cols, lead, err := e.shape(a)
	if err != nil {
		return nil, nil, 0, at(a, err)
	}
	tg, tw, seq, err = e.targets(a, rows, cols, lead)
	if err != nil {
		return nil, nil, 0, at(a, err)
	}
	rb, cb, lb, err := e.shape(b)
	if err != nil {
		return nil, nil, 0, at(b, err)
	}
	tb, wb, sb, err := e.targets(b, rb, cb, lb)
	switch {
	case err != nil:
		return nil, nil, 0, at(b, err)
	case rb != rows || !slices.Equal(lb, lead) || sb != seq:
		return nil, nil, 0, at(b, fmt.Errorf("%s: rows %v, model A's (%s) are %v: a comparison is of the same rows", b.RowsFile(), lb, a.RowsFile(), lead))
	case cb != cols:
		return nil, nil, 0, at(b, fmt.Errorf("%s: %d classes, model A's (%s) %d: a comparison is of the same vocabulary", b.RowsFile(), cb, a.RowsFile(), cols))
	}
	for i := range tg {
		if tg[i] != tb[i] {
			return nil, nil, 0, at(b, fmt.Errorf("row %d: target %d, model A's (line %d) %d: a comparison is of the same targets", i, tb[i], a.N, tg[i]))
		}
	}
	if (tw == nil) != (wb == nil) {
		return nil, nil, 0, at(b, fmt.Errorf("token weights on one model's line only (model A's line %d: %v): a comparison weighs both alike", a.N, tw != nil))
	}
	for i := range tw {
		if tw[i] != wb[i] {
			return nil, nil, 0, at(b, fmt.Errorf("row %d: token weight %g, model A's (line %d) %g: a comparison weighs both alike", i, wb[i], a.N, tw[i]))
		}
	}
	return tg, tw, seq, nil
}

// clusters sums per-row values into their clusters, in row order: each
// cluster's sums go to done when the next one starts (and at flush).
type clusters struct {
	c    int // the cluster being summed, -1 for none
	s, w float64
	done func(s, w float64)
}

// add adds s and w to cluster c.
func (k *clusters) add(c int, s, w float64) {
	if c != k.c {
		k.flush()
		k.c = c
	}
	k.s += s
	k.w += w
}

// spreads returns n empty spreads and, for each, the clusters that sum
// into it.
func spreads(n int) ([]Spread, []clusters) {
	sp, cs := make([]Spread, n), make([]clusters, n)
	for j := range cs {
		cs[j] = clusters{c: -1, done: sp[j].Add}
	}
	return sp, cs
}

// flush ends the cluster being summed.
func (k *clusters) flush() {
	if k.c >= 0 {
		k.done(k.s, k.w)
	}
	k.c, k.s, k.w = -1, 0, 0
}

// CheckPair checks lines a and b as Check does, and that they are the
// same rows as Compare takes them, computing nothing; it returns their
// rows.
func (e *Evaluator) CheckPair(a, b Line) (rows int, err error) {
	if _, err := e.Check(a); err != nil {
		return 0, err
	}
	if rows, err = e.Check(b); err != nil {
		return 0, err
	}
	_, _, _, err = e.pairRows(a, b)
	return rows, err
}
