package batch

import "math"

// Stats are the sums behind a reduced loss. Stats of disjoint parts of a
// batch (micro-batches, shards, machines) merge exactly with Merge.
type Stats struct {
	Rows    int64   // rows seen
	Counted int64   // rows whose target is not the ignore index
	Sum     float64 // Σ loss over counted rows (weights, smoothing and z-loss included)
	Denom   float64 // mean denominator: Counted, or Σ over counted rows of w_t (class weights) times the token weight (TokenWeights)
	ZLoss   float64 // Σ λ·lse² over counted rows, token-weighted (already inside Sum)
	Correct int64   // counted rows whose argmax is the target
}

// Ignored returns the number of rows not counted.
func (s Stats) Ignored() int64 { return s.Rows - s.Counted }

// Mean returns Sum / Denom: NaN when nothing is counted, as PyTorch.
func (s Stats) Mean() float64 {
	if s.Denom == 0 {
		return math.NaN()
	}
	return s.Sum / s.Denom
}

// Perplexity returns exp(Mean()).
func (s Stats) Perplexity() float64 { return math.Exp(s.Mean()) }

// Accuracy returns Correct / Counted: the top-1 accuracy over counted rows,
// NaN when nothing is counted.
func (s Stats) Accuracy() float64 {
	if s.Counted == 0 {
		return math.NaN()
	}
	return float64(s.Correct) / float64(s.Counted)
}

// Merge adds the sums of o, a disjoint part of the same evaluation.
func (s *Stats) Merge(o Stats) {
	s.Rows += o.Rows
	s.Counted += o.Counted
	s.Sum += o.Sum
	s.Denom += o.Denom
	s.ZLoss += o.ZLoss
	s.Correct += o.Correct
}
