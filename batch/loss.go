package batch

import (
	"context"
	"math"
	"unsafe"

	"github.com/xentlab/xent/device"
	_ "github.com/xentlab/xent/device/opencl" // registers the OpenCL back end
)

// Matrix is a row-major float32 matrix: row i is
// Data[i*Stride : i*Stride+Cols]. A Stride of 0 means Cols.
type Matrix = device.Matrix

// NewMatrix returns the dense matrix view of data as rows × cols.
func NewMatrix(data []float32, rows, cols int) Matrix {
	return Matrix{Data: data, Rows: rows, Cols: cols, Stride: cols}
}

// Loss is a configured cross-entropy on one device. It is immutable and
// safe for concurrent use.
type Loss struct {
	dev device.Device
	cfg config
}

// Result is what Forward and ForwardBackward return.
type Result struct {
	// Loss is the reduced loss: Stats.Mean() for Mean, Stats.Sum for Sum,
	// NaN for None (the losses are in Rows).
	Loss float64
	Stats
	// Rows holds the per-row losses (0 for ignored rows) for None, or with
	// KeepRows.
	Rows []float32
}

// New returns a Loss computing on dev with the options given.
func New(dev device.Device, opts ...Option) (*Loss, error) {
	if dev == nil {
		return nil, errorf(ErrOption, "nil device")
	}
	c := config{ignore: DefaultIgnoreIndex, reduction: Mean}
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

// checkMatrix validates a matrix view and returns it with its stride set.
func checkMatrix(name string, m Matrix) (Matrix, error) {
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
	}
	if m.Rows == 0 {
		return m, nil
	}
	if m.Rows-1 > (math.MaxInt-m.Cols)/m.Stride {
		return m, errorf(ErrShape, "%s: %d rows × stride %d overflows", name, m.Rows, m.Stride)
	}
	if need := (m.Rows-1)*m.Stride + m.Cols; len(m.Data) < need {
		return m, errorf(ErrBuffer, "%s: %d rows × %d cols (stride %d) need %d values, got %d", name, m.Rows, m.Cols, m.Stride, need, len(m.Data))
	}
	return m, nil
}

// prepared is a validated call.
type prepared struct {
	rows    int
	cols    int
	targets []int32 // -1 for ignored rows
	counted int64
	denom   float64
	opt     device.Options
}

// prepare validates targets and options against a rows × cols problem.
func (l *Loss) prepare(rows, cols int, targets []int32) (*prepared, error) {
	if len(targets) != rows {
		return nil, errorf(ErrShape, "expected %d targets to match %d rows, got %d", rows, rows, len(targets))
	}
	c := &l.cfg
	if c.weights != nil && len(c.weights) != cols {
		return nil, errorf(ErrShape, "expected %d class weights to match %d cols, got %d", cols, cols, len(c.weights))
	}
	p := &prepared{rows: rows, cols: cols, targets: targets}
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
		if t < 0 || int(t) >= cols {
			return nil, &TargetError{Row: i, Target: t, Cols: cols}
		}
		p.counted++
		if c.weights != nil {
			p.denom += float64(c.weights[t])
		}
	}
	if c.weights == nil {
		p.denom = float64(p.counted)
	}
	p.opt = device.Options{
		Smoothing: float32(c.smoothing), ZLoss: float32(c.zloss), Softcap: float32(c.softcap),
		Weights: c.weights, WeightSum: float64(cols),
	}
	if c.weights != nil {
		p.opt.WeightSum = c.weightSum
	}
	return p, nil
}

// Forward computes the loss of logits x against targets.
func (l *Loss) Forward(ctx context.Context, x Matrix, targets []int32) (Result, error) {
	x, err := checkMatrix("logits", x)
	if err != nil {
		return Result{}, err
	}
	p, err := l.prepare(x.Rows, x.Cols, targets)
	if err != nil {
		return Result{}, err
	}
	return l.run(p, func(out device.Rows) error {
		return l.dev.CrossEntropy(ctx, x, p.targets, &p.opt, out, nil)
	})
}

// ForwardBackward computes the loss and writes dL/dz into grad (which may
// be x itself, for an in-place gradient: the same slice and stride) in one
// pass over each row. upstream is dL/dloss: nil for 1, one value for a
// scalar, or one value per row (reduction None only). The gradient of a
// mean is scaled by 1/denominator.
func (l *Loss) ForwardBackward(ctx context.Context, x Matrix, targets []int32, grad Matrix, upstream []float32) (Result, error) {
	x, err := checkMatrix("logits", x)
	if err != nil {
		return Result{}, err
	}
	p, err := l.prepare(x.Rows, x.Cols, targets)
	if err != nil {
		return Result{}, err
	}
	g, err := checkMatrix("gradient", grad)
	if err != nil {
		return Result{}, err
	}
	if g.Rows != x.Rows || g.Cols != x.Cols {
		return Result{}, errorf(ErrShape, "gradient is %d × %d, logits are %d × %d", g.Rows, g.Cols, x.Rows, x.Cols)
	}
	if overlap(g, x) && !(unsafe.SliceData(g.Data) == unsafe.SliceData(x.Data) && g.Stride == x.Stride) {
		return Result{}, errorf(ErrBuffer, "gradient buffer overlaps the logits without being them (in place needs the same slice and stride)")
	}
	scale, err := l.scales(p, upstream)
	if err != nil {
		return Result{}, err
	}
	return l.run(p, func(out device.Rows) error {
		return l.dev.CrossEntropy(ctx, x, p.targets, &p.opt, out, &device.Grad{Data: g.Data, Stride: g.Stride, Scale: scale})
	})
}

// scales returns the per-row gradient factors for upstream.
func (l *Loss) scales(p *prepared, upstream []float32) ([]float32, error) {
	scale := make([]float32, p.rows)
	switch {
	case len(upstream) == 0:
		upstream = []float32{1}
		fallthrough
	case len(upstream) == 1:
		s := float64(upstream[0])
		if l.cfg.reduction == Mean {
			s /= p.denom
		}
		for i := range scale {
			scale[i] = float32(s)
		}
	case len(upstream) == p.rows && l.cfg.reduction == None:
		copy(scale, upstream)
	default:
		return nil, errorf(ErrShape, "expected 1 upstream gradient value for reduction %v (or %d for none), got %d", l.cfg.reduction, p.rows, len(upstream))
	}
	return scale, nil
}

// overlap reports whether the memory spans of two matrices intersect.
func overlap(a, b Matrix) bool {
	if a.Rows == 0 || b.Rows == 0 {
		return false
	}
	span := func(m Matrix) (uintptr, uintptr) {
		lo := uintptr(unsafe.Pointer(unsafe.SliceData(m.Data)))
		return lo, lo + uintptr((m.Rows-1)*m.Stride+m.Cols)*4
	}
	alo, ahi := span(a)
	blo, bhi := span(b)
	return alo < bhi && blo < ahi
}

// run calls compute with the per-row outputs the options need and reduces
// them in float64, in row order.
func (l *Loss) run(p *prepared, compute func(device.Rows) error) (Result, error) {
	c := &l.cfg
	rows := p.rows
	out := device.Rows{Loss: make([]float32, rows), Correct: make([]bool, rows)}
	if c.zloss > 0 {
		out.LSE = make([]float32, rows)
	}
	if rows > 0 {
		if err := compute(out); err != nil {
			return Result{}, err
		}
	}
	r := Result{Stats: Stats{Rows: int64(rows), Counted: p.counted, Denom: p.denom}}
	for i, t := range p.targets {
		if t < 0 {
			continue
		}
		r.Sum += float64(out.Loss[i])
		if out.Correct[i] {
			r.Correct++
		}
		if out.LSE != nil {
			lse := float64(out.LSE[i])
			r.ZLoss += c.zloss * lse * lse
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
		r.Rows = out.Loss
	}
	return r, nil
}

// LogSumExp sets dst[i] = log Σ_j exp(x_ij) for every row of x (no options
// apply). dst must have x.Rows elements.
func (l *Loss) LogSumExp(ctx context.Context, dst []float32, x Matrix) error {
	x, err := checkMatrix("logits", x)
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
