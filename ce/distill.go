package ce

import "math"

// Teacher is a teacher's top-k distribution of each row, as a teacher's
// dump gives it: row i's K classes IDs[i*K : (i+1)*K] (distinct classes of
// the vocabulary) and their log-probabilities LogProbs[i*K : (i+1)*K]
// (log p ≤ 0; -Inf for p = 0).
type Teacher struct {
	K        int
	IDs      []int32
	LogProbs []float32
}

// Row returns row i's classes and log-probabilities.
func (t *Teacher) Row(i int) ([]int32, []float32) {
	return t.IDs[i*t.K : (i+1)*t.K], t.LogProbs[i*t.K : (i+1)*t.K]
}

// RowRange returns the teacher of rows [lo, hi).
func (t *Teacher) RowRange(lo, hi int) Teacher {
	return Teacher{K: t.K, IDs: t.IDs[lo*t.K : hi*t.K], LogProbs: t.LogProbs[lo*t.K : hi*t.K]}
}

// TailFloor is the smallest student tail mass the distillation resolves:
// below it (or below the rounding of the sums it is the difference of,
// see Distill) the tail is taken as TailFloor and its gradient as 0, so
// that the gradient's coefficients stay within float32.
const TailFloor = 0x1p-100

// Distillation is one row's top-k distillation (Distill): the KL and the
// coefficients of its gradient with respect to the student's logits z
// (as the loss sees them, before the soft cap's and the temperature's
// chain factors), with q = softmax(z) and p the teacher's:
//
//	dKL/dz_v = Dense·q_v                  off the teacher's support,
//	dKL/dz_j = (Dense + Ratio)·q_j - p_j  on it.
type Distillation struct {
	KL, Dense, Ratio float64
}

// KLPart is what one shard of the vocabulary knows of a row's
// distillation, given the row's Partial merged over the whole vocabulary
// (its max m): over the teacher's classes in the shard, with z_j their
// logits as the loss sees them (capped, divided by the temperature; one
// that another device rounded above m is taken as m) and p_j the
// teacher's probabilities,
//
//	Cross = Σ_j p_j·(log p_j - (z_j - m))   (terms with p_j = 0 left out),
//	E     = Σ_j exp(z_j - m),  the row's first max's (class part.Arg)
//	        as expm1(z_j - m), and HasArg set,
//	Mag   = Σ_j |E's terms|,
//	Mass  = Σ_j p_j.
//
// Parts of disjoint shards taken against the same partial merge by adding
// (Merge), in any order; DistillOf gives the row's distillation from the
// merged one. A shard's part may also be taken against the shard's own
// partial, in the same pass (its max m' in place of m; a row of the shard
// all -Inf adds nothing to E and Mag): MergeKL then merges pairs of
// partials and parts, and carries the parts to the merged partial.
type KLPart struct {
	Cross, E, Mag, Mass float64
	HasArg              bool
}

// Add adds the teacher's class id, of log-probability lp, whose logit (as
// the loss sees it) is z.
func (k *KLPart) Add(part *Partial, id int32, lp, z float32) {
	m := float64(part.Max)
	d := min(float64(z)-m, 0)
	if math.IsInf(float64(z), -1) { // also where m is -Inf: a shard's own partial
		d = math.Inf(-1)
	}
	if p := math.Exp(float64(lp)); p > 0 {
		k.Cross += p * (float64(lp) - d)
		k.Mass += p
	}
	if int(id) == part.Arg && !k.HasArg {
		k.HasArg = true
		e := math.Expm1(d)
		k.E += e
		k.Mag += math.Abs(e)
		return
	}
	e := math.Exp(d)
	k.E += e
	k.Mag += e
}

// Merge adds o, the part of a disjoint shard of the same row.
func (k *KLPart) Merge(o KLPart) {
	k.Cross += o.Cross
	k.E += o.E
	k.Mag += o.Mag
	k.Mass += o.Mass
	k.HasArg = k.HasArg || o.HasArg
}

// MergeKL sets a and ka to the partial and the KL part of the union of
// two disjoint shards of a row (in either order), where ka was taken
// against a and kb against b, each shard's own partial (a shard's
// Loss.PartialsWithKL; the empty partial with a zero part is the
// identity): ka is then taken against the merged partial, as if Add had
// been given it. With m' a part's max and m the merged one, each part's
// Cross gains (m - m')·Mass and its E and Mag are scaled by exp(m' - m),
// the factor Merge rescales the sums by, so that the tail s - E (see
// DistillOf) keeps the shards' own rounding and no more. A part whose
// shard's first max is not the row's gives its term exp(0) back (1, for
// the expm1(0) Add took).
func MergeKL(a *Partial, ka *KLPart, b Partial, kb KLPart) {
	m := *a
	m.Merge(b)
	ka.rebase(a, &m)
	kb.rebase(&b, &m)
	ka.Merge(kb)
	*a = m
}

// rebase carries k, taken against the partial from, to the partial to
// (from merged with others).
func (k *KLPart) rebase(from, to *Partial) {
	if k.HasArg && from.Arg != to.Arg {
		k.E++ // expm1(0) + 1 = exp(0)
		k.Mag++
		k.HasArg = false
	}
	if from.Max == to.Max || math.IsInf(float64(from.Max), -1) { // a shard all -Inf: E is 0, Cross +Inf or 0
		return
	}
	f := ExpTo(from.Max, to.Max)
	k.E *= f
	k.Mag *= f
	if k.Mass > 0 {
		k.Cross += (float64(to.Max) - float64(from.Max)) * k.Mass
	}
}

// Distill returns the distillation of a row over the whole vocabulary:
// DistillOf of the KLPart of the teacher's classes ids (log-probabilities
// lp), whose logits as the loss sees them are z.
func Distill(part *Partial, ids []int32, lp, z []float32) Distillation {
	var k KLPart
	for j, id := range ids {
		k.Add(part, id, lp[j], z[j])
	}
	return DistillOf(part, k, lp)
}

// DistillOf returns KL(teacher ‖ student) of one row over the teacher's K
// classes and one tail bin for the rest of the vocabulary,
//
//	KL = Σ_j p_j·(log p_j - log q_j) + P·(log P - log Q)
//	   = Cross + log s·Σ_j p_j + P·(log P - log Q),
//	P  = max(0, 1 - Σ_j p_j),  Q = 1 - Σ_j q_j,
//
// from the row's partial over the whole vocabulary (its max m and sum s),
// its KLPart merged over the whole vocabulary, and the teacher's K
// log-probabilities lp. A term with p_j = 0 is 0, as is the tail's with
// P = 0. Q·s = s - Σ_j exp(z_j - m) is taken without cancelling the max's
// own term: when the row's first max is among the teacher's classes, it
// is Rest - E (E holding expm1 for the max's term), else 1 + Rest - E. A
// tail below 2^-20 of the sums it is the difference of, or below
// TailFloor, is rounding: Q is that floor and the tail's term is a
// constant (its gradient 0). Then
//
//	Dense = P + Σ_j p_j - P/Q,  Ratio = P/Q   (a resolved tail),
//	Dense = Σ_j p_j,            Ratio = 0     (a floored one).
//
// A NaN or empty sum gives NaN; a student logit of -Inf where p_j > 0
// gives +Inf.
func DistillOf(part *Partial, k KLPart, lp []float32) Distillation {
	ls := part.LogSum()
	if math.IsNaN(ls) {
		nan := math.NaN()
		return Distillation{nan, nan, nan}
	}
	ps := 0.0
	for _, l := range lp {
		ps += math.Exp(float64(l))
	}
	kl := k.Cross + ls*ps
	base := 1 + part.Rest
	if k.HasArg {
		base = part.Rest
	}
	s := 1 + part.Rest
	q := (base - k.E) / s
	floor := max(0x1p-20*(math.Abs(base)+k.Mag)/s, TailFloor)
	P := max(0, 1-ps)
	d := Distillation{Dense: ps}
	if math.IsNaN(q) {
		q = math.NaN()
	} else if q < floor {
		q = floor
	} else if P > 0 {
		d.Ratio = P / q
		d.Dense = P + ps - d.Ratio
	}
	if P > 0 {
		kl += P * (math.Log(P) - math.Log(q))
	}
	d.KL = kl
	return d
}

// Fix is what a gradient needs beyond the cross-entropy's (the top-k
// distillation's, see Distill): Extra[i]·p_j (times the temperature's
// 1/τ, before the soft cap's factor, as the cross-entropy's own a·p_j)
// added to every entry of row i, then K entries of the row set: the
// column of class Cols[i*K+k] (of the vocabulary; where it is the
// matrix's shard's) to Vals[i*K+k], its whole value. Ignored rows get
// their zero row, nothing of Fix.
type Fix struct {
	Extra []float32
	K     int
	Cols  []int32
	Vals  []float32
}

// RowRange returns the fix of rows [lo, hi), nil for a nil f.
func (f *Fix) RowRange(lo, hi int) *Fix {
	if f == nil {
		return nil
	}
	return &Fix{Extra: f.Extra[lo:hi], K: f.K, Cols: f.Cols[lo*f.K : hi*f.K], Vals: f.Vals[lo*f.K : hi*f.K]}
}

// Gather returns the fix of rows (indices of f's rows) in that order, nil
// for a nil f.
func (f *Fix) Gather(rows []int) *Fix {
	if f == nil {
		return nil
	}
	g := &Fix{Extra: make([]float32, len(rows)), K: f.K, Cols: make([]int32, len(rows)*f.K), Vals: make([]float32, len(rows)*f.K)}
	for k, i := range rows {
		g.Extra[k] = f.Extra[i]
		copy(g.Cols[k*f.K:(k+1)*f.K], f.Cols[i*f.K:(i+1)*f.K])
		copy(g.Vals[k*f.K:(k+1)*f.K], f.Vals[i*f.K:(i+1)*f.K])
	}
	return g
}

// FixRow sets a counted row's fix (Fix) for its distillation d, with
// target t (no class weights) of C classes: with the loss (1-α)·CE + α·KL
// and the row's upstream scale si, the Extra coefficient α·si·Dense and
// the entries of the teacher's classes ids, each the cross-entropy's,
// scaled by (1-α)·si, plus α·si·((Dense + Ratio)·q_j - p_j), times 1/τ
// and the soft cap's factor. z are the student's logits at ids as the
// loss sees them; only the entries of classes in the caller's shard are
// used (the others' z may be anything).
func (p *Problem) FixRow(d Distillation, part *Partial, t, C int, ids []int32, lp, z []float32, alpha, si float64, extra *float32, vals []float32) {
	*extra = float32(alpha * si * d.Dense)
	ls := part.LogSum()
	m := float64(part.Max)
	lse := m + ls
	a, b, gt := p.GradTerms((1-alpha)*si, 1, lse, (float64(part.ZT)-m)-ls, C)
	ts := float64(p.TempScale())
	for j, id := range ids {
		q := math.Exp(min(float64(z[j])-m, 0) - ls)
		v := a*q - b
		if int(id) == t {
			v = gt
		}
		v += alpha * si * ts * ((d.Dense+d.Ratio)*q - math.Exp(float64(lp[j])))
		vals[j] = float32(p.CapFactor(v, z[j]))
	}
}
