package batch

import (
	"context"
	"math"
	"slices"
	"unsafe"

	"github.com/xentlab/xent/ce"
	"github.com/xentlab/xent/device"
)

// Matrix is a row-major matrix of element type Type: row i is
// Data[i*Stride : i*Stride+Cols] for float32 (F32, the zero Type), or
// Half[i*Stride : i*Stride+Cols], the 16-bit elements, for bfloat16 (BF16)
// and float16 (F16); a Stride of 0 means Cols. The arithmetic is float32
// whatever the type. A Matrix from DeviceMatrix.Matrix refers to rows
// held in a device's memory instead.
type Matrix = ce.Matrix

// DType is a matrix's element type.
type DType = ce.DType

// The element types.
const (
	F32  = ce.F32
	BF16 = ce.BF16
	F16  = ce.F16
)

// NewMatrix returns the dense matrix view of data as rows × cols.
func NewMatrix(data []float32, rows, cols int) Matrix {
	return Matrix{Data: data, Rows: rows, Cols: cols, Stride: cols}
}

// NewHalfMatrix returns the dense matrix view of bits, the elements of a
// bfloat16 (BF16) or float16 (F16) matrix, as rows × cols.
func NewHalfMatrix(bits []uint16, t DType, rows, cols int) Matrix {
	return Matrix{Half: bits, Type: t, Rows: rows, Cols: cols, Stride: cols}
}

// Partial is what a shard of the vocabulary gives for one row (see
// Loss.Partials): partials of disjoint shards merge with Merge.
type Partial = ce.Partial

// Rank is what a shard of the vocabulary gives for one row's rank and
// entropy, given its merged Partial (see ce.Rank): Loss.Ranks, merged
// with Rank.Merge, summed up by Loss.RankStats.
type Rank = ce.Rank

// Loss is a configured cross-entropy on one device. It is immutable and
// safe for concurrent use.
type Loss struct {
	dev device.Device
	cfg config
}

// Result is the outcome of a call: the reduced loss, the sums behind it,
// and the per-row losses when asked for.
type Result struct {
	// Loss is the reduced loss: Stats.Mean() for Mean, Stats.Sum for Sum,
	// NaN for None (the losses are in Losses).
	Loss float64
	Stats
	// Losses holds the per-row losses (0 for ignored rows) for None, or
	// with KeepRows.
	Losses []float32
	// LSE holds the per-row log-sum-exp of the (capped) logits, with
	// KeepRows (0 for ignored rows): what a backward pass or a z-loss of
	// one's own needs.
	LSE []float32
	// CorrectRows holds, with KeepRows, whether each row's argmax is its
	// target (Stats.Correct's rows; false for ignored rows and NaN
	// losses): what a paired accuracy difference or a per-sequence
	// exact match needs.
	CorrectRows []bool
	// KLRows holds, with KeepRows, each row's KL(teacher ‖ student) of a
	// distillation (Distill; 0 for ignored rows, not token-weighted).
	KLRows []float64
}

// New returns a Loss computing on dev with the options given.
func New(dev device.Device, opts ...Option) (*Loss, error) {
	if dev == nil {
		return nil, errorf(ErrOption, "nil device")
	}
	c := config{ignore: DefaultIgnoreIndex, reduction: Mean, temp: 1}
	for _, o := range opts {
		o(&c)
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &Loss{dev: dev, cfg: c}, nil
}

// Device returns the device the loss computes on.
func (l *Loss) Device() device.Device { return l.dev }

// checkMatrix validates a matrix for dev and returns it with its stride
// set: host rows long enough, or rows held by dev.
func checkMatrix(dev device.Device, name string, m Matrix) (Matrix, error) {
	if m.Stride == 0 {
		m.Stride = m.Cols
	}
	switch {
	case m.Rows < 0 || m.Cols < 0:
		return m, errorf(ErrShape, "%s: negative shape %d × %d", name, m.Rows, m.Cols)
	case m.Rows > 0 && m.Cols == 0:
		return m, errorf(ErrShape, "%s: %d rows of 0 classes", name, m.Rows)
	case m.Cols > math.MaxInt32:
		return m, errorf(ErrShape, "%s: %d classes exceed the int32 target range", name, m.Cols)
	case m.Stride < m.Cols:
		return m, errorf(ErrShape, "%s: stride %d is less than cols %d", name, m.Stride, m.Cols)
	case !slices.Contains(dev.Caps().Types, m.Type):
		return m, errorf(ErrOption, "%s: element type %v is not one %s takes", name, m.Type, dev.Info().Spec)
	}
	if m.Buf != nil {
		if m.Type != m.Buf.Type() {
			return m, errorf(ErrOption, "%s: the device matrix holds %v, the matrix says %v", name, m.Buf.Type(), m.Type)
		}
		switch {
		case device.OwnerOf(m.Buf) != dev:
			return m, errorf(ErrOption, "%s: the device matrix lives on %s, the loss computes on %s", name, device.SpecOf(m.Buf), dev.Info().Spec)
		case m.Rows != m.Buf.Rows() || m.Cols != m.Buf.Cols() || m.Stride != m.Cols || m.Data != nil || m.Half != nil:
			return m, errorf(ErrShape, "%s: a device matrix is its buffer's %d × %d rows, dense, with no host data", name, m.Buf.Rows(), m.Buf.Cols())
		}
		return m, nil
	}
	return m, hostLength(name, m)
}

// hostLength returns the error for host rows (stride set, ≥ cols) that
// their slice (Data for F32, Half else; the other must be nil) is too
// short to hold.
func hostLength(name string, m Matrix) error {
	n, field, not, other := len(m.Data), "Data", "Half", m.Half != nil
	if m.Type != F32 {
		n, field, not, other = len(m.Half), "Half", "Data", m.Data != nil
	}
	if other {
		return errorf(ErrBuffer, "%s: a %v matrix holds its elements in %s, not %s", name, m.Type, field, not)
	}
	if m.Type > F16 {
		return errorf(ErrOption, "%s: unknown element type %v", name, m.Type)
	}
	if m.Rows == 0 {
		return nil
	}
	if m.Rows-1 > (math.MaxInt-m.Cols)/m.Stride {
		return errorf(ErrShape, "%s: %d rows × stride %d overflows", name, m.Rows, m.Stride)
	}
	if need := (m.Rows-1)*m.Stride + m.Cols; n < need {
		if m.Type == F32 {
			return errorf(ErrBuffer, "%s: %d rows × %d cols (stride %d) need %d values, got %d", name, m.Rows, m.Cols, m.Stride, need, n)
		}
		return errorf(ErrBuffer, "%s: %d rows × %d cols (stride %d) need %d %v values in Half, got %d", name, m.Rows, m.Cols, m.Stride, need, m.Type, n)
	}
	return nil
}

// prepared is a validated call.
type prepared struct {
	x       Matrix
	targets []int32 // -1 for ignored rows
	counted int64
	denom   float64
	prob    ce.Problem
}

// prepare validates x, its targets and the options against each other.
func (l *Loss) prepare(x Matrix, targets []int32) (*prepared, error) {
	x, err := checkMatrix(l.dev, "logits", x)
	if err != nil {
		return nil, err
	}
	c := &l.cfg
	vocab := x.Cols
	if c.vocab > 0 {
		vocab = c.vocab
		if c.col0+x.Cols > vocab {
			return nil, errorf(ErrShape, "the shard's columns [%d, %d) are not within the vocabulary of %d classes", c.col0, c.col0+x.Cols, vocab)
		}
	}
	p, err := l.prepareTargets(x.Rows, vocab, targets)
	if err != nil {
		return nil, err
	}
	p.x = x
	return p, nil
}

// prepareTargets validates rows targets and the class weights against a
// vocabulary of vocab classes, and returns the call with its problem.
func (l *Loss) prepareTargets(rows, vocab int, targets []int32) (*prepared, error) {
	if len(targets) != rows {
		return nil, errorf(ErrShape, "expected %d targets to match %d rows, got %d", rows, rows, len(targets))
	}
	c := &l.cfg
	if c.tokens != nil && len(c.tokens) != rows {
		return nil, errorf(ErrShape, "expected %d token weights to match %d rows, got %d", rows, rows, len(c.tokens))
	}
	if c.weights != nil && len(c.weights) != vocab {
		return nil, errorf(ErrShape, "expected %d class weights to match %d classes, got %d", vocab, vocab, len(c.weights))
	}
	p := &prepared{x: Matrix{Rows: rows}, targets: targets}
	copied := false
	for i, t := range targets {
		if int64(t) == c.ignore {
			if t != -1 && !copied { // the device marks ignored rows with -1
				p.targets = append([]int32(nil), targets...)
				copied = true
			}
			p.targets[i] = -1
			continue
		}
		if t < 0 || int(t) >= vocab {
			return nil, &TargetError{Row: i, Target: t, Cols: vocab}
		}
		p.counted++
		switch {
		case c.weights != nil && c.tokens != nil:
			p.denom += float64(c.tokens[i]) * float64(c.weights[t])
		case c.weights != nil:
			p.denom += float64(c.weights[t])
		case c.tokens != nil:
			p.denom += float64(c.tokens[i])
		}
	}
	if c.weights == nil && c.tokens == nil {
		p.denom = float64(p.counted)
	}
	p.prob = ce.Problem{
		Smoothing: float32(c.smoothing), ZLoss: float32(c.zloss), Softcap: float32(c.softcap), Temperature: float32(c.temp),
		Weights: c.weights, WeightSum: float64(vocab), Col0: c.col0, Vocab: c.vocab,
	}
	if c.weights != nil {
		p.prob.WeightSum = c.weightSum
	}
	return p, nil
}

// whole returns an error when the loss is of a shard: the loss of a row
// needs every shard's partial (Partials, then Finish).
func (l *Loss) whole(op string) error {
	if l.cfg.vocab > 0 {
		return errorf(ErrOption, "%s of a shard: the loss needs every shard's partials (use Partials, Finish and Backward)", op)
	}
	return nil
}

// Forward computes the loss of logits x against targets.
func (l *Loss) Forward(ctx context.Context, x Matrix, targets []int32) (Result, error) {
	if err := l.whole("Forward"); err != nil {
		return Result{}, err
	}
	p, err := l.prepare(x, targets)
	if err != nil {
		return Result{}, err
	}
	if l.cfg.teacher != nil {
		return l.distillLogits(ctx, p, nil)
	}
	return l.run(p, func(out ce.Out) error {
		return l.dev.CrossEntropy(ctx, out, nil, p.x, p.targets, &p.prob)
	})
}

// ForwardBackward computes the loss of logits x and writes dL/dz into
// grad, in one pass over each row. grad may be x itself, InPlace(x), for
// an in-place gradient (the same slice and stride, or the same device
// matrix: a device matrix's gradient stays on the device). up is dL/dloss
// (One, Scalar or PerRow); the gradient of a mean is scaled by
// 1/denominator.
func (l *Loss) ForwardBackward(ctx context.Context, grad Grad, x Matrix, targets []int32, up Upstream) (Result, error) {
	if err := l.whole("ForwardBackward"); err != nil {
		return Result{}, err
	}
	p, err := l.prepare(x, targets)
	if err != nil {
		return Result{}, err
	}
	g, err := l.gradOf(p, grad, up)
	if err != nil {
		return Result{}, err
	}
	if l.cfg.teacher != nil {
		return l.distillLogits(ctx, p, g)
	}
	return l.run(p, func(out ce.Out) error {
		return l.dev.CrossEntropy(ctx, out, g, p.x, p.targets, &p.prob)
	})
}

// gradOf validates grad against p's logits and returns the device's
// gradient with the per-row scales of up.
func (l *Loss) gradOf(p *prepared, grad Grad, up Upstream) (*ce.Grad, error) {
	g, err := checkMatrix(l.dev, "gradient", grad.m)
	if err != nil {
		return nil, err
	}
	x := p.x
	if g.Rows != x.Rows || g.Cols != x.Cols {
		return nil, errorf(ErrShape, "gradient is %d × %d, logits are %d × %d", g.Rows, g.Cols, x.Rows, x.Cols)
	}
	if (g.Buf != nil || x.Buf != nil) && g.Buf != x.Buf {
		return nil, errorf(ErrBuffer, "the gradient of a device matrix replaces it on the device: pass the same matrix as the gradient")
	}
	if g.Type != x.Type && g.Type != F32 {
		return nil, errorf(ErrOption, "gradient: %v for %v logits; it is written in the logits' type or in float32", g.Type, x.Type)
	}
	if g.Buf == nil && overlap(g, x) && !(base(g) == base(x) && g.Stride == x.Stride && g.Type == x.Type) {
		return nil, errorf(ErrBuffer, "gradient buffer overlaps the logits without being them (in place needs the same slice, stride and type)")
	}
	scale, err := l.scales(p, up)
	if err != nil {
		return nil, err
	}
	return &ce.Grad{Data: g.Data, Half: g.Half, Type: g.Type, Stride: g.Stride, Scale: scale, Buf: g.Buf}, nil
}

// scales returns the per-row gradient factors for up.
func (l *Loss) scales(p *prepared, up Upstream) ([]float32, error) {
	rows := p.x.Rows
	scale := make([]float32, rows)
	switch {
	case up.rows != nil:
		if l.cfg.reduction != None || len(up.rows) != rows {
			return nil, errorf(ErrShape, "expected per-row upstream gradients only with reduction none, one per row (%d), got %d with reduction %v", rows, len(up.rows), l.cfg.reduction)
		}
		copy(scale, up.rows)
		if w := l.cfg.tokens; w != nil {
			for i := range scale {
				scale[i] = float32(float64(scale[i]) * float64(w[i]))
			}
		}
	default:
		s := 1.0
		if up.set {
			s = float64(up.scalar)
		}
		if l.cfg.reduction == Mean {
			s /= p.denom
		}
		for i := range scale {
			scale[i] = float32(s)
			if w := l.cfg.tokens; w != nil {
				scale[i] = float32(float64(w[i]) * s)
			}
		}
	}
	return scale, nil
}

// base returns the address of a host matrix's first element.
func base(m Matrix) uintptr {
	if m.Type == F32 {
		return uintptr(unsafe.Pointer(unsafe.SliceData(m.Data)))
	}
	return uintptr(unsafe.Pointer(unsafe.SliceData(m.Half)))
}

// overlap reports whether the memory spans of two host matrices intersect.
func overlap(a, b Matrix) bool {
	if a.Rows == 0 || b.Rows == 0 {
		return false
	}
	span := func(m Matrix) (uintptr, uintptr) {
		lo := base(m)
		return lo, lo + uintptr((m.Rows-1)*m.Stride+m.Cols)*uintptr(m.Type.Size())
	}
	alo, ahi := span(a)
	blo, bhi := span(b)
	return alo < bhi && blo < ahi
}

// run calls compute with the per-row outputs the options need and reduces
// them (reduce).
func (l *Loss) run(p *prepared, compute func(ce.Out) error) (Result, error) {
	rows := p.x.Rows
	out := ce.Out{Loss: make([]float32, rows), Correct: make([]bool, rows)}
	if l.cfg.zloss > 0 || l.cfg.keepRows {
		out.LSE = make([]float32, rows)
	}
	if rows > 0 {
		if err := compute(out); err != nil {
			return Result{}, err
		}
	}
	return l.reduce(p, out), nil
}

// reduce reduces per-row results in float64, in row order.
func (l *Loss) reduce(p *prepared, out ce.Out) Result {
	c := &l.cfg
	r := Result{Stats: Stats{Rows: int64(p.x.Rows), Counted: p.counted, Denom: p.denom}}
	for i, t := range p.targets {
		if t < 0 {
			continue
		}
		w := 1.0 // the token weight
		if c.tokens != nil {
			w = float64(c.tokens[i])
		}
		r.Sum += w * float64(out.Loss[i])
		if c.tokens != nil {
			out.Loss[i] = float32(w * float64(out.Loss[i]))
		}
		if out.Correct[i] {
			r.Correct++
		}
		if c.zloss > 0 { // (not of KeepRows' lse alone: 0·∞ would be NaN)
			lse := float64(out.LSE[i])
			r.ZLoss += w * c.zloss * lse * lse
		}
	}
	switch c.reduction {
	case Mean:
		r.Loss = r.Mean()
	case Sum:
		r.Loss = r.Sum
	case None:
		r.Loss = math.NaN()
	}
	if c.reduction == None || c.keepRows {
		r.Losses = out.Loss
	}
	if c.keepRows {
		r.LSE, r.CorrectRows = out.LSE, out.Correct
	}
	return r
}

// LogSumExp sets dst[i] = log Σ_j exp(x_ij) for every row of x (no options
// apply). dst must have x.Rows elements.
func (l *Loss) LogSumExp(ctx context.Context, dst []float32, x Matrix) error {
	x, err := checkMatrix(l.dev, "logits", x)
	if err != nil {
		return err
	}
	if len(dst) != x.Rows {
		return errorf(ErrBuffer, "expected %d log-sum-exp outputs to match %d rows, got %d", x.Rows, x.Rows, len(dst))
	}
	if x.Rows == 0 {
		return nil
	}
	return l.dev.LogSumExp(ctx, dst, x)
}
