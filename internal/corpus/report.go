package corpus

import (
	"flag"
	"fmt"
	"math"

	"github.com/xentlab/xent/batch"
	"github.com/xentlab/xent/internal/npyfile"
)

// A Report is an evaluation's result as xent eval --json prints it (and
// xent merge, and xent-beam): undefined values (nothing counted) are
// null.
type Report struct {
	Loss       *float64 `json:"loss"`
	Sum        *float64 `json:"sum"`
	Tokens     int64    `json:"tokens"`
	Ignored    int64    `json:"ignored"`
	Perplexity *float64 `json:"perplexity"`
	Accuracy   *float64 `json:"accuracy"`
	ZLoss      *float64 `json:"z_loss"`
	// ByPosition is the mean loss at each position t = row mod T
	// (--seq-len T; null where nothing counts), absent without.
	ByPosition []*float64 `json:"by_position,omitempty"`
	Device     string     `json:"device"`
}

// ReportOf returns the report of st and of the loss by position p (nil
// for none), computed on device.
func ReportOf(st batch.Stats, p *Positions, device string) Report {
	r := Report{Loss: num(st.Mean()), Sum: num(st.Sum), Tokens: st.Counted, Ignored: st.Ignored(),
		Perplexity: num(st.Perplexity()), Accuracy: num(st.Accuracy()), ZLoss: num(st.ZLoss), Device: device}
	if p != nil {
		r.ByPosition = make([]*float64, len(p.Sum))
		for t, m := range p.Means() {
			r.ByPosition[t] = num(m)
		}
	}
	return r
}

// num is v, or nil (JSON null) when v is NaN or infinite.
func num(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

// LossFlags defines on fs the flags every line shares (--ignore-index,
// --label-smoothing, --z-loss, --softcap, --temperature, --weights, --budget, --seq-len) and returns the function that makes their Config once fs is
// parsed, reading the class weights.
func LossFlags(fs *flag.FlagSet) func() (Config, error) {
	weights := fs.String("weights", "", "class weights `W.npy`: 1-D float32 or float64, one per class (optional)")
	ignore := fs.Int("ignore-index", batch.DefaultIgnoreIndex, "target value (an integer) of rows not counted")
	smoothing := fs.Float64("label-smoothing", 0, "label smoothing ε, a number in [0, 1]")
	zloss := fs.Float64("z-loss", 0, "z-loss λ ≥ 0 (adds λ·lse² per counted row)")
	softcap := fs.Float64("softcap", 0, "logit soft cap c > 0 (z ← c·tanh(z/c)); 0: none")
	temp := fs.Float64("temperature", 1, "temperature τ > 0: the loss, accuracy and gradient of softmax(z/τ), after the soft cap; 1: none")
	seqLen := fs.Int("seq-len", 0, "the sequence length `T`: report the mean loss at each position t = row mod T of each file (0: none)")
	budget := fs.Int("budget", 0, "bytes (an integer ≥ 0) of logits the fused linear holds at a time (0: ce.DefaultBudget: 16 MiB, or 64 rows of the vocabulary when more)")
	return func() (Config, error) {
		c := Config{IgnoreIndex: *ignore, Smoothing: *smoothing, ZLoss: *zloss, Softcap: *softcap, Temperature: *temp, Budget: *budget, WeightsFile: *weights, SeqLen: *seqLen}
		if *weights != "" {
			w, err := npyfile.Read(*weights, (*npyfile.File).Vector)
			if err != nil {
				return Config{}, err
			}
			c.ClassWeights = w
		}
		if !(*temp > 0) || math.IsInf(*temp, 0) {
			return Config{}, fmt.Errorf("--temperature %g: want a finite τ > 0 (1: none)", *temp)
		}
		if *budget < 0 {
			return Config{}, fmt.Errorf("--budget %d: want bytes ≥ 0", *budget)
		}
		if *seqLen < 0 || *seqLen > 1<<24 {
			return Config{}, fmt.Errorf("--seq-len %d: want a sequence length in [1, 2^24], or 0 for none", *seqLen)
		}
		return c, nil
	}
}
