package batch

import (
	"math"
	"slices"
)

// Stats are the sums behind a reduced loss. Stats of disjoint parts of a
// batch (micro-batches, shards, machines) merge exactly with Merge.
type Stats struct {
	Rows    int64   // rows seen
	Counted int64   // rows whose target is not the ignore index
	Sum     float64 // Σ loss over counted rows (weights, smoothing and z-loss included)
	Denom   float64 // mean denominator: Counted, or Σ over counted rows of w_t (class weights) times the token weight (TokenWeights)
	ZLoss   float64 // Σ λ·lse² over counted rows, token-weighted (inside Sum, times 1-α with Distill)
	Correct int64   // counted rows whose argmax is the target
	KL      float64 // Σ KL over counted rows, token-weighted, with Distill (α·KL is inside Sum)
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
	s.KL += o.KL
}

// MeanKL returns KL / Denom, the mean distillation KL (NaN when nothing
// is counted).
func (s Stats) MeanKL() float64 {
	if s.Denom == 0 {
		return math.NaN()
	}
	return s.KL / s.Denom
}

// CalibrationBins is the number of equal-width confidence bins of a
// Calibration: 15, as Guo et al. (2017) and most reports since.
const CalibrationBins = 15

// Calibration are the sums behind the expected calibration error (ECE) of
// counted rows. A row's confidence is its largest softmax probability,
// max_j p_j = 1/Σ_j exp(z_j - max z), of the logits as the loss sees them
// (soft-capped, divided by the temperature); it is correct when its argmax
// is its target (Stats.Correct's test). Bin k holds the rows of confidence
// in [k/15, (k+1)/15), the last one 1 too. Rows count alike, whatever
// their class or token weight. Calibrations of disjoint parts of an
// evaluation merge exactly with Merge.
type Calibration struct {
	Rows    [CalibrationBins]int64   `json:"rows"`    // counted rows in each bin
	Conf    [CalibrationBins]float64 `json:"conf"`    // their confidences' sum
	Correct [CalibrationBins]int64   `json:"correct"` // how many of them are correct
	NaN     int64                    `json:"nan"`     // counted rows without a confidence (NaN or +Inf logits, only -Inf): in no bin
}

// Add bins one counted row of confidence conf (NaN: counted in NaN).
func (c *Calibration) Add(conf float64, correct bool) {
	if math.IsNaN(conf) {
		c.NaN++
		return
	}
	k := min(max(int(conf*CalibrationBins), 0), CalibrationBins-1)
	c.Rows[k]++
	c.Conf[k] += conf
	if correct {
		c.Correct[k]++
	}
}

// Binned returns the rows in the bins.
func (c *Calibration) Binned() int64 {
	var n int64
	for _, r := range c.Rows {
		n += r
	}
	return n
}

// ECE returns the expected calibration error, Σ_k (n_k/N)·|conf_k -
// acc_k| = Σ_k |Σ conf - correct_k| / N over the N binned rows (conf_k and
// acc_k are bin k's mean confidence and accuracy): NaN when no row is
// binned.
func (c *Calibration) ECE() float64 {
	n := c.Binned()
	if n == 0 {
		return math.NaN()
	}
	e := 0.0
	for k := range c.Rows {
		e += math.Abs(c.Conf[k] - float64(c.Correct[k]))
	}
	return e / float64(n)
}

// Merge adds the sums of o, a disjoint part of the same evaluation.
func (c *Calibration) Merge(o Calibration) {
	for k := range c.Rows {
		c.Rows[k] += o.Rows[k]
		c.Conf[k] += o.Conf[k]
		c.Correct[k] += o.Correct[k]
	}
	c.NaN += o.NaN
}

// MaxTopK is the largest k of RankStats' top-k accuracies.
const MaxTopK = 1 << 20

// RankStats are the sums behind the rank metrics of counted rows: for
// each k of K, how many rows' targets are among the top k (fewer than k
// logits strictly greater than the target's: ties go the target's way),
// the sum of the reciprocal ranks 1/(1 + greater) and of the softmax's
// entropies -Σ p log p (nats). A row whose loss is NaN is never in a
// top k and has a reciprocal rank of 0 and a NaN entropy. Rows count
// alike, whatever their class or token weight. RankStats of disjoint
// parts of an evaluation with the same K merge exactly with Merge.
type RankStats struct {
	K       []int   `json:"k"`
	TopK    []int64 `json:"topk"`
	RR      float64 `json:"rr"`
	Entropy float64 `json:"entropy"`
	Counted int64   `json:"counted"`
}

// NewRankStats returns empty RankStats for the k of ks (each in [1,
// MaxTopK], ascending, none twice; none is allowed).
func NewRankStats(ks []int) (RankStats, error) {
	for i, k := range ks {
		if k < 1 || k > MaxTopK || i > 0 && k <= ks[i-1] {
			return RankStats{}, errorf(ErrOption, "top-k list %v: want ascending k in [1, %d], none twice", ks, MaxTopK)
		}
	}
	return RankStats{K: append([]int(nil), ks...), TopK: make([]int64, len(ks))}, nil
}

// add counts one row: nan when its loss is NaN, greater the logits
// strictly above its target's, h its entropy.
func (s *RankStats) add(nan bool, greater int64, h float64) {
	s.Counted++
	if nan {
		s.Entropy = math.NaN() // and stays NaN
		return
	}
	for i, k := range s.K {
		if greater < int64(k) {
			s.TopK[i]++
		}
	}
	s.RR += 1 / float64(1+greater)
	s.Entropy += h
}

// TopKAccuracy returns the top-k accuracy for the i-th k of K: NaN when
// nothing is counted.
func (s RankStats) TopKAccuracy(i int) float64 { return ratio(float64(s.TopK[i]), s.Counted) }

// MRR returns the mean reciprocal rank of the target: NaN when nothing
// is counted.
func (s RankStats) MRR() float64 { return ratio(s.RR, s.Counted) }

// MeanEntropy returns the mean entropy of the softmax (nats): NaN when
// nothing is counted.
func (s RankStats) MeanEntropy() float64 { return ratio(s.Entropy, s.Counted) }

func ratio(sum float64, n int64) float64 {
	if n == 0 {
		return math.NaN()
	}
	return sum / float64(n)
}

// Merge adds the sums of o, a disjoint part of the same evaluation (the
// same K).
func (s *RankStats) Merge(o RankStats) error {
	if !slices.Equal(s.K, o.K) {
		return errorf(ErrOption, "rank statistics of top-k %v merged with %v", s.K, o.K)
	}
	for i := range s.TopK {
		s.TopK[i] += o.TopK[i]
	}
	s.RR += o.RR
	s.Entropy += o.Entropy
	s.Counted += o.Counted
	return nil
}
