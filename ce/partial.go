package ce

import "math"

// Partial is what one shard of the vocabulary knows of one row: partials
// of disjoint shards merge (Merge) into the partial of their union, and
// the partial of the whole vocabulary gives the loss (Problem.Finish) and
// the gradient. With z the (capped) logits of the shard's columns and m =
// Max:
type Partial struct {
	Max float32 // m = max_j z_j, -Inf when every z_j is -Inf
	// Rest is Σ_j exp(z_j - m) - 1: the sum of the exponentials less the
	// first max's own term, exp(0) = 1, summed without it, so that it keeps
	// its relative precision however small it is (p_max → 1, where 1 + Rest
	// would round to 1). -1 when every z_j is -Inf (the sum is 0), NaN
	// when one is NaN or +Inf.
	Rest float64
	Dot  float64 // Σ_j w_j·(z_j - m), with smoothing only
	WSum float64 // Σ_j w_j, with smoothing only
	// ArgMax is the max of the raw logits (before the soft cap, which is
	// monotonic: raw values are the same on every device, capped ones may
	// round apart) and Arg the first class with it (of the vocabulary),
	// -1 when every logit is -Inf.
	ArgMax float32
	Arg    int
	ZT     float32 // the target's logit, when the target is in the shard
	HasT   bool    // whether the target is in the shard
}

// Rank is what one shard of the vocabulary knows of a row's rank and
// entropy, given the row's Partial merged over the whole vocabulary (its
// max m and target logit z_t, as the loss sees them: capped, divided by
// the temperature): how many of the shard's logits are strictly greater
// than z_t (NaN is not), and Σ_j exp(z_j - m)·(z_j - m) over its columns
// (a -Inf logit adds 0; NaN or +Inf make it NaN). Ranks of disjoint
// shards merge by adding (Merge). With s = 1 + Rest of the merged
// partial, the target's rank is 1 + Greater and the softmax's entropy
//
//	H = -Σ_j p_j·log p_j = log s - Ent/s,  p_j = exp(z_j - m)/s.
type Rank struct {
	Greater int64
	Ent     float64
}

// Merge adds o, the rank of a disjoint shard of the same row.
func (r *Rank) Merge(o Rank) {
	r.Greater += o.Greater
	r.Ent += o.Ent
}

// Entropy returns the softmax's entropy of a row whose partial over the
// whole vocabulary is part and rank r: NaN when the partial's sum is.
func (r *Rank) Entropy(part *Partial) float64 {
	ls := part.LogSum()
	if math.IsNaN(ls) {
		return math.NaN()
	}
	return ls - r.Ent/(1+part.Rest)
}

// EmptyPartial returns the partial of no column, the identity of Merge.
func EmptyPartial() Partial {
	ninf := float32(math.Inf(-1))
	return Partial{Max: ninf, Rest: -1, ArgMax: ninf, Arg: -1}
}

// EmptyPartials returns n partials of no column.
func EmptyPartials(n int) []Partial {
	ps := make([]Partial, n)
	for i := range ps {
		ps[i] = EmptyPartial()
	}
	return ps
}

// LogSum returns log Σ_j exp(z_j - m) = log1p(Rest): NaN for a NaN sum or
// an empty one (every z_j -Inf).
func (a *Partial) LogSum() float64 {
	if !(a.Rest > -1) {
		return math.NaN()
	}
	return math.Log1p(a.Rest)
}

// Confidence returns the largest probability of the softmax, 1/Σ_j
// exp(z_j - m) = exp(-LogSum()): NaN for a NaN sum or an empty one.
func (a *Partial) Confidence() float64 {
	ls := a.LogSum()
	if math.IsNaN(ls) {
		return math.NaN()
	}
	return math.Exp(-ls)
}

// Merge sets a to the partial of the union of a's shard and b's (any two
// disjoint shards, in either order; ties of the max go to the smaller
// class). It is exact but for the rounding of the rescaled sums.
func (a *Partial) Merge(b Partial) {
	if b.HasT {
		a.ZT, a.HasT = b.ZT, true
	}
	if b.ArgMax > a.ArgMax || b.ArgMax == a.ArgMax && b.Arg >= 0 && (a.Arg < 0 || b.Arg < a.Arg) {
		a.Arg = b.Arg
	}
	a.ArgMax = max(a.ArgMax, b.ArgMax)
	m := max(a.Max, b.Max)
	da, db := a.Dot, b.Dot
	// A partial is rescaled to m (its Max < m, so m is finite or +Inf); one
	// of nothing but -Inf has no exps to rescale, and its Dot's terms are
	// w_j·(-Inf), -Inf or NaN, relative to any max. The merged Rest leaves
	// out the term of one max only: a partial at m brings its Rest, and
	// each other one its whole sum, 1 + Rest, times exp(Max - m).
	var rest float64
	switch {
	case math.IsNaN(a.Rest) || math.IsNaN(b.Rest):
		rest = math.NaN()
	case math.IsInf(float64(m), -1): // both empty
		rest = -1
	case a.Max == m && b.Max == m:
		rest = a.Rest + (1 + b.Rest)
	case a.Max == m:
		rest = a.Rest + (1+b.Rest)*ExpTo(b.Max, m)
	default:
		rest = b.Rest + (1+a.Rest)*ExpTo(a.Max, m)
	}
	if a.Max != m && !math.IsInf(float64(a.Max), -1) {
		da += (float64(a.Max) - float64(m)) * a.WSum
	}
	if b.Max != m && !math.IsInf(float64(b.Max), -1) {
		db += (float64(b.Max) - float64(m)) * b.WSum
	}
	a.Max, a.Rest, a.Dot, a.WSum = m, rest, da+db, a.WSum+b.WSum
}

// ExpTo returns exp(r - m) for a reference r ≤ m (0 for r = -Inf).
func ExpTo(r, m float32) float64 {
	if math.IsInf(float64(r), -1) {
		return 0
	}
	return math.Exp(float64(r) - float64(m))
}
