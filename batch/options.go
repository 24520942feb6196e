package batch

import (
	"fmt"
	"math"

	"github.com/xentlab/xent/ce"
)

// Reduction says how per-row losses are reduced, as PyTorch's reduction.
type Reduction int

const (
	Mean Reduction = iota // sum over counted rows / denominator (PyTorch's default)
	Sum                   // sum over counted rows
	None                  // per-row losses in Result.Losses
)

func (r Reduction) String() string {
	switch r {
	case Mean:
		return "mean"
	case Sum:
		return "sum"
	case None:
		return "none"
	}
	return fmt.Sprintf("Reduction(%d)", int(r))
}

// ParseReduction parses "mean", "sum" or "none".
func ParseReduction(s string) (Reduction, error) {
	for _, r := range []Reduction{Mean, Sum, None} {
		if r.String() == s {
			return r, nil
		}
	}
	return 0, errorf(ErrOption, "reduction %q is not one of mean, sum, none", s)
}

// DefaultIgnoreIndex is PyTorch's default ignore_index.
const DefaultIgnoreIndex = -100

type config struct {
	ignore    int64
	reduction Reduction
	smoothing float64
	zloss     float64
	softcap   float64
	temp      float64 // τ (Temperature), 1 for none
	weights   []float32
	weightSum float64   // Σ weights, set by validate
	tokens    []float32 // per-row weights (TokenWeights), nil for all 1
	keepRows  bool
	budget    int // bytes of logits a Linear holds at once (0: ce.DefaultBudget)
	filter    float64
	col0      int // the shard: columns [col0, col0+cols) of vocab classes (vocab 0: whole)
	vocab     int
	teacher   *ce.Teacher // Distill's, nil for none
	alpha     float64     // Distill's α
}

// Option sets one option of a [Loss].
type Option func(*config)

// IgnoreIndex sets the target value whose rows are not counted (default
// -100). Any value is allowed, also one inside [0, cols).
func IgnoreIndex(i int) Option { return func(c *config) { c.ignore = int64(i) } }

// Reduce sets the reduction (default Mean).
func Reduce(r Reduction) Option { return func(c *config) { c.reduction = r } }

// LabelSmoothing sets ε in [0, 1] (default 0), with PyTorch's formula.
func LabelSmoothing(eps float64) Option { return func(c *config) { c.smoothing = eps } }

// ZLoss adds λ·lse² to the loss of every counted row (λ ≥ 0, default 0),
// as PaLM and Liger-Kernel do; its sum is also reported in Stats.ZLoss.
func ZLoss(lambda float64) Option { return func(c *config) { c.zloss = lambda } }

// Softcap applies z ← c·tanh(z/c) to the logits before everything else
// (c > 0; 0, the default, means none), as Gemma 2 does; the gradient goes
// through it. With a cap, +Inf logits become c instead of giving NaN.
func Softcap(cap float64) Option { return func(c *config) { c.softcap = cap } }

// Temperature divides the logits by τ > 0 (default 1): the loss, the
// per-row log-sum-exp and the accuracy are those of softmax(z/τ), and the
// gradient is with respect to z (so it carries 1/τ), as Liger-Kernel's and
// TransformerEngine's. With a soft cap c the cap comes first: the logits
// are c·tanh(z/c)/τ. The options built on the loss (smoothing, z-loss,
// weights) apply to the divided logits. τ = 1 gives the same bits as
// none; 1/τ and c/τ must be finite and non-zero in float32.
func Temperature(tau float64) Option { return func(c *config) { c.temp = tau } }

// Weights sets per-class weights (len = cols, finite and ≥ 0), as PyTorch's
// weight: the loss of row i is multiplied by w_{t_i} and the mean divides
// by Σ w_{t_i}. The slice is copied.
func Weights(w []float32) Option {
	return func(c *config) { c.weights = append([]float32(nil), w...) }
}

// TokenWeights sets a weight per row (len = the rows of every call,
// finite and ≥ 0; an ignored row's is not used): row i's loss is
// multiplied by w_i, in the sum, the per-row losses of reduction None and
// their gradients, and the mean divides by Σ w_i over the counted rows
// (with class weights c, by Σ w_i·c_{t_i}). All ones gives the same bits
// as none. It applies to a Linear too.
func TokenWeights(w []float32) Option {
	return func(c *config) { c.tokens = append([]float32(nil), w...) }
}

// KeepRows makes Forward and ForwardBackward return per-row losses in
// Result.Losses for the Mean and Sum reductions too (None always does),
// the per-row log-sum-exp in Result.LSE, whether each row's argmax is its
// target in Result.CorrectRows, and a distillation's per-row KL in
// Result.KLRows.
func KeepRows() Option { return func(c *config) { c.keepRows = true } }

// Shard says that the matrices this Loss takes are the classes [col0,
// col0+cols) of a vocabulary of vocab classes: one shard of a classifier
// split across devices or machines. Targets are classes of the
// vocabulary, and class weights are the whole vocabulary's. A shard's
// loss needs every shard's partials: Partials on each, merged (Merge, or
// one's own all-reduce), then Finish for the loss and Backward for each
// shard's gradient.
func Shard(col0, vocab int) Option { return func(c *config) { c.col0, c.vocab = col0, vocab } }

// Budget sets the bytes of logits a [Linear] holds at a time (default
// ce.DefaultBudget: 16 MiB or 64 rows of the vocabulary, whichever is
// more; on the CPU with OpenBLAS min(N, 256) rows where that is more, up
// to 256 MiB): its tiles of rows × classes stay within
// it (a tile is at least one logit). It does not apply to a Loss, whose
// logits are the caller's.
func Budget(bytes int) Option { return func(c *config) { c.budget = bytes } }

// GradFilter turns on gradient filtering in a [Linear]'s backward (Cut
// Cross-Entropy's; off by default): a block of ce.FilterBlock classes
// × a chunk's rows whose every |softmax - target| (the gradient before
// the upstream factor) is below eps adds nothing to dH, dW and db. The
// loss is unchanged; each gradient entry moves by at most eps·|s_i| times
// the skipped classes' |w| (dH) or the rows' |h| (dW). CCE's default is
// 2⁻¹² for bf16; eps in [0, 1), 0 is off.
func GradFilter(eps float64) Option { return func(c *config) { c.filter = eps } }

// Upstream is dL/dloss, the gradient that flows into the loss: One (the
// zero value), a Scalar, or PerRow values with reduction None.
type Upstream struct {
	scalar float32
	set    bool
	rows   []float32
}

// One is dL/dloss = 1: the gradient of the loss itself.
var One = Upstream{}

// Scalar returns dL/dloss = g for the reduced loss (for None, for every
// row's loss).
func Scalar(g float32) Upstream { return Upstream{scalar: g, set: true} }

// PerRow returns dL/dloss_i = g[i] for the per-row losses of reduction
// None; g has one value per row.
func PerRow(g []float32) Upstream { return Upstream{rows: g} }

func (c *config) validate() error {
	if c.reduction < Mean || c.reduction > None {
		return errorf(ErrOption, "reduction %d is not Mean, Sum or None", int(c.reduction))
	}
	if !(c.smoothing >= 0 && c.smoothing <= 1) {
		return errorf(ErrOption, "label smoothing %g is outside [0, 1]", c.smoothing)
	}
	if !(c.zloss >= 0) || math.IsInf(c.zloss, 1) {
		return errorf(ErrOption, "z-loss %g must be finite and ≥ 0", c.zloss)
	}
	if !(c.softcap >= 0) || math.IsInf(c.softcap, 1) {
		return errorf(ErrOption, "softcap %g must be finite and ≥ 0 (0 means none)", c.softcap)
	}
	if c.softcap > 0 && float32(c.softcap) == 0 || c.zloss > 0 && float32(c.zloss) == 0 || c.smoothing > 0 && float32(c.smoothing) == 0 {
		return errorf(ErrOption, "an option value is too small for float32")
	}
	if c.softcap > math.MaxFloat32 || c.zloss > math.MaxFloat32 {
		return errorf(ErrOption, "an option value is too large for float32")
	}
	if !(c.temp > 0) || math.IsInf(c.temp, 1) {
		return errorf(ErrOption, "temperature %g must be finite and > 0 (1 means none)", c.temp)
	}
	if t := float32(c.temp); t == 0 || math.IsInf(float64(1/t), 0) || 1/t == 0 || c.softcap > 0 && (float32(c.softcap)/t == 0 || math.IsInf(float64(float32(c.softcap)/t), 0)) {
		return errorf(ErrOption, "temperature %g: 1/τ (and softcap/τ) must be finite and non-zero in float32", c.temp)
	}
	if c.col0 < 0 || c.vocab < 0 || c.vocab > math.MaxInt32 {
		return errorf(ErrOption, "shard [%d, ...) of %d classes: both must be ≥ 0 and the classes within int32", c.col0, c.vocab)
	}
	if !(c.filter >= 0 && c.filter < 1) || c.filter > 0 && float32(c.filter) == 0 {
		return errorf(ErrOption, "gradient filter %g must be in [0, 1) and representable in float32", c.filter)
	}
	if c.budget < 0 {
		return errorf(ErrOption, "budget %d bytes must be ≥ 0 (0: the default)", c.budget)
	}
	for i, w := range c.tokens {
		if !(w >= 0) || math.IsInf(float64(w), 1) {
			return errorf(ErrOption, "token weight %g at row %d must be finite and ≥ 0", w, i)
		}
	}
	c.weightSum = 0
	for j, w := range c.weights {
		if !(w >= 0) || math.IsInf(float64(w), 1) {
			return errorf(ErrOption, "class weight %g at class %d must be finite and ≥ 0", w, j)
		}
		c.weightSum += float64(w)
	}
	return c.validateTeacher()
}
