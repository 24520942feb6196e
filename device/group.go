package device

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/xentlab/xent/ce"
)

// Split says how a Group divides a call among its devices, in proportion
// to their measured speed.
type Split int

const (
	// SplitRows gives each device a range of rows, all of the vocabulary.
	// Rows are independent: the parts need no merging.
	SplitRows Split = iota
	// SplitColumns gives each device a range of the vocabulary's columns,
	// every row: the devices' partials are merged in column order, the
	// loss finished from them, and each device writes the gradient of its
	// columns. This is how a classifier too large for one device is split.
	SplitColumns
)

func (s Split) String() string {
	if s == SplitColumns {
		return "columns"
	}
	return "rows"
}

// Group is a Device that splits each call across several devices (see
// Split) and runs the parts at once. Reductions over rows stay with the
// caller (batch.Stats merges exactly). It holds no resident buffers: Caps
// says so and Upload returns ErrNotImplemented.
type Group struct {
	devs  []Device
	split Split
	mu    sync.Mutex
	rate  []float64 // logits per second, measured; 0 until first seen
	lrate []float64 // the fused linear's multiply-adds per second, likewise
}

// NewGroup returns a Group over devs that splits calls by split; it closes
// them when closed.
func NewGroup(split Split, devs ...Device) (*Group, error) {
	if len(devs) == 0 {
		return nil, errors.New("device: empty group")
	}
	if split != SplitRows && split != SplitColumns {
		return nil, fmt.Errorf("device: unknown split %d (want SplitRows or SplitColumns)", int(split))
	}
	return &Group{devs: devs, split: split, rate: make([]float64, len(devs)), lrate: make([]float64, len(devs))}, nil
}

// Info implements Device.
func (g *Group) Info() Info {
	var names, kernels, specs []string
	for _, d := range g.devs {
		in := d.Info()
		names = append(names, in.Name)
		kernels = append(kernels, in.Kernel)
		specs = append(specs, in.Spec)
	}
	return Info{Name: strings.Join(names, " + "), Kind: "group", Backend: "group",
		Kernel: strings.Join(kernels, " + ") + ", split by " + g.split.String(),
		Spec:   "all (" + strings.Join(specs, ", ") + ")"}
}

// Caps implements Device: no resident buffers; the element types every
// member takes; the fused linear when every member has it.
func (g *Group) Caps() Caps {
	types := g.devs[0].Caps().Types
	linear := true
	for _, d := range g.devs {
		ts := d.Caps().Types
		types = slices.DeleteFunc(slices.Clone(types), func(t ce.DType) bool { return !slices.Contains(ts, t) })
		linear = linear && d.Caps().Linear
	}
	return Caps{Types: types, Linear: linear}
}

// Devices returns the members of the group.
func (g *Group) Devices() []Device { return g.devs }

// Upload implements Device: a group holds no buffers.
func (g *Group) Upload(context.Context, ce.Matrix) (Buffer, error) {
	return nil, fmt.Errorf("device: a group (%s) holds no resident buffers: %w", g.Info().Spec, ErrNotImplemented)
}

// cuts returns the boundaries of each device's part of n rows or columns,
// in proportion to the speeds rates (g.rate or g.lrate).
func (g *Group) cuts(rates []float64, n int) []int {
	g.mu.Lock()
	r := append([]float64(nil), rates...)
	g.mu.Unlock()
	known, total := 0.0, 0.0
	for _, v := range r {
		if v > 0 {
			known += v
		}
	}
	for i := range r {
		if r[i] <= 0 { // not measured yet: take the average, or 1
			r[i] = 1
			if known > 0 {
				r[i] = known / float64(len(r))
			}
		}
		total += r[i]
	}
	cut := make([]int, len(r)+1)
	acc := 0.0
	for i, v := range r {
		acc += v
		cut[i+1] = int(float64(n) * acc / total)
	}
	cut[len(r)] = n
	return cut
}

// run calls f on each device with its part [lo, hi) of n (rows or
// columns, of a matrix of elems logits), at once, and updates the speeds.
func (g *Group) run(n int, elems int, f func(k int, d Device, lo, hi int) error) error {
	return g.runRates(g.rate, n, elems, f)
}

// runRates is run with the speeds rates, for work units of work in all.
func (g *Group) runRates(rates []float64, n int, elems int, f func(k int, d Device, lo, hi int) error) error {
	cut := g.cuts(rates, n)
	errs := make([]error, len(g.devs))
	var wg sync.WaitGroup
	for i, d := range g.devs {
		lo, hi := cut[i], cut[i+1]
		if lo == hi {
			continue
		}
		wg.Go(func() {
			start := time.Now()
			if errs[i] = f(i, d, lo, hi); errs[i] != nil {
				errs[i] = fmt.Errorf("%s: %w", d.Info().Spec, errs[i])
				return
			}
			rate := float64(elems) * float64(hi-lo) / float64(n) / max(time.Since(start).Seconds(), 1e-9)
			g.mu.Lock()
			if rates[i] == 0 {
				rates[i] = rate
			} else {
				rates[i] = 0.5*rates[i] + 0.5*rate
			}
			g.mu.Unlock()
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// hostOnly returns the error for a matrix held in a device's memory.
func hostOnly(x ce.Matrix) error {
	if x.Buf != nil {
		return fmt.Errorf("device: a group computes on host matrices: %w", ErrForeign)
	}
	return nil
}

// LogSumExp implements Device.
func (g *Group) LogSumExp(ctx context.Context, dst []float32, x ce.Matrix) error {
	if err := hostOnly(x); err != nil {
		return err
	}
	if g.split == SplitRows {
		return g.run(x.Rows, x.Rows*x.Cols, func(_ int, d Device, lo, hi int) error {
			return d.LogSumExp(ctx, dst[lo:hi], x.RowRange(lo, hi))
		})
	}
	// By columns: the partials of the raw logits (no options, every row
	// counted), merged, give the log-sum-exp.
	part, err := g.partials(ctx, x, make([]int32, x.Rows), &ce.Problem{})
	if err != nil {
		return err
	}
	for i := range dst {
		dst[i] = float32(float64(part[i].Max) + part[i].LogSum())
	}
	return nil
}

// CrossEntropy implements Device.
func (g *Group) CrossEntropy(ctx context.Context, out ce.Out, gr *ce.Grad, x ce.Matrix, targets []int32, p *ce.Problem) error {
	if err := hostOnly(x); err != nil {
		return err
	}
	if g.split == SplitRows {
		return g.run(x.Rows, x.Rows*x.Cols, func(_ int, d Device, lo, hi int) error {
			o := ce.Out{Loss: sub(out.Loss, lo, hi), LSE: sub(out.LSE, lo, hi), Correct: sub(out.Correct, lo, hi)}
			var r *ce.Grad
			if gr != nil {
				v := gr.RowRange(lo, hi)
				r = &v
			}
			return d.CrossEntropy(ctx, o, r, x.RowRange(lo, hi), targets[lo:hi], p)
		})
	}
	part, err := g.partials(ctx, x, targets, p)
	if err != nil {
		return err
	}
	p.FinishRows(out, part, targets, p.Classes(x.Cols))
	if gr == nil {
		return nil
	}
	return g.Backward(ctx, *gr, x, targets, part, p)
}

// partials returns the partials of every row of x merged over the
// devices' column ranges (in column order, so that the result does not
// depend on the timing).
func (g *Group) partials(ctx context.Context, x ce.Matrix, targets []int32, p *ce.Problem) ([]ce.Partial, error) {
	parts := make([][]ce.Partial, len(g.devs)) // one per device, merged in order
	err := g.run(x.Cols, x.Rows*x.Cols, func(k int, d Device, lo, hi int) error {
		parts[k] = make([]ce.Partial, x.Rows)
		return d.Partials(ctx, parts[k], x.Columns(lo, hi), targets, p.Shard(x.Cols, lo))
	})
	if err != nil {
		return nil, err
	}
	merged := make([]ce.Partial, x.Rows)
	for i := range merged {
		merged[i] = ce.EmptyPartial()
		for _, ps := range parts {
			if ps != nil {
				merged[i].Merge(ps[i])
			}
		}
	}
	return merged, nil
}

// Partials implements Device.
func (g *Group) Partials(ctx context.Context, dst []ce.Partial, x ce.Matrix, targets []int32, p *ce.Problem) error {
	if err := hostOnly(x); err != nil {
		return err
	}
	if g.split == SplitRows {
		return g.run(x.Rows, x.Rows*x.Cols, func(_ int, d Device, lo, hi int) error {
			return d.Partials(ctx, dst[lo:hi], x.RowRange(lo, hi), targets[lo:hi], p)
		})
	}
	part, err := g.partials(ctx, x, targets, p)
	if err != nil {
		return err
	}
	for i, t := range targets {
		if t >= 0 {
			dst[i] = part[i]
		}
	}
	return nil
}

// Backward implements Device.
func (g *Group) Backward(ctx context.Context, gr ce.Grad, x ce.Matrix, targets []int32, part []ce.Partial, p *ce.Problem) error {
	if err := errors.Join(hostOnly(x), hostOnly(ce.Matrix{Buf: gr.Buf})); err != nil {
		return err
	}
	if g.split == SplitRows {
		return g.run(x.Rows, x.Rows*x.Cols, func(_ int, d Device, lo, hi int) error {
			return d.Backward(ctx, gr.RowRange(lo, hi), x.RowRange(lo, hi), targets[lo:hi], part[lo:hi], p)
		})
	}
	return g.run(x.Cols, x.Rows*x.Cols, func(_ int, d Device, lo, hi int) error {
		return d.Backward(ctx, gr.Columns(lo), x.Columns(lo, hi), targets, part, p.Shard(x.Cols, lo))
	})
}

// Close implements Device.
func (g *Group) Close() error {
	var errs []error
	for _, d := range g.devs {
		errs = append(errs, d.Close())
	}
	return errors.Join(errs...)
}

// The fused linear on a group splits W's rows (classes) across the
// members, whatever the group's Split, as Megatron's vocabulary-parallel
// cross-entropy does: each member gives its classes' partials, merged in
// class order; each writes its rows of dW and dBias, and its part of dH
// into a buffer of its own, summed in member order (so the result does not
// depend on the timing).

// linearWork is the multiply-adds of a fused linear pass over lin.
func linearWork(lin *ce.Linear) int { return lin.H.Rows * lin.W.Rows * max(lin.H.Cols, 1) }

// linearHostOnly returns the error for a fused linear input or gradient
// held by a device: a group computes on host matrices.
func linearHostOnly(lin *ce.Linear, lg *ce.LinearGrad) error {
	err := errors.Join(hostOnly(lin.H), hostOnly(lin.W))
	if lg != nil {
		err = errors.Join(err, hostOnly(lg.W))
	}
	return err
}

// LinearPartials implements Device.
func (g *Group) LinearPartials(ctx context.Context, dst []ce.Partial, lin *ce.Linear, targets []int32, p *ce.Problem) error {
	if err := linearHostOnly(lin, nil); err != nil {
		return err
	}
	V := lin.W.Rows
	parts := make([][]ce.Partial, len(g.devs))
	err := g.runRates(g.lrate, V, linearWork(lin), func(k int, d Device, lo, hi int) error {
		parts[k] = make([]ce.Partial, len(dst))
		for i := range parts[k] {
			parts[k][i] = ce.EmptyPartial()
		}
		return LinearOf(d).LinearPartials(ctx, parts[k], lin.Classes(lo, hi), targets, p.Shard(V, lo))
	})
	if err != nil {
		return err
	}
	for i, t := range targets {
		if t < 0 {
			continue
		}
		for _, ps := range parts {
			if ps != nil {
				dst[i].Merge(ps[i])
			}
		}
	}
	return nil
}

// LinearPartialsAt implements LinearPicker where every member that takes
// classes picks (else ErrNotImplemented, nothing written): each member's
// partials and logits of its classes, merged as LinearPartials merges.
func (g *Group) LinearPartialsAt(ctx context.Context, dst []ce.Partial, z []float32, cols []int32, k int, lin *ce.Linear, targets []int32, p *ce.Problem) error {
	if err := linearHostOnly(lin, nil); err != nil {
		return err
	}
	V := lin.W.Rows
	parts, zs := make([][]ce.Partial, len(g.devs)), make([][]float32, len(g.devs))
	cuts := make([][2]int, len(g.devs))
	err := g.runRates(g.lrate, V, linearWork(lin), func(m int, d Device, lo, hi int) error {
		pk, ok := LinearOf(d).(LinearPicker)
		if !ok {
			return fmt.Errorf("%w: its fused linear picks no logits", ErrNotImplemented)
		}
		mc := make([]int32, len(cols)) // the member's columns: its classes', else -1
		for e, c := range cols {
			mc[e] = -1
			if int(c) >= lo && int(c) < hi {
				mc[e] = c - int32(lo)
			}
		}
		parts[m], zs[m], cuts[m] = ce.EmptyPartials(len(dst)), make([]float32, len(z)), [2]int{lo, hi}
		return pk.LinearPartialsAt(ctx, parts[m], zs[m], mc, k, lin.Classes(lo, hi), targets, p.Shard(V, lo))
	})
	if err != nil {
		return err
	}
	clear(z)
	for i, t := range targets {
		if t < 0 {
			continue
		}
		for m, ps := range parts {
			if ps == nil {
				continue
			}
			dst[i].Merge(ps[i])
			for e := i * k; e < (i+1)*k; e++ {
				if c := int(cols[e]); c >= cuts[m][0] && c < cuts[m][1] {
					z[e] = zs[m][e]
				}
			}
		}
	}
	return nil
}

// LinearCrossEntropy implements Device.
func (g *Group) LinearCrossEntropy(ctx context.Context, out ce.Out, lg *ce.LinearGrad, lin *ce.Linear, targets []int32, p *ce.Problem) error {
	if err := linearHostOnly(lin, lg); err != nil {
		return err
	}
	part := make([]ce.Partial, len(targets))
	for i := range part {
		part[i] = ce.EmptyPartial()
	}
	if err := g.LinearPartials(ctx, part, lin, targets, p); err != nil {
		return err
	}
	p.FinishRows(out, part, targets, p.Classes(lin.W.Rows))
	if lg == nil {
		return nil
	}
	return g.LinearBackward(ctx, *lg, lin, targets, part, p)
}

// LinearBackward implements Device.
func (g *Group) LinearBackward(ctx context.Context, lg ce.LinearGrad, lin *ce.Linear, targets []int32, part []ce.Partial, p *ce.Problem) error {
	if err := linearHostOnly(lin, &lg); err != nil {
		return err
	}
	V, N, D := lin.W.Rows, lin.H.Rows, lin.H.Cols
	dhs := make([][]float32, len(g.devs))
	err := g.runRates(g.lrate, V, 2*linearWork(lin), func(k int, d Device, lo, hi int) error {
		m := lg
		m.W = lg.W
		if lg.W.Data != nil {
			m.W = lg.W.RowRange(lo, hi)
		}
		if lg.Bias != nil {
			m.Bias = lg.Bias[lo:hi]
		}
		if lg.H.Data != nil {
			dhs[k] = make([]float32, N*D)
			m.H, m.AddH = ce.Matrix{Data: dhs[k], Rows: N, Cols: D, Stride: D}, true
		}
		return LinearOf(d).LinearBackward(ctx, m, lin.Classes(lo, hi), targets, part, p.Shard(V, lo))
	})
	if err != nil || lg.H.Data == nil {
		return err
	}
	H := lg.H
	for i := range N {
		row := H.Data[i*H.Stride : i*H.Stride+D]
		if !lg.AddH {
			clear(row)
		}
		for _, dh := range dhs {
			if dh == nil {
				continue
			}
			for d, v := range dh[i*D : (i+1)*D] {
				row[d] += v
			}
		}
	}
	return nil
}
