package ce

import "math"

// Problem is the one description of a cross-entropy below package batch,
// which validates it: the options, and the shard, that is which classes
// of the vocabulary a matrix's columns are. The OpenCL kernels take its
// fields as one argument.
type Problem struct {
	Smoothing float32 // ε in [0, 1]
	ZLoss     float32 // λ ≥ 0
	Softcap   float32 // c > 0, or 0 for none
	// Temperature τ > 0 divides the (capped) logits: the loss is of
	// softmax(cap(z)/τ), its gradient with respect to z; 0 or 1 for none.
	Temperature float32
	Weights     []float32 // per-class weights w of the whole vocabulary (len Vocab), or nil for all 1
	WeightSum   float64   // W = Σ_c w_c over the vocabulary (Vocab when Weights is nil)
	// Col0 and Vocab are the shard: the matrix's columns are classes
	// [Col0, Col0+Cols) of Vocab (0: the matrix's Cols, whole). Targets
	// are classes of the vocabulary.
	Col0, Vocab int
}

// Classes returns the number of classes C of the vocabulary for a matrix
// of cols columns: Vocab, or cols when Vocab is 0.
func (p *Problem) Classes(cols int) int {
	if p.Vocab == 0 {
		return cols
	}
	return p.Vocab
}

// Shard returns p for the columns [lo, ...) of a matrix of cols columns
// that p describes: the same vocabulary, from class Col0+lo.
func (p *Problem) Shard(cols, lo int) *Problem {
	q := *p
	q.Vocab = p.Classes(cols)
	q.Col0 = p.Col0 + lo
	return &q
}

// ShardWeights returns the class weights of the shard's cols columns,
// [Col0, Col0+cols), or nil without weights.
func (p *Problem) ShardWeights(cols int) []float32 {
	if p.Weights == nil {
		return nil
	}
	return p.Weights[p.Col0 : p.Col0+cols]
}

// Weight returns w_t (1 without weights).
func (p *Problem) Weight(t int) float64 {
	if p.Weights == nil {
		return 1
	}
	return float64(p.Weights[t])
}

// Transform returns the load transform of the raw logits x that every
// kernel applies before anything else, the soft cap then the temperature:
//
//	z = c·tanh(x·inv)  when c > 0 (c = Softcap/τ, inv = 1/Softcap),
//	z = x·inv          when c = 0 (inv = 1/τ; 1 without a temperature),
//
// so that cap(x)/τ is one tanh and one multiply, and the soft cap's factor
// in the gradient is 1 - tanh² = 1 - (z/c)² with either. The gradient's
// chain factor beside it is TempScale, 1/τ.
func (p *Problem) Transform() (c, inv float32) {
	s := p.TempScale()
	if p.Softcap > 0 {
		if s == 1 {
			return p.Softcap, 1 / p.Softcap
		}
		return float32(float64(p.Softcap) / float64(p.Temperature)), 1 / p.Softcap
	}
	return 0, s
}

// Apply returns the raw logit x as the loss sees it (Transform): the
// product x·inv in float32, as every kernel computes it, and the soft
// cap's tanh in float64, rounded once (a kernel's own tanh may be ulps
// from it).
func (p *Problem) Apply(x float32) float32 {
	c, inv := p.Transform()
	if c > 0 {
		return float32(float64(c) * math.Tanh(float64(x*inv)))
	}
	return x * inv
}

// TempScale returns 1/τ, 1 without a temperature.
func (p *Problem) TempScale() float32 {
	if p.Temperature == 0 || p.Temperature == 1 {
		return 1
	}
	return 1 / p.Temperature
}

// Identity reports whether Transform leaves the logits as they are (no
// soft cap, no temperature).
func (p *Problem) Identity() bool { return p.Softcap == 0 && p.TempScale() == 1 }

// GradTerms returns, for a counted row with scale si, target weight wt,
// log-sum-exp lse and dt = (z_t - m) - log s over C classes, a and b such
// that dz_j = a·exp(z_j - m)/s - b·w_j off the target (before the soft
// cap's factor), and gt, the target's entry (before it too): with
// A = (1-ε)·w_t + (ε/C)·W + 2λ·lse, a = si·A and b = si·ε/C, si times
// the temperature's chain factor 1/τ (TempScale). p_t - 1 comes from
// expm1, so that nothing cancels as p_t → 1, and p_t from exp, not from
// (p_t - 1) + 1, which loses a small p_t.
func (p *Problem) GradTerms(si, wt, lse, dt float64, C int) (a, b, gt float64) {
	si *= float64(p.TempScale())
	eps, lam := float64(p.Smoothing), float64(p.ZLoss)
	ec := eps / float64(C)
	a = si * ((1-eps)*wt + ec*p.WeightSum + 2*lam*lse)
	gt = si * ((1-eps)*wt*math.Expm1(dt) + (ec*p.WeightSum+2*lam*lse)*math.Exp(dt) - ec*wt)
	return a, si * ec, gt
}

// CapFactor multiplies a gradient entry at logit z (as the loss sees it)
// by the soft cap's factor 1 - tanh² = 1 - (z/c)² with Transform's c
// (nothing without a cap; the temperature's 1/τ is in GradTerms' scale).
func (p *Problem) CapFactor(g float64, z float32) float64 {
	if c, _ := p.Transform(); c > 0 {
		r := float64(z) / float64(c)
		g *= 1 - r*r
	}
	return g
}

// Finish returns the loss, the log-sum-exp and the argmax test of a row
// with target t (a class of the vocabulary, not ignored) from the partial
// of the whole vocabulary of C classes (see the package comment):
//
//	lse  = m + log s,  log s = log1p(Rest)
//	loss = (1-ε)·w_t·((m - z_t) + log s) + (ε/C)·(W·log s - Σ_j w_j·(z_j - m)) + λ·lse²
//
// relative to the max, as PyTorch's log_softmax; log s from log1p, so that
// the loss of a confident row (p_t → 1, loss ≈ 1 - p_t) keeps its relative
// precision. A NaN or empty sum gives NaN, and a NaN loss is never
// correct.
func (p *Problem) Finish(part *Partial, t int, C int) (loss, lse float64, correct bool) {
	ls := part.LogSum()
	if math.IsNaN(ls) {
		return math.NaN(), math.NaN(), false
	}
	mc := float64(part.Max)
	lse = mc + ls
	eps, lam := float64(p.Smoothing), float64(p.ZLoss)
	loss = (1 - eps) * p.Weight(t) * ((mc - float64(part.ZT)) + ls)
	if eps > 0 { // Σ_c w_c·(lse - z_c) = W·ls - Σ_c w_c·(z_c - m)
		loss += eps / float64(C) * (p.WeightSum*ls - part.Dot)
	}
	if lam > 0 {
		loss += lam * lse * lse
	}
	return loss, lse, part.Arg == t && !math.IsNaN(loss)
}

// FinishRows sets each row's results in out from its merged partial over
// the vocabulary of C classes, zeros for ignored rows (target -1).
func (p *Problem) FinishRows(out Out, part []Partial, targets []int32, C int) {
	for i, t := range targets {
		var loss, lse float64
		correct := false
		if t >= 0 {
			loss, lse, correct = p.Finish(&part[i], int(t), C)
		}
		out.Set(i, loss, lse, correct)
	}
}

// Out receives per-row results; a nil slice is not written.
type Out struct {
	Loss    []float32 // per-row loss (0 for ignored rows)
	LSE     []float32 // per-row log-sum-exp of the (capped) logits
	Correct []bool    // per-row argmax == target (false for ignored rows and NaN losses)
}

// Set writes row i's results into the slices of o that are not nil.
func (o Out) Set(i int, loss, lse float64, correct bool) {
	if o.Loss != nil {
		o.Loss[i] = float32(loss)
	}
	if o.LSE != nil {
		o.LSE[i] = float32(lse)
	}
	if o.Correct != nil {
		o.Correct[i] = correct
	}
}
