package corpus

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/xentlab/xent/batch"
	"github.com/xentlab/xent/device"
	"github.com/xentlab/xent/internal/npyfile"
	"github.com/xentlab/xent/internal/tensorfile"
)

// ChunkBytes is the size of the logit chunk a line holds in memory when
// its file is streamed rather than mapped (a variable for tests).
var ChunkBytes = 64 << 20

// Config is what every line of an evaluation shares: the loss's options.
type Config struct {
	IgnoreIndex  int
	Smoothing    float64   // label smoothing ε in [0, 1]
	ZLoss        float64   // z-loss λ ≥ 0
	Softcap      float64   // soft cap c > 0, 0 for none
	Temperature  float64   // τ > 0 dividing the (capped) logits; 0 or 1 for none
	ClassWeights []float32 // one per class, nil for none
	WeightsFile  string    // where ClassWeights came from, for errors
	Budget       int       // the fused linear's logit budget in bytes (0: the default)
	KeepRows     bool      // Result.Rows: the per-row losses
	SeqLen       int       // Result.Positions: the loss by position t = row mod SeqLen in each file (0: none)
	ByPosition   bool      // Result.Positions at each line's sequence length: its shapes' ([batch × sequence]), else SeqLen
	StdErr       bool      // Result.Spread, AccSpread, TopKSpread, MRRSpread, EntSpread, KLSpread, Positions.Spread: the standard errors of the means (the loss, the accuracies, the MRR, the entropy, the KL, each position's loss) over the lines' sequences (each row alone without one)
	Shift        bool      // causal LM: row t of each sequence against target t+1, its last row ignored (targets, token weights per input token)
	Calibration  bool      // Result.Calibration: the calibration bins (computed from the rows' partials)
	TopK         []int     // Result.Ranks: the rank statistics for these k (a pass of its own; the calibration too), nil for none
	Distill      bool      // Result.Stats.KL: every line names a teacher's top-k (Line.TeacherIDs, TeacherLogProbs)
	GradH, GradW bool      // Result.GradH, GradW for a hidden-states line: dL/dH, dL/dW of the mean loss
}

func (c Config) options() []batch.Option {
	o := []batch.Option{batch.IgnoreIndex(c.IgnoreIndex), batch.LabelSmoothing(c.Smoothing), batch.ZLoss(c.ZLoss), batch.Softcap(c.Softcap)}
	if c.Temperature != 0 {
		o = append(o, batch.Temperature(c.Temperature))
	}
	return o
}

// rowOptions returns the options of every line's loss: the loss's, the
// class weights, and the per-row losses where they are kept.
func (c Config) rowOptions() []batch.Option {
	o := c.options()
	if c.ClassWeights != nil {
		o = append(o, batch.Weights(c.ClassWeights))
	}
	if c.keep() {
		o = append(o, batch.KeepRows())
	}
	return o
}

// partials reports whether the rows go through their partials (Partials,
// Finish): for the calibration and the ranks.
func (c Config) partials() bool { return c.Calibration || c.TopK != nil || c.Distill }

// finisher is what finish takes of a Loss or a Linear.
type finisher interface {
	Finish(part []batch.Partial, targets []int32) (batch.Result, error)
	Calibration(part []batch.Partial, targets []int32) (batch.Calibration, error)
	RankStats(ks []int, part []batch.Partial, ranks []batch.Rank, targets []int32) (batch.RankStats, error)
}

// finish returns the result of rows of targets tg from their partials
// over the whole vocabulary, and adds their calibration (where r has one)
// and, with ranks (Config.TopK), their rank statistics to r.
func (e *Evaluator) finish(f finisher, part []batch.Partial, ranks []batch.Rank, tg []int32, r *Result) (batch.Result, error) {
	res, err := f.Finish(part, tg)
	if err != nil || r.Calibration == nil { // (a vocabulary's shards without it)
		return res, err
	}
	cal, err := f.Calibration(part, tg)
	if err != nil {
		return res, err
	}
	r.Calibration.Merge(cal)
	if ranks == nil {
		return res, nil
	}
	rs, err := f.RankStats(e.cfg.TopK, part, ranks, tg)
	if err != nil {
		return res, err
	}
	if e.cfg.keep() { // each row's rank and entropy, for the spreads (a NaN row in no top-k and of NaN entropy, as RankStats has it)
		for i, rk := range ranks {
			g, h := rk.Greater, rk.Entropy(&part[i])
			if math.IsNaN(float64(res.Losses[i])) {
				g, h = math.MaxInt64, math.NaN()
			}
			r.Greater, r.Entropies = append(r.Greater, g), append(r.Entropies, h)
		}
	}
	return res, r.Ranks.Merge(rs)
}

// newResult returns the empty result of a line of rows rows of shape lead:
// with the calibration and rank statistics asked for, their empty sums (a
// line of no rows has them too), and room for the per-row losses where
// they are kept.
func (e *Evaluator) newResult(rows int, lead []int) (Result, error) {
	r := Result{Distill: e.cfg.Distill, Lead: lead}
	if e.cfg.keep() {
		r.Rows = make([]float32, 0, rows)
	}
	if e.cfg.partials() {
		r.Calibration = new(batch.Calibration)
	}
	if e.cfg.TopK != nil {
		rs, err := batch.NewRankStats(e.cfg.TopK)
		if err != nil {
			return r, err
		}
		r.Ranks = &rs
	}
	return r, nil
}

// byPosition reports whether the loss by position is computed.
func (c Config) byPosition() bool { return c.SeqLen > 0 || c.ByPosition }

// keep reports whether the per-row losses are computed: asked for, or
// for the loss by position.
func (c Config) keep() bool { return c.KeepRows || c.byPosition() || c.StdErr }

// Result is one line's evaluation.
type Result struct {
	Stats        batch.Stats
	Rows         []float32          // per-row losses (Config.KeepRows)
	Correct      []bool             // whether each row's argmax is its target (Config.KeepRows)
	Greater      []int64            // each row's classes above its target (Config.KeepRows and TopK; MaxInt64 for a NaN row)
	Entropies    []float64          // each row's entropy (Config.KeepRows and TopK; NaN for a NaN row)
	KLRows       []float64          // each row's KL from the teacher (Config.KeepRows and Distill; not token-weighted)
	Lead         []int              // the rows' shape in their file: [rows], or [batch, sequence] for [batch × sequence × vocab]
	Positions    *Positions         // the loss by position (Config.SeqLen or ByPosition)
	Spread       *Spread            // the sums of the mean loss's standard error (Config.StdErr)
	AccSpread    *Spread            // the sums of the accuracy's standard error (Config.StdErr)
	TopKSpread   []Spread           // the sums of each top-k accuracy's standard error (Config.StdErr and TopK)
	MRRSpread    *Spread            // the sums of the MRR's standard error (Config.StdErr and TopK)
	EntSpread    *Spread            // the sums of the mean entropy's standard error (Config.StdErr and TopK)
	KLSpread     *Spread            // the sums of the mean KL's standard error (Config.StdErr and Distill)
	Calibration  *batch.Calibration // Config.Calibration or TopK
	Ranks        *batch.RankStats   // Config.TopK
	Distill      bool               // Config.Distill: Stats.KL is the teacher's KL
	GradH, GradW batch.Matrix       // Config.GradH, GradW: hidden-states lines only
	Text         Text               // Line.Text
}

// An Evaluator checks and evaluates lines with one configuration. A
// classifier named by several lines is loaded (mapped) once. It is not
// safe for concurrent use.
type Evaluator struct {
	cfg  Config
	clfs map[string]classifier

	// Progress, if set, is told the rows of each chunk computed.
	Progress func(rows int)
	// Note, if set, is told what the user should know about a file read
	// (a checkpoint's tied classifier).
	Note func(string)
}

type classifier struct {
	t    tensorfile.Tensor
	done func()
}

// New returns an evaluator of cfg.
func New(cfg Config) *Evaluator {
	return &Evaluator{cfg: cfg, clfs: map[string]classifier{}}
}

// Close releases the classifiers loaded.
func (e *Evaluator) Close() {
	for k, c := range e.clfs {
		c.done()
		delete(e.clfs, k)
	}
}

// at prefixes an error with l's place in its manifest, file:line
// (nothing for a line not from one).
func at(l Line, err error) error {
	if err == nil || l.From == "" {
		return err
	}
	return fmt.Errorf("%s:%d: %w", l.From, l.N, err)
}

// Check reads line l's shapes, targets and token weights and checks them
// against each other and the configuration, computing nothing; it returns
// l's rows.
func (e *Evaluator) Check(l Line) (rows int, err error) {
	rows, cols, lead, err := e.shape(l)
	if err != nil {
		return 0, at(l, err)
	}
	lb, err := e.labelsOf(l, rows, cols, lead)
	if err != nil {
		return 0, at(l, err)
	}
	if err := e.text(l); err != nil {
		return 0, at(l, err)
	}
	if lb.tc != nil {
		err = teacherError(l, batch.CheckTeacher(*lb.tc, lb.tg, e.cfg.IgnoreIndex, cols))
	}
	return rows, at(l, err)
}

// text refuses the text's measures (Line.Text) where the loss is not the
// log-loss they measure: with label smoothing, class weights or a
// teacher's KL inside it. (The z-loss is not: ReportOf takes it out.)
func (e *Evaluator) text(l Line) error {
	if !l.Text.given() {
		return nil
	}
	for _, c := range []struct {
		on   bool
		what string
	}{{e.cfg.Smoothing != 0, "--label-smoothing"}, {e.cfg.ClassWeights != nil, "--weights (class weights)"}, {e.cfg.Distill, "a teacher's KL"}} {
		if c.on {
			return fmt.Errorf("the text's measures (%v) are of the log-loss, and %s changes it", l.Text, c.what)
		}
	}
	return nil
}

// Eval evaluates line l on dev.
func (e *Evaluator) Eval(ctx context.Context, dev device.Device, l Line) (Result, error) {
	var r Result
	var err error
	switch {
	case l.Hidden != "":
		r, err = e.linear(ctx, dev, l)
	case l.Shards != nil:
		r, err = e.shards(ctx, dev, l)
	default:
		r, err = e.logits(ctx, dev, l)
	}
	r.Text = l.Text
	return r, at(l, err)
}

// shape returns the rows and classes of l and the rows' shape in their
// file (lead: [rows], or [batch, sequence] for a dump of [batch ×
// sequence × vocab]), checking a classifier's features against the
// hidden states' and its bias's length.
func (e *Evaluator) shape(l Line) (rows, cols int, lead []int, err error) {
	if l.Shards != nil {
		return shardsShape(l.Shards)
	}
	if l.Hidden == "" {
		return matrixShape(l.Logits, "logits")
	}
	rows, d, lead, err := matrixShape(l.Hidden, "")
	if err != nil {
		return 0, 0, nil, err
	}
	_, v, _, err := e.heads(l, d)
	return rows, v, lead, err
}

// heads returns l's classifier (loaded once): its one file's, or its
// shards' (Line.WeightShards), each checked against d features, their
// classes added up, and l's bias of them (nil for none).
func (e *Evaluator) heads(l Line, d int) (ws []tensorfile.Tensor, classes int, bias []float32, err error) {
	if l.WeightShards != nil && e.cfg.Distill && e.cfg.ClassWeights != nil {
		return nil, 0, nil, errors.New("a teacher's KL over a classifier's shards takes no class weights (--weights): the shards' partials and KL parts are taken in one pass, which distillation's loss gives without them")
	}
	for _, spec := range append([]string{l.Weight}, l.WeightShards...) {
		if spec == "" {
			continue
		}
		w, err := e.classifier(spec)
		if err != nil {
			return nil, 0, nil, err
		}
		if w.Cols != d {
			return nil, 0, nil, fmt.Errorf("%s: %d features per class, the hidden states of %s have %d (the weight is classes × features, nn.Linear's layout)", spec, w.Cols, l.Hidden, d)
		}
		ws, classes = append(ws, w), classes+w.Rows
	}
	bias, err = e.bias(l, classes)
	return ws, classes, bias, err
}

// matrixShape returns the rows, columns and leading shape (the rows'
// in their file, tensorfile.Tensor.Lead) of the rows of a .npy array (its
// header) or a .safetensors tensor (mapped), of any rank ≥ 2.
func matrixShape(spec, def string) (rows, cols int, lead []int, err error) {
	if tensorfile.IsSafetensors(spec) {
		t, done, err := tensorfile.MapRows(spec, def)
		done()
		return t.Rows, t.Cols, t.Lead, err
	}
	f, err := npyfile.OpenOr(spec, def)
	if err != nil {
		return 0, 0, nil, err
	}
	defer f.Close()
	rows, cols, err = f.Stack()
	if err != nil {
		return 0, 0, nil, err
	}
	return rows, cols, f.Shape[:len(f.Shape)-1], nil
}

// shardsShape returns the rows of the shards of a vocabulary (Line.Shards),
// their classes added up, and the rows' shape, checking that every shard
// has the first one's rows.
func shardsShape(shards []string) (rows, cols int, lead []int, err error) {
	for k, s := range shards {
		r, c, l, err := matrixShape(s, "logits")
		if err != nil {
			return 0, 0, nil, err
		}
		if k == 0 {
			rows, lead = r, l
		} else if r != rows || !slices.Equal(l, lead) {
			return 0, 0, nil, fmt.Errorf("%s: rows %v, the first shard's (%s) are %v: the shards of a vocabulary hold the same rows", s, l, shards[0], lead)
		}
		cols += c
	}
	return rows, cols, lead, nil
}

// classifier returns the classifier spec names, loaded once.
func (e *Evaluator) classifier(spec string) (tensorfile.Tensor, error) {
	if c, ok := e.clfs[spec]; ok {
		return c.t, nil
	}
	t, done, note, err := tensorfile.Classifier(spec)
	if err != nil {
		return t, err
	}
	if note != "" && e.Note != nil {
		e.Note(note)
	}
	e.clfs[spec] = classifier{t, done}
	return t, nil
}

// bias reads l's bias, one per class (nil for none).
func (e *Evaluator) bias(l Line, classes int) ([]float32, error) {
	if l.Bias == "" {
		return nil, nil
	}
	b, err := npyfile.Read(l.Bias, (*npyfile.File).Vector)
	if err != nil {
		return nil, err
	}
	if len(b) != classes {
		of := l.Weight
		if of == "" {
			of = strings.Join(l.WeightShards, " + ")
		}
		return nil, fmt.Errorf("%s: expected %d bias values to match the %d classes of %s, got %d", l.Bias, classes, classes, of, len(b))
	}
	return b, nil
}

// targets reads and checks l's targets and token weights (nil for none)
// for rows rows of cols classes, of shape lead in their file, and checks
// the class weights' length; it returns the sequences' length too
// (seqLen). Targets and token weights come one a row:
// 1-D, or of the rows' shape (lead) where that has more dimensions. With
// Config.Shift they come one an input token and move one place earlier
// in each sequence: row t is scored against target t+1 and a sequence's
// last row is ignored, as Hugging Face's causal language models'
// loss shifts its labels.
func (e *Evaluator) targets(l Line, rows, cols int, lead []int) ([]int32, []float32, int, error) {
	src := l.RowsFile()
	if cw := e.cfg.ClassWeights; cw != nil && len(cw) != cols {
		return nil, nil, 0, fmt.Errorf("%s: expected %d class weights to match the %d classes of %s, got %d", e.cfg.WeightsFile, cols, cols, src, len(cw))
	}
	var tg []int32
	var shape []int
	var err error
	tname := l.Targets
	if l.Targets == "" { // a .safetensors, .npz or .pt of logits and targets (ReadManifest allows no other)
		tg, shape, tname, err = tensorfile.Targets(tensorfile.FilePath(l.Logits))
	} else {
		tg, shape, err = npyfile.ReadShaped(l.Targets, (*npyfile.File).Targets)
	}
	if err != nil {
		return nil, nil, 0, err
	}
	if err := perRow(tname, "targets", len(tg), shape, src, rows, lead); err != nil {
		return nil, nil, 0, err
	}
	seq, err := e.seqLen(tname, shape, src, lead, rows)
	if err != nil {
		return nil, nil, 0, err
	}
	// Checked here as well as in batch so that the target named is the
	// file's, not a chunk's, and nothing is computed before a bad target
	// is seen.
	ignore := e.cfg.IgnoreIndex
	for i, t := range tg {
		if e.cfg.Shift && i%seq == 0 {
			continue // the first token of a sequence is no row's target
		}
		if int(t) != ignore && (t < 0 || int(t) >= cols) {
			return nil, nil, 0, fmt.Errorf("%s: target %d out of bounds [0, %d) at %s (ignore index %d)", tname, t, cols, npyfile.Place(shape, i), ignore)
		}
	}
	if e.cfg.Shift {
		tg = shift(tg, seq, int32(ignore))
	}
	if l.Weights == "" {
		return tg, nil, seq, nil
	}
	w, wshape, err := npyfile.ReadShaped(l.Weights, (*npyfile.File).Flat)
	if err != nil {
		return nil, nil, 0, err
	}
	if err := perRow(l.Weights, "token weights", len(w), wshape, src, rows, lead); err != nil {
		return nil, nil, 0, err
	}
	for i, v := range w {
		if !(v >= 0) || math.IsInf(float64(v), 1) {
			return nil, nil, 0, fmt.Errorf("%s: token weight %g at %s must be finite and ≥ 0", l.Weights, v, npyfile.Place(wshape, i))
		}
	}
	if e.cfg.Shift {
		w = shift(w, seq, 0)
	}
	return tg, w, seq, nil
}

// labels is what a line's rows are scored against: their targets tg,
// token weights tw (nil for none), sequences' length seq (0 for none) and
// teacher tc (nil without Config.Distill).
type labels struct {
	tg  []int32
	tw  []float32
	seq int
	tc  *batch.Teacher
}

// labelsOf reads and checks l's labels for rows rows of cols classes, of
// shape lead in their file (targets, then teacher).
func (e *Evaluator) labelsOf(l Line, rows, cols int, lead []int) (labels, error) {
	tg, tw, seq, err := e.targets(l, rows, cols, lead)
	if err != nil {
		return labels{}, err
	}
	tc, err := e.teacher(l, rows, lead)
	return labels{tg: tg, tw: tw, seq: seq, tc: tc}, err
}

// perRow checks that n values of shape in file name (what they are)
// match the rows of src, of shape lead: as many, and of the same shape
// where both have more than one dimension.
func perRow(name, what string, n int, shape []int, src string, rows int, lead []int) error {
	if n != rows {
		return fmt.Errorf("%s: expected %d %s to match the %d rows of %s, got %d", name, rows, what, rows, src, n)
	}
	if len(shape) > 1 && len(lead) > 1 && !slices.Equal(shape, lead) {
		return fmt.Errorf("%s: %s of shape %v, the rows of %s are %v: they must match one for one", name, what, shape, src, lead)
	}
	return nil
}

// seqLen returns the length of the sequences of a line's rows: the last
// dimension of its targets' shape or its rows' (lead) where either has
// more than one, else Config.SeqLen (0 for none); --seq-len must agree
// with the files', Config.Shift needs one that divides the rows, and
// Config.ByPosition one.
func (e *Evaluator) seqLen(tname string, shape []int, src string, lead []int, rows int) (int, error) {
	seq, from := e.cfg.SeqLen, ""
	switch {
	case len(shape) > 1:
		seq, from = shape[len(shape)-1], fmt.Sprintf("%s's shape %v", tname, shape)
	case len(lead) > 1:
		seq, from = lead[len(lead)-1], fmt.Sprintf("%s's rows %v", src, lead)
	}
	if e.cfg.SeqLen > 0 && from != "" && e.cfg.SeqLen != seq {
		return 0, fmt.Errorf("--seq-len %d, but the sequences are %d long (%s)", e.cfg.SeqLen, seq, from)
	}
	if seq == 0 && e.cfg.ByPosition {
		return 0, fmt.Errorf("%s: the loss by position (--by-position, or --plot without --calibration) needs the sequences' length: targets [batch × sequence], rows [batch × sequence × vocab], or --seq-len T", tname)
	}
	if !e.cfg.Shift {
		return seq, nil
	}
	if seq == 0 {
		return 0, fmt.Errorf("%s: --shift needs the sequences' length: targets [batch × sequence], rows [batch × sequence × vocab], or --seq-len", tname)
	}
	if rows%seq != 0 {
		return 0, fmt.Errorf("%s: --shift: %d rows are not whole sequences of %d", tname, rows, seq)
	}
	return seq, nil
}

// shift returns v one place earlier in each sequence of n: v[i+1] at i,
// last at each sequence's end.
func shift[T any](v []T, n int, last T) []T {
	out := make([]T, len(v))
	for i := range out {
		if (i+1)%n == 0 {
			out[i] = last
		} else {
			out[i] = v[i+1]
		}
	}
	return out
}

// teacher reads and checks l's teacher (nil without Config.Distill) for
// rows rows of shape lead in their file (a teacher of [batch × sequence
// × k] for rows of [batch × sequence] must have their shape); its rows'
// classes and log-probabilities are checked by batch (KL), which names
// the row and the entry.
func (e *Evaluator) teacher(l Line, rows int, lead []int) (*batch.Teacher, error) {
	if !e.cfg.Distill {
		if l.TeacherIDs != "" {
			return nil, errors.New("a teacher's top-k given without the evaluation's distillation (every line names one, or none)")
		}
		return nil, nil
	}
	if l.TeacherIDs == "" || l.TeacherLogProbs == "" {
		return nil, errors.New("no teacher's top-k (teacher_ids, teacher_logprobs): every line of a distillation names one")
	}
	f, err := npyfile.Open(l.TeacherIDs)
	if err != nil {
		return nil, err
	}
	ids, n, k, err := f.IntMatrix("the teacher's classes")
	f.Close()
	if err != nil {
		return nil, err
	}
	src := l.RowsFile()
	if err := perRow(l.TeacherIDs, "rows of the teacher's classes", n, f.Shape[:len(f.Shape)-1], src, rows, lead); err != nil {
		return nil, err
	}
	if f, err = npyfile.Open(l.TeacherLogProbs); err != nil {
		return nil, err
	}
	lp, n2, k2, err := f.FloatMatrix("the teacher's log-probabilities")
	f.Close()
	switch {
	case err != nil:
		return nil, err
	case n2 != n || k2 != k:
		return nil, fmt.Errorf("%s: the teacher's log-probabilities are %d × %d, its classes (%s) %d × %d", l.TeacherLogProbs, n2, k2, l.TeacherIDs, n, k)
	case k == 0 && n > 0:
		return nil, fmt.Errorf("%s: a teacher's top-k of k = 0", l.TeacherIDs)
	}
	return &batch.Teacher{K: max(k, 1), IDs: ids, LogProbs: lp}, nil
}

// klOf returns Σ w_i·KL_i over the counted rows of targets tg (token
// weights tw, nil for all 1) of the KLs kl.
func (e *Evaluator) klOf(kl []float64, tg []int32, tw []float32) float64 {
	s := 0.0
	for i, t := range tg {
		if int(t) == e.cfg.IgnoreIndex {
			continue
		}
		w := 1.0
		if tw != nil {
			w = float64(tw[i])
		}
		s += w * kl[i]
	}
	return s
}

// teacherError is err of the teacher's data with the files named.
func teacherError(l Line, err error) error {
	var te *batch.TeacherError
	if errors.As(err, &te) {
		return fmt.Errorf("%s, %s: %w", l.TeacherIDs, l.TeacherLogProbs, err)
	}
	return err
}

func (e *Evaluator) progress(rows int) {
	if e.Progress != nil {
		e.Progress(rows)
	}
}

// linear evaluates a hidden-states line through the fused linear.
func (e *Evaluator) linear(ctx context.Context, dev device.Device, l Line) (Result, error) {
	// H and W are computed in their files' types: a bfloat16 or float16
	// classifier is widened a tile at a time (on the CPU), not whole.
	h, done, err := tensorfile.ReadRows(l.Hidden, "")
	if err != nil {
		return Result{}, err
	}
	defer done()
	ws, v, b, err := e.heads(l, h.Cols)
	if err != nil {
		return Result{}, err
	}
	n, d := h.Rows, h.Cols
	lb, err := e.labelsOf(l, n, v, h.Lead)
	if err != nil {
		return Result{}, err
	}
	tg, tw, seq, tc := lb.tg, lb.tw, lb.seq, lb.tc
	opts := append(e.cfg.rowOptions(), batch.Budget(e.cfg.Budget))
	if tw != nil {
		opts = append(opts, batch.TokenWeights(tw))
	}
	if l.WeightShards != nil {
		return e.linearShards(ctx, dev, l, hiddenLine{labels: lb, h: h, ws: ws, b: b, v: v, opts: opts})
	}
	w := ws[0]
	if e.cfg.partials() { // through the partials of the whole vocabulary (a shard of all of it)
		opts = append(opts, batch.Shard(0, v))
	}
	ce, err := batch.NewLinear(dev, opts...)
	if err != nil {
		return Result{}, err
	}
	hm, wm := matrixOf(h), matrixOf(w)
	var res batch.Result
	var g batch.LinearGrads
	grads := e.cfg.GradH || e.cfg.GradW
	if e.cfg.GradH {
		g.H = batch.NewGrad(make([]float32, n*d), n, d)
	}
	if e.cfg.GradW {
		g.W = batch.NewGrad(make([]float32, v*d), v, d)
	}
	r, err := e.newResult(n, h.Lead)
	if err != nil {
		return Result{}, err
	}
	switch {
	case e.cfg.partials():
		part := batch.NewPartials(n)
		var kl []float64
		if tc != nil { // the KL's logits from the partials' own products (PartialsKL)
			kl = make([]float64, n)
			if err := ce.PartialsKL(ctx, part, kl, hm, wm, b, tg, *tc); err != nil {
				return Result{}, teacherError(l, err)
			}
		} else if err := ce.Partials(ctx, part, hm, wm, b, tg); err != nil {
			return Result{}, err
		}
		var ranks []batch.Rank
		if e.cfg.TopK != nil {
			ranks = make([]batch.Rank, n)
			if err := ce.Ranks(ctx, ranks, hm, wm, b, tg, part); err != nil {
				return Result{}, err
			}
		}
		if res, err = e.finish(ce, part, ranks, tg, &r); err != nil {
			return Result{}, err
		}
		if tc != nil {
			res.KL = e.klOf(kl, tg, tw)
			r.KLRows = kl
		}
		if grads {
			err = ce.Backward(ctx, g, hm, wm, b, tg, part, batch.One)
		}
	case grads:
		res, err = ce.ForwardBackward(ctx, g, hm, wm, b, tg, batch.One)
	default:
		res, err = ce.Forward(ctx, hm, wm, b, tg)
	}
	if err != nil {
		return Result{}, err
	}
	e.progress(n)
	r.Stats, r.Rows, r.Correct, r.GradH, r.GradW, r.Lead = res.Stats, res.Losses, res.CorrectRows, g.H.Matrix(), g.W.Matrix(), h.Lead
	return e.positions(r, tg, tw, seq), nil
}

// A hiddenLine is a hidden-states line read and checked: its labels, its
// hidden states h, its classifier's files ws (their classes v in all) and
// bias b, and the options of its loss (with the budget and token
// weights).
type hiddenLine struct {
	labels
	h    tensorfile.Tensor
	ws   []tensorfile.Tensor
	b    []float32
	v    int
	opts []batch.Option
}

// linearShards evaluates the hidden states of hl through a classifier
// split by vocabulary across files (Line.WeightShards; hl.ws, in class
// order, and the bias of all their classes), as a tensor-parallel model's
// ranks would: each shard's partials over its classes (a Linear with
// batch.Shard; with a teacher, its KL parts from the same products,
// PartialsWithKL) merged in class order (MergeKL), then finished over the
// whole vocabulary; with Config.TopK each shard ranks the target among
// its classes and the ranks merge; dL/dH is the sum of the shards' parts
// (Backward adds) and dL/dW their rows in class order.
func (e *Evaluator) linearShards(ctx context.Context, dev device.Device, l Line, hl hiddenLine) (Result, error) {
	n, d := hl.h.Rows, hl.h.Cols
	// Each shard's Linear, and with a teacher its Distill's (without class
	// weights: heads refuses them), whose partials come with their KL parts.
	lins, klins := make([]*batch.Linear, len(hl.ws)), make([]*batch.Linear, len(hl.ws))
	c0s := make([]int, len(hl.ws))
	var err error
	for k, c0 := 0, 0; k < len(hl.ws); k++ {
		sh := batch.Shard(c0, hl.v)
		if lins[k], err = batch.NewLinear(dev, append(slices.Clip(hl.opts), sh)...); err != nil {
			return Result{}, err
		}
		if hl.tc != nil {
			if klins[k], err = batch.NewLinear(dev, append(slices.Clip(hl.opts), sh, batch.Distill(*hl.tc, 0))...); err != nil {
				return Result{}, err
			}
		}
		c0s[k] = c0
		c0 += hl.ws[k].Rows
	}
	hm := matrixOf(hl.h)
	bias := func(k int) []float32 { return sub(hl.b, c0s[k], c0s[k]+hl.ws[k].Rows) }
	part, p := batch.NewPartials(n), batch.NewPartials(n)
	var kp, q []batch.KLPart
	if hl.tc != nil {
		kp, q = make([]batch.KLPart, n), make([]batch.KLPart, n)
	}
	for k, w := range hl.ws {
		dst, kdst := part, kp // the first shard's, into which the later ones' merge
		if k > 0 {
			dst, kdst = p, q
			copy(dst, batch.NewPartials(n))
			clear(kdst)
		}
		if hl.tc != nil {
			err = klins[k].PartialsWithKL(ctx, dst, kdst, hm, matrixOf(w), bias(k), hl.tg)
		} else {
			err = lins[k].Partials(ctx, dst, hm, matrixOf(w), bias(k), hl.tg)
		}
		if err != nil {
			return Result{}, teacherError(l, fmt.Errorf("%s: %w", l.WeightShards[k], err))
		}
		for i := range part {
			switch {
			case k == 0:
			case hl.tc != nil:
				batch.MergeKL(&part[i], &kp[i], p[i], q[i])
			default:
				part[i].Merge(p[i])
			}
		}
	}
	var ranks []batch.Rank
	if e.cfg.TopK != nil {
		ranks = make([]batch.Rank, n)
		rk := make([]batch.Rank, n)
		for k, w := range hl.ws {
			clear(rk)
			if err := lins[k].Ranks(ctx, rk, hm, matrixOf(w), bias(k), hl.tg, part); err != nil {
				return Result{}, fmt.Errorf("%s: %w", l.WeightShards[k], err)
			}
			for i := range ranks {
				ranks[i].Merge(rk[i])
			}
		}
	}
	r, err := e.newResult(n, hl.h.Lead)
	if err != nil {
		return Result{}, err
	}
	// Any shard's Linear finishes: its vocabulary is the whole one.
	res, err := e.finish(lins[0], part, ranks, hl.tg, &r)
	if err != nil {
		return Result{}, err
	}
	if hl.tc != nil {
		kr, err := klins[0].FinishKL(part, kp, hl.tg)
		if err != nil {
			return Result{}, teacherError(l, err)
		}
		res.KL, r.KLRows = kr.KL, kr.KLRows
	}
	var g batch.LinearGrads
	if e.cfg.GradH {
		g.H = batch.NewGrad(make([]float32, n*d), n, d)
	}
	var dw []float32
	if e.cfg.GradW {
		dw = make([]float32, hl.v*d)
	}
	for k, w := range hl.ws {
		if !e.cfg.GradH && !e.cfg.GradW {
			break
		}
		gk := batch.LinearGrads{H: g.H}
		if dw != nil {
			gk.W = batch.NewGrad(dw[c0s[k]*d:(c0s[k]+w.Rows)*d], w.Rows, d)
		}
		if err := lins[k].Backward(ctx, gk, hm, matrixOf(w), bias(k), hl.tg, part, batch.One); err != nil {
			return Result{}, fmt.Errorf("%s: %w", l.WeightShards[k], err)
		}
	}
	if dw != nil {
		g.W = batch.NewGrad(dw, hl.v, d)
	}
	e.progress(n)
	r.Stats, r.Rows, r.Correct, r.GradH, r.GradW = res.Stats, res.Losses, res.CorrectRows, g.H.Matrix(), g.W.Matrix()
	return e.positions(r, hl.tg, hl.tw, hl.seq), nil
}

// matrixOf returns the batch matrix of t, in its type.
func matrixOf(t tensorfile.Tensor) batch.Matrix {
	if t.Half != nil {
		return batch.NewHalfMatrix(t.Half, halfType(t.BF16), t.Rows, t.Cols)
	}
	return batch.NewMatrix(t.F32, t.Rows, t.Cols)
}

// halfType returns the batch type of a half-precision tensor.
func halfType(bf16 bool) batch.DType {
	if bf16 {
		return batch.BF16
	}
	return batch.F16
}

// shards evaluates a line of logits split by vocabulary across files
// (Line.Shards): a chunk of rows at a time, each shard's partials over its
// classes (a Loss with batch.Shard) merged in class order, as a
// tensor-parallel model's all-reduce would merge them, then finished over
// the whole vocabulary (and, with Config.TopK, ranked in each shard and
// the ranks merged; with a teacher, each shard's KL part taken against the
// merged partials and the parts merged, batch.Loss.KLPartials).
func (e *Evaluator) shards(ctx context.Context, dev device.Device, l Line) (Result, error) {
	rows, vocab, lead, err := shardsShape(l.Shards)
	if err != nil {
		return Result{}, err
	}
	lb, err := e.labelsOf(l, rows, vocab, lead)
	if err != nil {
		return Result{}, err
	}
	tg, tw, seq, tc := lb.tg, lb.tw, lb.seq, lb.tc
	opts := e.cfg.rowOptions()
	srcs := make([]logitsFile, len(l.Shards))
	ces := make([]*batch.Loss, len(l.Shards))
	c0s := make([]int, len(l.Shards)) // each shard's first class
	widest, c0 := 0, 0
	for k, s := range l.Shards {
		if srcs[k], err = openLogits(s); err != nil {
			return Result{}, err
		}
		defer srcs[k].close()
		if ces[k], err = batch.New(dev, append(opts, batch.Shard(c0, vocab))...); err != nil {
			return Result{}, err
		}
		c0s[k] = c0
		c0 += srcs[k].cols
		widest = max(widest, srcs[k].cols)
	}
	r, err := e.newResult(rows, lead)
	if err != nil {
		return Result{}, err
	}
	step := max(1, ChunkBytes/4/max(widest, 1))
	bufs := make([][]float32, len(srcs))
	xs := make([]batch.Matrix, len(srcs))
	for lo := 0; lo < rows; lo += step {
		hi := min(rows, lo+step)
		part := batch.NewPartials(hi - lo)
		for k, src := range srcs {
			if src.f == nil {
				xs[k] = src.whole.RowRange(lo, hi)
			} else {
				if bufs[k] == nil {
					bufs[k] = make([]float32, min(step, rows)*src.cols)
				}
				if err := src.f.Rows(bufs[k], lo, hi); err != nil {
					return Result{}, err
				}
				xs[k] = batch.NewMatrix(bufs[k][:(hi-lo)*src.cols], hi-lo, src.cols)
			}
			p := part // the first shard's, into which the later ones' merge
			if k > 0 {
				p = batch.NewPartials(hi - lo)
			}
			if err := ces[k].Partials(ctx, p, xs[k], tg[lo:hi]); err != nil {
				return Result{}, fmt.Errorf("%s: %w", l.Shards[k], err)
			}
			if k > 0 {
				for i := range part {
					part[i].Merge(p[i])
				}
			}
		}
		var ranks []batch.Rank
		if e.cfg.TopK != nil {
			ranks = make([]batch.Rank, hi-lo)
			rk := make([]batch.Rank, hi-lo)
			for k := range srcs {
				clear(rk)
				if err := ces[k].Ranks(ctx, rk, xs[k], tg[lo:hi], part); err != nil {
					return Result{}, fmt.Errorf("%s: %w", l.Shards[k], err)
				}
				for i := range ranks {
					ranks[i].Merge(rk[i])
				}
			}
		}
		fin := ces[0]
		if tw != nil { // the chunk's rows' weights
			if fin, err = batch.New(dev, append(opts, batch.Shard(0, vocab), batch.TokenWeights(tw[lo:hi]))...); err != nil {
				return Result{}, err
			}
		}
		res, err := e.finish(fin, part, ranks, tg[lo:hi], &r)
		if err != nil {
			return Result{}, err
		}
		if tc != nil {
			kl, err := e.shardsKL(ctx, dev, xs, c0s, vocab, part, tg[lo:hi], tc.RowRange(lo, hi))
			if err != nil {
				return Result{}, teacherError(l, rowsFrom(err, lo))
			}
			res.KL, r.KLRows = e.klOf(kl, tg[lo:hi], sub(tw, lo, hi)), append(r.KLRows, kl...)
		}
		r.Stats.Merge(res.Stats)
		r.Rows, r.Correct = append(r.Rows, res.Losses...), append(r.Correct, res.CorrectRows...)
		e.progress(hi - lo)
	}
	return e.positions(r, tg, tw, seq), nil
}

// shardsKL returns each row's KL of a chunk of rows of logits shards
// (their rows xs, first classes c0s, of a vocabulary of vocab classes)
// given their partials merged over the whole vocabulary, their targets tg
// and teacher t (0 for an ignored row): each shard's KL parts taken
// against the merged partials (batch.Loss.KLPartials) and merged, and each
// row's KL from them, as the unsplit logits' Loss.KL gives it. The
// teacher's Losses have the loss's options but the class weights, which
// the KL does not use (and Distill refuses).
func (e *Evaluator) shardsKL(ctx context.Context, dev device.Device, xs []batch.Matrix, c0s []int, vocab int, part []batch.Partial, tg []int32, t batch.Teacher) ([]float64, error) {
	opts := append(e.cfg.options(), batch.Distill(t, 0))
	kp, kk := make([]batch.KLPart, len(tg)), make([]batch.KLPart, len(tg))
	for k, x := range xs {
		kl, err := batch.New(dev, append(opts, batch.Shard(c0s[k], vocab))...)
		if err != nil {
			return nil, err
		}
		clear(kk)
		if err := kl.KLPartials(ctx, kk, x, tg, part); err != nil {
			return nil, err
		}
		for i := range kp {
			kp[i].Merge(kk[i])
		}
	}
	fin, err := batch.New(dev, append(opts, batch.Shard(0, vocab), batch.KeepRows())...)
	if err != nil {
		return nil, err
	}
	res, err := fin.FinishKL(part, kp, tg)
	return res.KLRows, err
}

// A logitsFile is a file of logits rows: mapped (whole) where they can
// be (a .safetensors tensor; a float32, float16 or bfloat16 .npy array in
// C order and the machine's byte order), else read a chunk at a time (f).
type logitsFile struct {
	whole      batch.Matrix
	f          *npyfile.File // nil when mapped
	rows, cols int
	lead       []int // the rows' shape in the file
	close      func()
}

// openLogits opens the logits of spec (a .safetensors tensor, or an
// array of a .npy, .npz or .pt; "logits" by default), read-only: the
// forward pass only reads.
func openLogits(spec string) (logitsFile, error) {
	if tensorfile.IsSafetensors(spec) {
		t, done, err := tensorfile.MapRows(spec, "logits")
		if err != nil {
			return logitsFile{}, err
		}
		return logitsFile{whole: matrixOf(t), rows: t.Rows, cols: t.Cols, lead: t.Lead, close: done}, nil
	}
	f, err := npyfile.OpenOr(spec, "logits")
	if err != nil {
		return logitsFile{}, err
	}
	rows, cols, err := f.Stack()
	if err != nil {
		f.Close()
		return logitsFile{}, err
	}
	lf := logitsFile{rows: rows, cols: cols, lead: f.Shape[:len(f.Shape)-1]}
	unmap := func() error { return nil }
	if data, un, err := f.Map(); err == nil {
		lf.whole, unmap = batch.NewMatrix(data, rows, cols), un
	} else if bits, un, err := f.MapF16(); err == nil {
		lf.whole, unmap = batch.NewHalfMatrix(bits, batch.F16, rows, cols), un
	} else if bits, un, err := f.MapBF16(); err == nil { // a .pt's
		lf.whole, unmap = batch.NewHalfMatrix(bits, batch.BF16, rows, cols), un
	} else {
		lf.f = f // streamed
	}
	lf.close = func() {
		unmap()
		f.Close()
	}
	return lf, nil
}

// logits evaluates a logits line: a .safetensors tensor or a native
// float32 or float16 .npy is computed where it lies, mapped, in its own
// type; any other .npy is streamed in row chunks, the next read while one
// is computed.
func (e *Evaluator) logits(ctx context.Context, dev device.Device, l Line) (Result, error) {
	src, err := openLogits(l.Logits)
	if err != nil {
		return Result{}, err
	}
	defer src.close()
	whole, lf, rows, cols, lead := src.whole, src.f, src.rows, src.cols, src.lead
	lb, err := e.labelsOf(l, rows, cols, lead)
	if err != nil {
		return Result{}, err
	}
	tg, tw, seq, tc := lb.tg, lb.tw, lb.seq, lb.tc
	opts := e.cfg.rowOptions()
	if e.cfg.partials() { // through the partials of the whole vocabulary (a shard of all of it)
		opts = append(opts, batch.Shard(0, cols))
	}
	ce, err := batch.New(dev, opts...)
	if err != nil {
		return Result{}, err
	}
	r, err := e.newResult(rows, lead)
	if err != nil {
		return Result{}, err
	}

	step := max(1, ChunkBytes/4/max(cols, 1))
	// compute adds rows [lo, hi) of x (its rows) to r.
	compute := func(x batch.Matrix, lo, hi int) error {
		ce := ce
		if tw != nil { // the chunk's rows' weights
			var err error
			if ce, err = batch.New(dev, append(opts, batch.TokenWeights(tw[lo:hi]))...); err != nil {
				return err
			}
		}
		var res batch.Result
		var err error
		if e.cfg.partials() {
			part := batch.NewPartials(hi - lo)
			if err := ce.Partials(ctx, part, x, tg[lo:hi]); err != nil {
				return err
			}
			var ranks []batch.Rank
			if e.cfg.TopK != nil {
				ranks = make([]batch.Rank, hi-lo)
				if err := ce.Ranks(ctx, ranks, x, tg[lo:hi], part); err != nil {
					return err
				}
			}
			if res, err = e.finish(ce, part, ranks, tg[lo:hi], &r); err != nil {
				return err
			}
			if tc != nil {
				kl := make([]float64, hi-lo)
				if err := ce.KL(ctx, kl, x, tg[lo:hi], part, tc.RowRange(lo, hi)); err != nil {
					return teacherError(l, rowsFrom(err, lo))
				}
				res.KL = e.klOf(kl, tg[lo:hi], sub(tw, lo, hi))
				r.KLRows = append(r.KLRows, kl...)
			}
		} else if res, err = ce.Forward(ctx, x, tg[lo:hi]); err != nil {
			return err
		}
		r.Stats.Merge(res.Stats)
		r.Rows, r.Correct = append(r.Rows, res.Losses...), append(r.Correct, res.CorrectRows...)
		e.progress(hi - lo)
		return nil
	}
	if lf == nil { // mapped
		for lo := 0; lo < rows; lo += step {
			hi := min(rows, lo+step)
			if err := compute(whole.RowRange(lo, hi), lo, hi); err != nil {
				return Result{}, err
			}
		}
		return e.positions(r, tg, tw, seq), nil
	}
	// The next chunk is read while this one is computed: two buffers, the
	// reader one chunk ahead.
	type chunk struct {
		buf    []float32
		lo, hi int
		err    error
	}
	free := make(chan []float32, 2)
	for range 2 {
		free <- make([]float32, min(step, rows)*cols)
	}
	full := make(chan chunk, 1)
	done := make(chan struct{})
	defer close(done)
	go func() {
		defer close(full)
		for lo := 0; lo < rows; lo += step {
			var buf []float32
			select {
			case buf = <-free:
			case <-done:
				return
			}
			hi := min(rows, lo+step)
			err := lf.Rows(buf, lo, hi)
			select {
			case full <- chunk{buf, lo, hi, err}:
			case <-done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range full {
		if c.err != nil {
			return Result{}, c.err
		}
		if err := compute(batch.NewMatrix(c.buf[:(c.hi-c.lo)*cols], c.hi-c.lo, cols), c.lo, c.hi); err != nil {
			return Result{}, err
		}
		free <- c.buf
	}
	return e.positions(r, tg, tw, seq), nil
}

// positions adds to r what is taken from its per-row losses, for
// sequences of n rows (0: none): the loss by position (Config.SeqLen or
// ByPosition), row i's loss and its share of the mean's denominator (its
// token weight times its target's class weight, 1 without them; 0 when
// ignored) at position i mod n; and the standard error's sums
// of the mean loss and of the accuracy (Config.StdErr: of each cluster,
// its rows' loss sum and its share of the denominator; its correct rows
// and its counted rows) over the sequences i / n (each row alone without
// them). It drops the per-row losses when they were computed for these
// alone.
func (e *Evaluator) positions(r Result, tg []int32, tw []float32, n int) Result {
	byPos := e.cfg.byPosition() && n > 0
	if !byPos && !e.cfg.StdErr {
		return r
	}
	var p *Positions
	if byPos {
		p = NewPositions(n)
		if e.cfg.StdErr {
			p.Spread = make([]Spread, n)
		}
	}
	var sp, acc Spread
	sums, hits := clusters{c: -1, done: sp.Add}, clusters{c: -1, done: acc.Add}
	var kls Spread
	klsum := clusters{c: -1, done: kls.Add}
	klOn := e.cfg.StdErr && r.Distill
	var top []Spread
	var tops []clusters
	var mrr, ent Spread
	rr, hs := clusters{c: -1, done: mrr.Add}, clusters{c: -1, done: ent.Add}
	ranked := e.cfg.StdErr && r.Ranks != nil
	if ranked {
		top, tops = spreads(len(r.Ranks.K))
	}
	e.counted(tg, tw, n, func(i, c int, d float64) {
		if p != nil {
			p.add(i%n, float64(r.Rows[i]), d)
		}
		sums.add(c, float64(r.Rows[i]), d)
		hits.add(c, one(r.Correct[i]), 1)
		if klOn {
			klsum.add(c, d*r.KLRows[i], d)
		}
		for j := range tops {
			tops[j].add(c, one(r.Greater[i] < int64(r.Ranks.K[j])), 1)
		}
		if ranked {
			rr.add(c, reciprocal(r.Greater[i]), 1)
			hs.add(c, r.Entropies[i], 1)
		}
	})
	sums.flush()
	hits.flush()
	klsum.flush()
	rr.flush()
	hs.flush()
	for j := range tops {
		tops[j].flush()
	}
	r.Positions = p
	if e.cfg.StdErr {
		r.Spread, r.AccSpread, r.TopKSpread = &sp, &acc, top
	}
	if klOn {
		r.KLSpread = &kls
	}
	if ranked {
		r.MRRSpread, r.EntSpread = &mrr, &ent
	}
	if !e.cfg.KeepRows {
		r.Rows, r.Correct, r.Greater, r.Entropies, r.KLRows = nil, nil, nil, nil, nil
	}
	return r
}

// reciprocal returns a row's reciprocal rank 1 / (1 + g) of its count
// of classes above the target, 0 for a NaN row's (MaxInt64), as
// RankStats sums it.
func reciprocal(g int64) float64 {
	if g == math.MaxInt64 {
		return 0
	}
	return 1 / float64(1+g)
}

// one returns 1 for true, 0 for false.
func one(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// counted calls f with each counted row i of targets tg (token weights
// tw, nil for all 1), in order: its cluster c, the sequence i / n (i
// itself for n = 0: no sequences), and d, its share of the mean's
// denominator: its token weight times its target's class weight (1
// without them).
func (e *Evaluator) counted(tg []int32, tw []float32, n int, f func(i, c int, d float64)) {
	for i, t := range tg {
		if int(t) == e.cfg.IgnoreIndex {
			continue
		}
		d := 1.0
		if tw != nil {
			d = float64(tw[i])
		}
		if cw := e.cfg.ClassWeights; cw != nil {
			d *= float64(cw[t])
		}
		c := i
		if n > 0 {
			c = i / n
		}
		f(i, c, d)
	}
}

// A Total is the merged statistics of some lines: their Stats, their
// loss by position (with Config.SeqLen), and how many they are. Totals of
// disjoint lines merge (Merge) in any order.
type Total struct {
	Stats       batch.Stats
	Text        Text               // the lines' Text, added up
	Positions   *Positions         // nil without a sequence length
	Spread      *Spread            // nil without Config.StdErr
	AccSpread   *Spread            // nil without Config.StdErr
	TopKSpread  []Spread           // nil without Config.StdErr and TopK
	MRRSpread   *Spread            // nil without Config.StdErr and TopK
	EntSpread   *Spread            // nil without Config.StdErr and TopK
	KLSpread    *Spread            // nil without Config.StdErr and Distill
	Calibration *batch.Calibration // nil without Config.Calibration or TopK
	Ranks       *batch.RankStats   // nil without Config.TopK
	Distill     bool               // Config.Distill: Stats.KL is the teacher's KL
	Files       int
}

// TotalOf returns the total of one line's result.
func TotalOf(r Result) Total {
	return Total{Stats: r.Stats, Text: r.Text, Positions: r.Positions, Spread: r.Spread, AccSpread: r.AccSpread, TopKSpread: r.TopKSpread, MRRSpread: r.MRRSpread, EntSpread: r.EntSpread, KLSpread: r.KLSpread, Calibration: r.Calibration, Ranks: r.Ranks, Distill: r.Distill, Files: 1}
}

// Add adds one line's result.
func (t *Total) Add(r Result) error { return t.Merge(TotalOf(r)) }

// Merge adds o, a total of other lines of the same evaluation (o's sums
// are copied, not shared).
func (t *Total) Merge(o Total) error {
	if (t.Positions == nil) != (o.Positions == nil) && t.Files > 0 && o.Files > 0 {
		return fmt.Errorf("a total with the loss by position merged with one without")
	}
	if (t.Spread == nil) != (o.Spread == nil) && t.Files > 0 && o.Files > 0 {
		return fmt.Errorf("a total with the standard error merged with one without")
	}
	if k := t.Text.differs(o.Text); k != "" && t.Files > 0 && o.Files > 0 {
		return fmt.Errorf("a total with the text's %s merged with one without", k)
	}
	if (t.Calibration == nil) != (o.Calibration == nil) && t.Files > 0 && o.Files > 0 {
		return fmt.Errorf("a total with the calibration merged with one without")
	}
	if o.Calibration != nil {
		if t.Calibration == nil {
			t.Calibration = new(batch.Calibration)
		}
		t.Calibration.Merge(*o.Calibration)
	}
	if (t.Ranks == nil) != (o.Ranks == nil) && t.Files > 0 && o.Files > 0 {
		return fmt.Errorf("a total with the rank statistics merged with one without")
	}
	if t.Distill != o.Distill && t.Files > 0 && o.Files > 0 {
		return fmt.Errorf("a total with a teacher's KL merged with one without")
	}
	t.Distill = t.Distill || o.Distill
	if o.Ranks != nil {
		if t.Ranks == nil {
			rs, _ := batch.NewRankStats(o.Ranks.K)
			t.Ranks = &rs
		}
		if err := t.Ranks.Merge(*o.Ranks); err != nil {
			return err
		}
	}
	if t.Positions == nil && o.Positions != nil {
		t.Positions = new(Positions)
	}
	if o.Positions != nil {
		if err := t.Positions.Merge(o.Positions); err != nil {
			return err
		}
	}
	mergeSpread(&t.Spread, o.Spread)
	mergeSpread(&t.AccSpread, o.AccSpread)
	mergeSpread(&t.KLSpread, o.KLSpread)
	mergeSpread(&t.MRRSpread, o.MRRSpread)
	mergeSpread(&t.EntSpread, o.EntSpread)
	if err := mergeSpreads(&t.TopKSpread, o.TopKSpread); err != nil {
		return err
	}
	t.Stats.Merge(o.Stats)
	t.Text.Add(o.Text)
	t.Files += o.Files
	return nil
}

// mergeSpread adds o to *t, nil for none (a new Spread where *t is nil).
func mergeSpread(t **Spread, o *Spread) {
	if o == nil {
		return
	}
	if *t == nil {
		*t = new(Spread)
	}
	(*t).Merge(*o)
}

// mergeSpreads adds o to *t element by element, nil for none (a copy of
// o where *t is nil).
func mergeSpreads(t *[]Spread, o []Spread) error {
	switch {
	case o == nil:
	case *t == nil:
		*t = slices.Clone(o)
	case len(*t) != len(o):
		return fmt.Errorf("the top-k's standard errors of %d k merged with %d", len(*t), len(o))
	default:
		for j := range o {
			(*t)[j].Merge(o[j])
		}
	}
	return nil
}

// rowsFrom returns err with a teacher's row numbered from the file's
// first, for a chunk of rows from lo.
func rowsFrom(err error, lo int) error {
	var te *batch.TeacherError
	if errors.As(err, &te) {
		c := *te
		c.Row += lo
		return &c
	}
	return err
}

// sub returns s[lo:hi], nil for a nil s.
func sub[T any](s []T, lo, hi int) []T {
	if s == nil {
		return nil
	}
	return s[lo:hi]
}
