package corpus

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"strconv"
	"strings"

	"gonum.org/v1/gonum/stat/distuv"

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
	// ByPosition is the mean loss at each position t = row mod T of the
	// sequences (--seq-len T, or --by-position with T from the files'
	// shapes; null where nothing counts), absent without.
	ByPosition []*float64 `json:"by_position,omitempty"`
	// ByPositionStdErr is the standard error of each position's mean over
	// the sequences (null with fewer than two counting there), with
	// --stderr; absent without.
	ByPositionStdErr []*float64 `json:"by_position_stderr,omitempty"`
	// LossStdErr is the standard error of the mean loss over
	// StdErrClusters clusters taken as independent (--stderr: the
	// sequences, else the rows; Spread.StdErr; null with fewer than two),
	// and Perplexity95 the perplexity's 95% interval from it,
	// exp(loss ± t·se) (Interval95: t of Student's t with clusters − 1
	// degrees of freedom, 1.96 for many); absent without.
	LossStdErr     *Nullable  `json:"loss_stderr,omitempty"`
	StdErrClusters int64      `json:"stderr_clusters,omitempty"`
	Perplexity95   []*float64 `json:"perplexity_95,omitempty"`
	// AccuracyStdErr is the top-1 accuracy's standard error over the same
	// clusters (each cluster's correct rows over its counted rows) and
	// Accuracy95 its 95% interval, accuracy ± t·se within [0, 1]; absent
	// without --stderr.
	AccuracyStdErr *Nullable  `json:"accuracy_stderr,omitempty"`
	Accuracy95     []*float64 `json:"accuracy_95,omitempty"`
	// TopKStdErr and TopK95 are the same of each top-k accuracy, absent
	// without --stderr and --topk.
	TopKStdErr map[string]*Nullable  `json:"topk_stderr,omitempty"`
	TopK95     map[string][]*float64 `json:"topk_95,omitempty"`
	// ECE is the expected calibration error (--calibration; null when no
	// row is binned), absent without; Calibration its 15 bins.
	ECE         *Nullable `json:"ece,omitempty"`
	Calibration []CalBin  `json:"calibration,omitempty"`
	// TopK is the top-k accuracy for each k of --topk (null when nothing
	// counts), MRR the mean reciprocal rank of the target and Entropy the
	// softmax's mean entropy (nats), absent without --topk.
	TopK    map[string]*float64 `json:"topk,omitempty"`
	MRR     *Nullable           `json:"mrr,omitempty"`
	Entropy *Nullable           `json:"entropy,omitempty"`
	// MRRStdErr and MRR95 are the MRR's standard error over the clusters
	// (each row's 1/rank, each counted row once) and its 95% interval
	// within [0, 1]; EntropyStdErr and Entropy95 the mean entropy's, its
	// low end at least 0; absent without --stderr and --topk.
	MRRStdErr     *Nullable  `json:"mrr_stderr,omitempty"`
	MRR95         []*float64 `json:"mrr_95,omitempty"`
	EntropyStdErr *Nullable  `json:"entropy_stderr,omitempty"`
	Entropy95     []*float64 `json:"entropy_95,omitempty"`
	// KL is the mean KL(teacher ‖ student) over the teacher's top-k and a
	// tail bin (--teacher-ids, --teacher-logprobs; null when nothing
	// counts), absent without.
	KL *Nullable `json:"kl,omitempty"`
	// KLStdErr is the mean KL's standard error over the clusters, and KL95
	// its 95% interval (its low end at least 0), with --stderr; absent
	// without.
	KLStdErr *Nullable  `json:"kl_stderr,omitempty"`
	KL95     []*float64 `json:"kl_95,omitempty"`
	// BitsPerByte is the log-loss's sum (the z-loss taken out) over the
	// text's bytes, in bits: Σ nll / (ln 2 · bytes), and BytePerplexity
	// 2^BitsPerByte (null when nothing counts), absent without the bytes
	// (--bytes, a manifest's "bytes").
	BitsPerByte    *Nullable `json:"bits_per_byte,omitempty"`
	BytePerplexity *Nullable `json:"byte_perplexity,omitempty"`
	// WordPerplexity is exp(Σ nll / words) (null when nothing counts),
	// absent without the words (--words, a manifest's "words").
	WordPerplexity *Nullable `json:"word_perplexity,omitempty"`
	// BitsPerByteStdErr and BitsPerByte95 are the bits per byte's
	// standard error and 95% interval (its low end at least 0), and
	// BytePerplexity95 and WordPerplexity95 the perplexities' intervals:
	// the mean loss's (LossStdErr, over the same clusters) times the
	// counted tokens' weight over the bytes (over ln 2) or the words, the
	// text's length taken as fixed. With --stderr and the counts, and
	// without a z-loss (the loss's clusters' sums then have it, the log-loss
	// not), else absent.
	BitsPerByteStdErr *Nullable  `json:"bits_per_byte_stderr,omitempty"`
	BitsPerByte95     []*float64 `json:"bits_per_byte_95,omitempty"`
	BytePerplexity95  []*float64 `json:"byte_perplexity_95,omitempty"`
	WordPerplexity95  []*float64 `json:"word_perplexity_95,omitempty"`
	Device            string     `json:"device"`
}

// Nullable is a number that JSON writes as null when it is NaN or
// infinite: a key present with no value.
type Nullable float64

// MarshalJSON writes v, or null.
func (v Nullable) MarshalJSON() ([]byte, error) {
	if p := num(float64(v)); p != nil {
		return json.Marshal(*p)
	}
	return []byte("null"), nil
}

// A CalBin is one bin of the reliability diagram: the confidences in
// [Lo, Hi), the rows there, their mean confidence and accuracy (null for
// an empty bin).
type CalBin struct {
	Lo         float64  `json:"lo"`
	Hi         float64  `json:"hi"`
	Rows       int64    `json:"rows"`
	Confidence *float64 `json:"confidence"`
	Accuracy   *float64 `json:"accuracy"`
}

// Bins returns the bins of c.
func Bins(c *batch.Calibration) []CalBin {
	bs := make([]CalBin, batch.CalibrationBins)
	for k := range bs {
		n := float64(c.Rows[k])
		bs[k] = CalBin{Lo: float64(k) / batch.CalibrationBins, Hi: float64(k+1) / batch.CalibrationBins, Rows: c.Rows[k],
			Confidence: num(c.Conf[k] / n), Accuracy: num(float64(c.Correct[k]) / n)}
	}
	return bs
}

// ReportOf returns the report of t (its loss by position and calibration
// when it has them), computed on device.
func ReportOf(t Total, device string) Report {
	st, p := t.Stats, t.Positions
	r := Report{Loss: num(st.Mean()), Sum: num(st.Sum), Tokens: st.Counted, Ignored: st.Ignored(),
		Perplexity: num(st.Perplexity()), Accuracy: num(st.Accuracy()), ZLoss: num(st.ZLoss), Device: device}
	if c := t.Calibration; c != nil {
		e := Nullable(c.ECE())
		r.ECE, r.Calibration = &e, Bins(c)
	}
	if rs := t.Ranks; rs != nil {
		r.TopK = map[string]*float64{}
		for i, k := range rs.K {
			r.TopK[strconv.Itoa(k)] = num(rs.TopKAccuracy(i))
		}
		mrr, h := Nullable(rs.MRR()), Nullable(rs.MeanEntropy())
		r.MRR, r.Entropy = &mrr, &h
	}
	if t.Distill {
		kl := Nullable(st.MeanKL())
		r.KL = &kl
	}
	if sp := t.KLSpread; sp != nil {
		r.KLStdErr, r.KL95 = nonNegativeSE(st.MeanKL(), *sp)
	}
	// Nothing counted: null, not the 0 of an empty sum.
	counted := func(v float64) *Nullable {
		if st.Counted == 0 {
			v = math.NaN()
		}
		n := Nullable(v)
		return &n
	}
	if n := t.Text.Bytes; n > 0 {
		r.BitsPerByte, r.BytePerplexity = counted(BitsPerByte(st, n)), counted(math.Exp2(BitsPerByte(st, n)))
	}
	if n := t.Text.Words; n > 0 {
		r.WordPerplexity = counted(WordPerplexity(st, n))
	}
	if sp := t.Spread; sp != nil {
		se := sp.StdErr()
		ns := Nullable(se)
		r.LossStdErr, r.StdErrClusters = &ns, sp.Clusters
		lo, hi := Interval95(st.Mean(), se, sp.Clusters)
		r.Perplexity95 = []*float64{num(math.Exp(lo)), num(math.Exp(hi))}
		if st.ZLoss == 0 { // the loss is the log-loss: Σ nll = mean · Denom
			lo = max(lo, 0)
			if n := t.Text.Bytes; n > 0 {
				k := st.Denom / (math.Ln2 * float64(n))
				b := Nullable(se * k)
				r.BitsPerByteStdErr, r.BitsPerByte95 = &b, []*float64{num(lo * k), num(hi * k)}
				r.BytePerplexity95 = []*float64{num(math.Exp2(lo * k)), num(math.Exp2(hi * k))}
			}
			if n := t.Text.Words; n > 0 {
				k := st.Denom / float64(n)
				r.WordPerplexity95 = []*float64{num(math.Exp(lo * k)), num(math.Exp(hi * k))}
			}
		}
	}
	if sp := t.AccSpread; sp != nil {
		r.AccuracyStdErr, r.Accuracy95 = accuracySE(st.Accuracy(), *sp)
	}
	if t.TopKSpread != nil && t.Ranks != nil {
		r.TopKStdErr, r.TopK95 = map[string]*Nullable{}, map[string][]*float64{}
		for i, k := range t.Ranks.K {
			key := strconv.Itoa(k)
			r.TopKStdErr[key], r.TopK95[key] = accuracySE(t.Ranks.TopKAccuracy(i), t.TopKSpread[i])
		}
	}
	if sp := t.MRRSpread; sp != nil && t.Ranks != nil {
		r.MRRStdErr, r.MRR95 = accuracySE(t.Ranks.MRR(), *sp)
	}
	if sp := t.EntSpread; sp != nil && t.Ranks != nil {
		r.EntropyStdErr, r.Entropy95 = nonNegativeSE(t.Ranks.MeanEntropy(), *sp)
	}
	if p != nil {
		r.ByPosition, r.ByPositionStdErr = nums(p.Means()), nums(p.StdErrs())
	}
	return r
}

// nums returns each of v as num does (nil for nil).
func nums(v []float64) []*float64 {
	if v == nil {
		return nil
	}
	n := make([]*float64, len(v))
	for i, x := range v {
		n[i] = num(x)
	}
	return n
}

// A LineReport is one manifest line's report, a JSON object a line of
// xent eval --manifest --lines-out (and xent-beam's): the line's number
// in the manifest, its rows' file (Line.RowsFile) and the keys of Report,
// computed from that line alone.
type LineReport struct {
	Line int    `json:"line"`
	File string `json:"file"`
	Report
}

// LineReportOf returns the report of line l's result r, computed on
// device.
func LineReportOf(l Line, r Result, device string) LineReport {
	return LineReport{Line: l.N, File: l.RowsFile(), Report: ReportOf(TotalOf(r), device)}
}

// A PairLineReport is one line pair's comparison, a JSON object a line of
// xent compare --lines-out: the lines' number, each model's rows' file
// and the keys of PairReport, computed from that pair alone.
type PairLineReport struct {
	Line  int    `json:"line"`
	FileA string `json:"file_a"`
	FileB string `json:"file_b"`
	PairReport
}

// studentT returns Student's t distribution of the standard error of a
// mean over n clusters: n − 1 degrees of freedom (as a cluster-robust
// standard error of n clusters is read).
func studentT(n int64) distuv.StudentsT {
	return distuv.StudentsT{Mu: 0, Sigma: 1, Nu: float64(n - 1)}
}

// Interval95 returns the 95% interval of an estimate m of standard error
// se over n clusters: m ± t·se, t the 97.5% quantile of Student's t with
// n − 1 degrees of freedom (12.71 for 2 clusters, 2.20 for 12, 1.96 for
// many); NaN for fewer than two.
func Interval95(m, se float64, n int64) (lo, hi float64) {
	if n < 2 {
		return math.NaN(), math.NaN()
	}
	t := studentT(n).Quantile(0.975)
	return m - t*se, m + t*se
}

// accuracySE returns the standard error of accuracy a (or of another
// mean of values in [0, 1], the MRR) over the clusters of sp and its 95%
// interval within [0, 1] (AccuracyInterval95).
func accuracySE(a float64, sp Spread) (*Nullable, []*float64) {
	se := sp.StdErr()
	ns := Nullable(se)
	lo, hi := AccuracyInterval95(a, se, sp.Clusters)
	return &ns, []*float64{num(lo), num(hi)}
}

// nonNegativeSE returns the standard error of a mean m of values ≥ 0 (a
// KL, an entropy) over sp's clusters, and its 95% interval, its low end
// at least 0.
func nonNegativeSE(m float64, sp Spread) (*Nullable, []*float64) {
	se := sp.StdErr()
	ns := Nullable(se)
	lo, hi := Interval95(m, se, sp.Clusters)
	return &ns, []*float64{num(max(lo, 0)), num(hi)}
}

// AccuracyInterval95 is Interval95 of an accuracy, within [0, 1].
func AccuracyInterval95(m, se float64, n int64) (lo, hi float64) {
	lo, hi = Interval95(m, se, n)
	return max(lo, 0), min(hi, 1)
}

// PValue returns the two-sided p-value of an estimate z standard errors
// from 0 over n clusters: 2·P(T > |z|), T Student's t with n − 1 degrees
// of freedom; NaN for fewer than two clusters or a NaN z.
func PValue(z float64, n int64) float64 {
	if n < 2 || math.IsNaN(z) {
		return math.NaN()
	}
	return 2 * studentT(n).Survival(math.Abs(z))
}

// num is v, or nil (JSON null) when v is NaN or infinite.
func num(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

// LossFlags defines on fs the flags every line shares (--ignore-index,
// --label-smoothing, --z-loss, --softcap, --temperature, --weights, --budget, --seq-len, --by-position, --stderr, --shift, --calibration, --topk) and returns the function that makes their Config once fs is
// parsed, reading the class weights.
func LossFlags(fs *flag.FlagSet) func() (Config, error) {
	weights := fs.String("weights", "", "class weights `W.npy`: 1-D float32 or float64, one per class (optional)")
	ignore := fs.Int("ignore-index", batch.DefaultIgnoreIndex, "target value (an integer) of rows not counted")
	smoothing := fs.Float64("label-smoothing", 0, "label smoothing ε, a number in [0, 1]")
	zloss := fs.Float64("z-loss", 0, "z-loss λ ≥ 0 (adds λ·lse² per counted row)")
	softcap := fs.Float64("softcap", 0, "logit soft cap c > 0 (z ← c·tanh(z/c)); 0: none")
	temp := fs.Float64("temperature", 1, "temperature τ > 0: the loss, accuracy and gradient of softmax(z/τ), after the soft cap; 1: none")
	seqLen := fs.Int("seq-len", 0, "the sequence length `T`: report the mean loss at each position t = row mod T of each file (0: none); rows or targets of [batch × sequence] must agree; with --shift of 1-D targets, the sequences they shift within")
	stderr := fs.Bool("stderr", false, "report the standard error of the mean loss over the sequences (the files' [batch × sequence] or --seq-len; each row alone for 1-D rows), taken as independent, and the perplexity's 95% interval; the same of the top-1 accuracy, of each --topk accuracy, the MRR and the entropy, of each position's mean (--by-position; --plot draws its band), of a teacher's KL, and of the bits per byte and the byte and word perplexities (--bytes, --words; without a z-loss)")
	byPos := fs.Bool("by-position", false, "report the mean loss at each position of the sequences, their length T from the files' shapes (rows [batch × sequence × vocab] or targets [batch × sequence]; files of other lengths merge position by position), else --seq-len")
	shift := fs.Bool("shift", false, "causal language modelling (Hugging Face's labels): the targets (and token weights) are the input tokens, [batch × sequence] or 1-D with --seq-len, and row t of a sequence is scored against token t+1, its last row not counted")
	calibration := fs.Bool("calibration", false, "report the expected calibration error and its 15 bins of the confidence max p (Guo et al. 2017); with --plot, the reliability diagram")
	topk := fs.String("topk", "", "top-k accuracy for the ascending `k,...` (1,5,10), with the mean reciprocal rank, the entropy and the calibration (a pass of its own over the logits)")
	budget := fs.Int("budget", 0, "bytes (an integer ≥ 0) of logits the fused linear holds at a time (0: the device's default: 16 MiB or 64 rows of the vocabulary, whichever is more; on the CPU with OpenBLAS min(N, 256) rows where that is more, up to 256 MiB)")
	return func() (Config, error) {
		c := Config{IgnoreIndex: *ignore, Smoothing: *smoothing, ZLoss: *zloss, Softcap: *softcap, Temperature: *temp, Budget: *budget, WeightsFile: *weights, SeqLen: *seqLen, ByPosition: *byPos, StdErr: *stderr, Shift: *shift, Calibration: *calibration}
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
		if *topk != "" {
			ks, err := parseTopK(*topk)
			if err != nil {
				return Config{}, err
			}
			c.TopK, c.Calibration = ks, true
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

// parseTopK reads --topk: ascending k in [1, batch.MaxTopK], none twice.
func parseTopK(s string) ([]int, error) {
	var ks []int
	for _, f := range strings.Split(s, ",") {
		k, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("--topk %s: %q is not an integer", s, f)
		}
		ks = append(ks, k)
	}
	if _, err := batch.NewRankStats(ks); err != nil {
		return nil, fmt.Errorf("--topk %s: want ascending k in [1, %d], none twice", s, batch.MaxTopK)
	}
	return ks, nil
}

// A PairReport is a comparison's result as xent compare --json prints
// it: each model's report, and the paired statistics of B's mean loss
// less A's (Pair): the difference, its standard error over the clusters
// (null with fewer than two), its 95% interval, the perplexity ratio B/A
// = exp(diff) and its interval, the z score diff/se and the two-sided
// p-value of no difference (Student's t with clusters − 1 degrees of
// freedom: PValue, Interval95), the clusters and the fraction whose loss
// B has below A's; and of B's top-1 accuracy less A's, the difference,
// its standard error, its 95% interval and its p-value, alike, and of
// each top-k accuracy with --topk (TopKDiff, by k).
type PairReport struct {
	A                 Report             `json:"a"`
	B                 Report             `json:"b"`
	Diff              *float64           `json:"diff"`
	DiffStdErr        *Nullable          `json:"diff_stderr"`
	Diff95            []*float64         `json:"diff_95"`
	PerplexityRatio   *float64           `json:"perplexity_ratio"`
	PerplexityRatio95 []*float64         `json:"perplexity_ratio_95"`
	Z                 *Nullable          `json:"z"`
	PValue            *Nullable          `json:"p_value"`
	Clusters          int64              `json:"clusters"`
	BLower            *Nullable          `json:"b_lower"`
	AccuracyDiff      *float64           `json:"accuracy_diff"`
	AccuracyDiffSE    *Nullable          `json:"accuracy_diff_stderr"`
	AccuracyDiff95    []*float64         `json:"accuracy_diff_95"`
	AccuracyPValue    *Nullable          `json:"accuracy_p_value"`
	TopKDiff          map[string]AccDiff `json:"topk_diff,omitempty"`
	// MRRDiff is the MRR's paired difference, B's less A's, absent
	// without --topk.
	MRRDiff *AccDiff `json:"mrr_diff,omitempty"`
	// KLDiff is a teacher's mean KL's paired difference, B's less A's
	// (the same teacher for both), absent without a teacher.
	KLDiff *AccDiff `json:"kl_diff,omitempty"`
	// DiffByPosition is B's mean loss less A's at each position and
	// DiffByPositionStdErr its paired standard error over the sequences
	// (null where nothing counts, or fewer than two sequences), with
	// --by-position or --seq-len; absent without.
	DiffByPosition       []*float64 `json:"diff_by_position,omitempty"`
	DiffByPositionStdErr []*float64 `json:"diff_by_position_stderr,omitempty"`
	// BitsPerByteDiff is B's bits per byte less A's, with its standard
	// error and 95% interval: the loss's difference times the counted
	// tokens' weight over the bytes, over ln 2 (its z and p-value are the
	// loss's). Where both manifests give the same bytes and neither
	// model's loss has a z-loss; absent otherwise.
	BitsPerByteDiff       *float64   `json:"bits_per_byte_diff,omitempty"`
	BitsPerByteDiffStdErr *Nullable  `json:"bits_per_byte_diff_stderr,omitempty"`
	BitsPerByteDiff95     []*float64 `json:"bits_per_byte_diff_95,omitempty"`
	Device                string     `json:"device"`
}

// An AccDiff is the paired difference of two accuracies (or of two mean
// KLs), B's less A's: the difference, its standard error, its 95%
// interval and its two-sided p-value (PairReport's).
type AccDiff struct {
	Diff   *float64   `json:"diff"`
	StdErr *Nullable  `json:"stderr"`
	CI95   []*float64 `json:"diff_95"`
	PValue *Nullable  `json:"p_value"`
}

// accDiff returns the AccDiff of accuracies a and b over the clusters of
// the spread sp of their difference.
func accDiff(a, b float64, sp Spread) AccDiff {
	d, se := b-a, sp.StdErr()
	lo, hi := Interval95(d, se, sp.Clusters)
	nse, pv := Nullable(se), Nullable(PValue(d/se, sp.Clusters))
	return AccDiff{Diff: num(d), StdErr: &nse, CI95: []*float64{num(lo), num(hi)}, PValue: &pv}
}

// PairReportOf returns the report of p, computed on device.
func PairReportOf(p Pair, device string) PairReport {
	d := p.B.Stats.Mean() - p.A.Stats.Mean()
	se := p.Diff.StdErr()
	z := d / se
	nse, nz, pv := Nullable(se), Nullable(z), Nullable(PValue(z, p.Diff.Clusters))
	lower := Nullable(float64(p.Lower) / float64(p.Diff.Clusters))
	lo, hi := Interval95(d, se, p.Diff.Clusters)
	ad := accDiff(p.A.Stats.Accuracy(), p.B.Stats.Accuracy(), p.AccDiff)
	r := PairReport{A: ReportOf(p.A, device), B: ReportOf(p.B, device), Diff: num(d), DiffStdErr: &nse, Diff95: []*float64{num(lo), num(hi)},
		PerplexityRatio: num(math.Exp(d)), PerplexityRatio95: []*float64{num(math.Exp(lo)), num(math.Exp(hi))},
		Z: &nz, PValue: &pv, Clusters: p.Diff.Clusters, BLower: &lower,
		AccuracyDiff: ad.Diff, AccuracyDiffSE: ad.StdErr, AccuracyDiff95: ad.CI95, AccuracyPValue: ad.PValue, Device: device}
	if dp := p.DiffPositions; dp != nil {
		r.DiffByPosition, r.DiffByPositionStdErr = nums(dp.Means()), nums(dp.StdErrs())
	}
	if sp, ra, rb := p.MRRDiff, p.A.Ranks, p.B.Ranks; sp != nil && ra != nil && rb != nil {
		md := accDiff(ra.MRR(), rb.MRR(), *sp)
		r.MRRDiff = &md
	}
	if sp := p.KLDiff; sp != nil && p.A.Distill && p.B.Distill {
		kd := accDiff(p.A.Stats.MeanKL(), p.B.Stats.MeanKL(), *sp)
		r.KLDiff = &kd
	}
	if n := p.A.Text.Bytes; n > 0 && n == p.B.Text.Bytes && p.A.Stats.ZLoss == 0 && p.B.Stats.ZLoss == 0 {
		k := p.A.Stats.Denom / (math.Ln2 * float64(n)) // B's rows are A's, of the same weights
		bse := Nullable(se * k)
		r.BitsPerByteDiff, r.BitsPerByteDiffStdErr, r.BitsPerByteDiff95 = num(d*k), &bse, []*float64{num(lo * k), num(hi * k)}
	}
	if ra, rb := p.A.Ranks, p.B.Ranks; ra != nil && rb != nil && len(p.TopKDiff) == len(ra.K) {
		r.TopKDiff = map[string]AccDiff{}
		for i, k := range ra.K {
			r.TopKDiff[strconv.Itoa(k)] = accDiff(ra.TopKAccuracy(i), rb.TopKAccuracy(i), p.TopKDiff[i])
		}
	}
	return r
}
