package batch

import (
	"context"
	"math"

	"github.com/xentlab/xent/ce"
	"github.com/xentlab/xent/device"
)

// Linear is a configured fused linear cross-entropy on one device: the
// loss of the logits z = H·Wᵀ + b of hidden states H and a classifier W
// (and bias b), computed a tile at a time so that the N × V logits are
// never held (see [Budget]). Every option of [Loss] applies. It is
// immutable and safe for concurrent use.
type Linear struct {
	loss  *Loss
	fused device.FusedLinear // the device's, or the CPU's (device.LinearOf)
}

// LinearGrads says where the gradients of a fused linear call go: dL/dH
// (N × D, like H) is written; dL/dW (V × D, like W) and dL/db (V values)
// are added to, so that micro-batches accumulate (float32). A zero Grad
// or nil Bias is not wanted (a frozen weight, no bias). W may be a
// DeviceMatrix's Matrix (Upload), and dW a DeviceMatrix's Grad: in a
// training loop they then stay on the device, and only H, the targets and
// dH cross the bus.
type LinearGrads struct {
	H    Grad
	W    Grad
	Bias []float32
}

// NewLinear returns a fused linear cross-entropy computing on dev with the
// options given: dev runs it where it can (device.Caps().Linear), else
// the CPU does, on host matrices (device.LinearOf; dev's Info().Note says
// so).
func NewLinear(dev device.Device, opts ...Option) (*Linear, error) {
	l, err := New(dev, opts...)
	if err != nil {
		return nil, err
	}
	return &Linear{loss: l, fused: device.LinearOf(dev)}, nil
}

// Device returns the device the loss computes on.
func (l *Linear) Device() device.Device { return l.loss.dev }

// checkHost validates a host matrix of rows × cols with a positive row
// length (named what), float32 or, for an input (half), any element type,
// and returns it with its stride set.
func checkHost(name string, m Matrix, what string, half bool) (Matrix, error) {
	if m.Stride == 0 {
		m.Stride = m.Cols
	}
	switch {
	case m.Buf != nil:
		return m, errorf(ErrOption, "%s: the fused linear takes host matrices", name)
	case m.Type != ce.F32 && !half:
		return m, errorf(ErrOption, "%s: element type %v (the gradients are float32)", name, m.Type)
	case m.Type > ce.F16:
		return m, errorf(ErrOption, "%s: unknown element type %v", name, m.Type)
	case m.Rows < 0 || m.Cols < 0:
		return m, errorf(ErrShape, "%s: negative shape %d × %d", name, m.Rows, m.Cols)
	case m.Cols == 0:
		return m, errorf(ErrShape, "%s: rows of 0 %s", name, what)
	case m.Stride < m.Cols:
		return m, errorf(ErrShape, "%s: stride %d is less than cols %d", name, m.Stride, m.Cols)
	}
	return m, hostLength(name, m)
}

// checkResident validates a matrix that may be held by dev (a
// DeviceMatrix's, for W and dW: they may stay on the device across calls)
// or host rows, of a half-precision type where half is set (W's, not
// dW's).
func checkResident(dev device.Device, name string, m Matrix, half bool) (Matrix, error) {
	if m.Buf == nil {
		return checkHost(name, m, "features", half)
	}
	switch {
	case !dev.Caps().Resident:
		return m, errorf(ErrOption, "%s: %s keeps no resident buffers", name, dev.Info().Spec)
	case !dev.Caps().Linear:
		return m, errorf(ErrOption, "%s: %s runs the fused linear on the CPU: W and dW are host matrices", name, dev.Info().Spec)
	case device.OwnerOf(m.Buf) != dev:
		return m, errorf(ErrOption, "%s: the device matrix lives on %s, the loss computes on %s", name, device.SpecOf(m.Buf), dev.Info().Spec)
	case m.Type != m.Buf.Type():
		return m, errorf(ErrOption, "%s: element type %v, its buffer's %v", name, m.Type, m.Buf.Type())
	case !half && m.Type != ce.F32:
		return m, errorf(ErrOption, "%s: element type %v (the gradients are float32)", name, m.Type)
	case m.Rows != m.Buf.Rows() || m.Cols != m.Buf.Cols() || m.Stride != m.Cols && m.Stride != 0 || m.Data != nil:
		return m, errorf(ErrShape, "%s: a device matrix is its buffer's %d × %d rows, dense, with no host data", name, m.Buf.Rows(), m.Buf.Cols())
	case m.Cols == 0:
		return m, errorf(ErrShape, "%s: rows of 0 features", name)
	}
	m.Stride = m.Cols
	return m, nil
}

// prepareLinear validates H, W, the bias and the targets against each
// other and the options.
func (l *Linear) prepareLinear(h, w Matrix, bias []float32, targets []int32) (*prepared, *ce.Linear, error) {
	h, err := checkHost("hidden states", h, "features", true)
	if err != nil {
		return nil, nil, err
	}
	if w, err = checkResident(l.loss.dev, "weight", w, true); err != nil {
		return nil, nil, err
	}
	c := &l.loss.cfg
	switch {
	case w.Cols != h.Cols:
		return nil, nil, errorf(ErrShape, "hidden states have %d features, the weight's rows %d (W is classes × features, nn.Linear's layout)", h.Cols, w.Cols)
	case w.Rows == 0:
		return nil, nil, errorf(ErrShape, "weight: 0 classes")
	case w.Rows > math.MaxInt32:
		return nil, nil, errorf(ErrShape, "weight: %d classes exceed the int32 target range", w.Rows)
	case bias != nil && len(bias) != w.Rows:
		return nil, nil, errorf(ErrShape, "expected %d bias values to match %d classes, got %d", w.Rows, w.Rows, len(bias))
	}
	vocab := w.Rows
	if c.vocab > 0 {
		vocab = c.vocab
		if c.col0+w.Rows > vocab {
			return nil, nil, errorf(ErrShape, "the shard's classes [%d, %d) are not within the vocabulary of %d classes", c.col0, c.col0+w.Rows, vocab)
		}
	}
	p, err := l.loss.prepareTargets(h.Rows, vocab, targets)
	if err != nil {
		return nil, nil, err
	}
	return p, &ce.Linear{H: h, W: w, Bias: bias, Budget: c.budget, Filter: float32(c.filter)}, nil
}

// gradsOf validates g against the inputs of lin and returns the device's
// gradients with the per-row scales of up.
func (l *Linear) gradsOf(p *prepared, lin *ce.Linear, g LinearGrads, up Upstream) (*ce.LinearGrad, error) {
	var dg ce.LinearGrad
	inputs := []Matrix{lin.H, lin.W}
	var outs []Matrix
	for _, d := range []struct {
		name string
		g    Grad
		like Matrix
		dst  *Matrix
	}{{"hidden-state gradient", g.H, lin.H, &dg.H}, {"weight gradient", g.W, lin.W, &dg.W}} {
		if !d.g.wanted() {
			continue
		}
		var m Matrix
		var err error
		if d.dst == &dg.W { // dW may stay on the device, as W may
			m, err = checkResident(l.loss.dev, d.name, d.g.m, false)
		} else {
			m, err = checkHost(d.name, d.g.m, "features", false)
		}
		if err != nil {
			return nil, err
		}
		if m.Rows != d.like.Rows || m.Cols != d.like.Cols {
			return nil, errorf(ErrShape, "%s is %d × %d, expected %d × %d", d.name, m.Rows, m.Cols, d.like.Rows, d.like.Cols)
		}
		for _, x := range append(inputs, outs...) {
			if m.Buf != nil && m.Buf == x.Buf || m.Buf == nil && x.Buf == nil && overlap(m, x) {
				return nil, errorf(ErrBuffer, "%s overlaps an input or another gradient", d.name)
			}
		}
		outs = append(outs, m)
		*d.dst = m
	}
	if g.Bias != nil {
		if len(g.Bias) != lin.W.Rows {
			return nil, errorf(ErrShape, "expected %d bias gradients to match %d classes, got %d", lin.W.Rows, lin.W.Rows, len(g.Bias))
		}
		b := NewMatrix(g.Bias, 1, len(g.Bias))
		for _, x := range append(inputs, outs...) {
			if x.Buf == nil && overlap(b, x) || lin.Bias != nil && overlap(b, NewMatrix(lin.Bias, 1, len(lin.Bias))) {
				return nil, errorf(ErrBuffer, "bias gradient overlaps an input or another gradient")
			}
		}
		dg.Bias = g.Bias
	}
	scale, err := l.loss.scales(p, up)
	if err != nil {
		return nil, err
	}
	dg.Scale = scale
	return &dg, nil
}

// Forward computes the loss of the logits z = h·wᵀ + bias against targets
// (bias may be nil): h is N × D, w is V × D (nn.Linear's weight), bias V.
func (l *Linear) Forward(ctx context.Context, h, w Matrix, bias []float32, targets []int32) (Result, error) {
	if err := l.loss.whole("Forward"); err != nil {
		return Result{}, err
	}
	p, lin, err := l.prepareLinear(h, w, bias, targets)
	if err != nil {
		return Result{}, err
	}
	if l.loss.cfg.teacher != nil {
		return l.distillLinear(ctx, p, lin, nil)
	}
	return l.loss.run(p, func(out ce.Out) error {
		return l.fused.LinearCrossEntropy(ctx, out, nil, lin, p.targets, &p.prob)
	})
}

// ForwardBackward computes the loss as Forward does and the gradients of
// the loss times up (One, Scalar or PerRow, as for Loss) into g: dH
// written, dW and db added to.
func (l *Linear) ForwardBackward(ctx context.Context, g LinearGrads, h, w Matrix, bias []float32, targets []int32, up Upstream) (Result, error) {
	if err := l.loss.whole("ForwardBackward"); err != nil {
		return Result{}, err
	}
	p, lin, err := l.prepareLinear(h, w, bias, targets)
	if err != nil {
		return Result{}, err
	}
	dg, err := l.gradsOf(p, lin, g, up)
	if err != nil {
		return Result{}, err
	}
	if l.loss.cfg.teacher != nil {
		return l.distillLinear(ctx, p, lin, dg)
	}
	return l.loss.run(p, func(out ce.Out) error {
		return l.fused.LinearCrossEntropy(ctx, out, dg, lin, p.targets, &p.prob)
	})
}

// Partials sets dst[i] to the partial of row i over w's classes, the
// Linear's Shard (the whole vocabulary without one), as Loss.Partials
// does for logits; ignored rows' entries are left as they are.
func (l *Linear) Partials(ctx context.Context, dst []Partial, h, w Matrix, bias []float32, targets []int32) error {
	p, lin, err := l.prepareLinear(h, w, bias, targets)
	if err != nil {
		return err
	}
	if len(dst) != h.Rows {
		return errorf(ErrBuffer, "expected %d partials to match %d rows, got %d", h.Rows, h.Rows, len(dst))
	}
	for i, t := range p.targets {
		if t >= 0 {
			dst[i] = ce.EmptyPartial()
		}
	}
	if h.Rows == 0 {
		return nil
	}
	return l.fused.LinearPartials(ctx, dst, lin, p.targets, &p.prob)
}

// Finish returns the Result of rows whose partials over the whole
// vocabulary (every shard's, merged) are part, as Loss.Finish.
func (l *Linear) Finish(part []Partial, targets []int32) (Result, error) {
	return l.loss.Finish(part, targets)
}

// Ranks sets dst[i] to row i's Rank over w's classes (the Linear's
// Shard) given part[i], its partial merged over the whole vocabulary, as
// Loss.Ranks does for logits: a pass of its own, the products made again
// tile by tile (device.LinearRanksOf: the CPU's with a host W, the
// device's with a W it holds).
func (l *Linear) Ranks(ctx context.Context, dst []Rank, h, w Matrix, bias []float32, targets []int32, part []Partial) error {
	p, lin, err := l.prepareLinear(h, w, bias, targets)
	if err != nil {
		return err
	}
	if len(dst) != h.Rows || len(part) != h.Rows {
		return errorf(ErrBuffer, "expected %d ranks and partials to match %d rows, got %d and %d", h.Rows, h.Rows, len(dst), len(part))
	}
	for i, t := range p.targets {
		if t >= 0 {
			dst[i] = Rank{}
		}
	}
	if h.Rows == 0 {
		return nil
	}
	return device.LinearRanksOf(l.loss.dev, lin.W).LinearRanks(ctx, dst, lin, p.targets, part, &p.prob)
}

// RankStats returns the RankStats of rows whose partials and ranks over
// the whole vocabulary are part and ranks, as Loss.RankStats.
func (l *Linear) RankStats(ks []int, part []Partial, ranks []Rank, targets []int32) (RankStats, error) {
	return l.loss.RankStats(ks, part, ranks, targets)
}

// Calibration returns the Calibration of rows whose partials over the
// whole vocabulary are part, as Loss.Calibration.
func (l *Linear) Calibration(part []Partial, targets []int32) (Calibration, error) {
	return l.loss.Calibration(part, targets)
}

// Backward adds the gradients of w's classes (the Linear's Shard) into g,
// given part, the rows' partials over the whole vocabulary (every
// shard's, merged), and dL/dloss up: dW and db of the shard, and the
// shard's part of dH, which is added to g.H (the shards' parts sum to
// dH: start from zeros, or all-reduce).
func (l *Linear) Backward(ctx context.Context, g LinearGrads, h, w Matrix, bias []float32, targets []int32, part []Partial, up Upstream) error {
	if l.loss.cfg.teacher != nil {
		return errorf(ErrOption, "Backward of a distillation: BackwardKL takes its KL parts too")
	}
	return l.backward(ctx, g, h, w, bias, targets, part, nil, up)
}

// backward is Backward, and BackwardKL with kp.
func (l *Linear) backward(ctx context.Context, g LinearGrads, h, w Matrix, bias []float32, targets []int32, part []Partial, kp []KLPart, up Upstream) error {
	p, lin, err := l.prepareLinear(h, w, bias, targets)
	if err != nil {
		return err
	}
	var sh shard
	if kp != nil {
		sh = l.linearShard(p, lin)
		if err := checkKL(l.loss.cfg.teacher, p, sh.vocab, len(kp), part); err != nil {
			return err
		}
	}
	if len(part) != h.Rows {
		return errorf(ErrBuffer, "expected %d partials to match %d rows, got %d", h.Rows, h.Rows, len(part))
	}
	dg, err := l.gradsOf(p, lin, g, up)
	if err != nil {
		return err
	}
	for i, t := range p.targets {
		if t >= 0 && !part[i].HasT {
			return errorf(ErrShape, "row %d: no shard held its target %d (were all shards' partials merged?)", i, t)
		}
	}
	if h.Rows == 0 {
		return nil
	}
	dg.AddH = true
	if kp != nil {
		if dg.Fix, err = l.loss.fixOf(ctx, p, sh, part, kp, dg.Scale); err != nil {
			return err
		}
	}
	return l.fused.LinearBackward(ctx, *dg, lin, p.targets, part, &p.prob)
}

// KLPartials is Loss.KLPartials of the logits h·Wᵀ + bias, W's classes
// the Loss's Shard: the student's logits at the teacher's classes, K·D
// products a row, are computed on the host in float64 for a host W, on
// W's device for a device matrix (device.GatherOf), apart from the
// partials' products (PartialsWithKL picks them from those).
func (l *Linear) KLPartials(ctx context.Context, dst []KLPart, h, w Matrix, bias []float32, targets []int32, part []Partial) error {
	p, lin, err := l.prepareLinear(h, w, bias, targets)
	if err != nil {
		return err
	}
	sh := l.linearShard(p, lin)
	if err := checkKL(l.loss.cfg.teacher, p, sh.vocab, len(dst), part); err != nil {
		return err
	}
	return klPartials(ctx, dst, l.loss.cfg.teacher, p, sh, part)
}

// PartialsWithKL is Loss.PartialsWithKL of the logits h·Wᵀ + bias over
// w's classes (the Linear's Shard): each row's partial, and its KL part
// against it, from one pass. The student's logits at the teacher's
// classes come from the partials' own products where the device picks
// them (device.LinearPicker), so that after MergeKL the tail (each row's
// sum less their terms) has no error of its own, as in Forward; elsewhere
// they are computed apart, as KLPartials'.
func (l *Linear) PartialsWithKL(ctx context.Context, dst []Partial, kp []KLPart, h, w Matrix, bias []float32, targets []int32) error {
	p, lin, err := l.prepareLinear(h, w, bias, targets)
	if err != nil {
		return err
	}
	t, sh := l.loss.cfg.teacher, l.linearShard(p, lin)
	if err := checkShardKL(t, p, sh.vocab, len(dst), len(kp)); err != nil {
		return err
	}
	if h.Rows == 0 {
		return nil
	}
	sh, err = l.pickedPartials(ctx, dst, p, lin, t, sh)
	if err != nil {
		return err
	}
	return klPartials(ctx, kp, t, p, sh, dst)
}

// FinishKL is Loss.FinishKL.
func (l *Linear) FinishKL(part []Partial, kp []KLPart, targets []int32) (Result, error) {
	return l.loss.FinishKL(part, kp, targets)
}

// BackwardKL is Backward of a distillation (Distill): the shard's
// gradients given part and kp, the partials and KL parts of the rows over
// the whole vocabulary (every shard's, merged).
func (l *Linear) BackwardKL(ctx context.Context, g LinearGrads, h, w Matrix, bias []float32, targets []int32, part []Partial, kp []KLPart, up Upstream) error {
	if kp == nil {
		kp = []KLPart{}
	}
	return l.backward(ctx, g, h, w, bias, targets, part, kp, up)
}
