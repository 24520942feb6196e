package ce

import "math"

// Problem is the one description of a cross-entropy below package batch,
// which validates it: the options, and the shard, that is which classes
// of the vocabulary a matrix's columns are. The OpenCL kernels take its
// fields as one argument.
type Problem struct {
	Smoothing float32   // ε in [0, 1]
	ZLoss     float32   // λ ≥ 0
	Softcap   float32   // c > 0, or 0 for none
	Weights   []float32 // per-class weights w of the whole vocabulary (len Vocab), or nil for all 1
	WeightSum float64   // W = Σ_c w_c over the vocabulary (Vocab when Weights is nil)
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
