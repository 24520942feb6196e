package device

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"
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
	return &Group{devs: devs, split: split, rate: make([]float64, len(devs))}, nil
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
// member takes.
func (g *Group) Caps() Caps {
	types := g.devs[0].Caps().Types
	for _, d := range g.devs[1:] {
		ts := d.Caps().Types
		types = slices.DeleteFunc(slices.Clone(types), func(t DType) bool { return !slices.Contains(ts, t) })
	}
	return Caps{Types: types}
}

// Devices returns the members of the group.
func (g *Group) Devices() []Device { return g.devs }

// Upload implements Device: a group holds no buffers.
func (g *Group) Upload(context.Context, Matrix) (Buffer, error) {
	return nil, fmt.Errorf("device: a group (%s) holds no resident buffers: %w", g.Info().Spec, ErrNotImplemented)
}

// cuts returns the boundaries of each device's part of n rows or columns.
func (g *Group) cuts(n int) []int {
	g.mu.Lock()
	r := append([]float64(nil), g.rate...)
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
	cut := g.cuts(n)
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
			if g.rate[i] == 0 {
				g.rate[i] = rate
			} else {
				g.rate[i] = 0.5*g.rate[i] + 0.5*rate
			}
			g.mu.Unlock()
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// hostOnly returns the error for a matrix held in a device's memory.
func hostOnly(x Matrix) error {
	if x.Buf != nil {
		return fmt.Errorf("device: a group computes on host matrices: %w", ErrForeign)
	}
	return nil
}

// LogSumExp implements Device.
func (g *Group) LogSumExp(ctx context.Context, dst []float32, x Matrix) error {
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
	part, err := g.partials(ctx, x, make([]int32, x.Rows), &Problem{})
	if err != nil {
		return err
	}
	for i := range dst {
		dst[i] = float32(lseOf(part[i]))
	}
	return nil
}

// lseOf returns the log-sum-exp of a merged partial, NaN for an empty or
// NaN sum.
func lseOf(p Partial) float64 {
	if !(p.Sum > 0) {
		return math.NaN()
	}
	return float64(p.Max) + math.Log(p.Sum)
}

// CrossEntropy implements Device.
func (g *Group) CrossEntropy(ctx context.Context, out Out, gr *Grad, x Matrix, targets []int32, p *Problem) error {
	if err := hostOnly(x); err != nil {
		return err
	}
	if g.split == SplitRows {
		return g.run(x.Rows, x.Rows*x.Cols, func(_ int, d Device, lo, hi int) error {
			o := Out{Loss: sub(out.Loss, lo, hi), LSE: sub(out.LSE, lo, hi), Correct: sub(out.Correct, lo, hi)}
			var r *Grad
			if gr != nil {
				r = gr.RowRange(lo, hi)
			}
			return d.CrossEntropy(ctx, o, r, x.RowRange(lo, hi), targets[lo:hi], p)
		})
	}
	part, err := g.partials(ctx, x, targets, p)
	if err != nil {
		return err
	}
	C := p.Classes(x.Cols)
	for i, t := range targets {
		var loss, lse float64
		correct := false
		if t >= 0 {
			loss, lse, correct = p.Finish(&part[i], int(t), C)
		}
		out.Set(i, loss, lse, correct)
	}
	if gr == nil {
		return nil
	}
	return g.Backward(ctx, *gr, x, targets, part, p)
}

// partials returns the partials of every row of x merged over the
// devices' column ranges (in column order, so that the result does not
// depend on the timing).
func (g *Group) partials(ctx context.Context, x Matrix, targets []int32, p *Problem) ([]Partial, error) {
	parts := make([][]Partial, len(g.devs)) // one per device, merged in order
	err := g.run(x.Cols, x.Rows*x.Cols, func(k int, d Device, lo, hi int) error {
		parts[k] = make([]Partial, x.Rows)
		return d.Partials(ctx, parts[k], x.Columns(lo, hi), targets, shard(p, x.Cols, lo))
	})
	if err != nil {
		return nil, err
	}
	merged := make([]Partial, x.Rows)
	for i := range merged {
		merged[i] = EmptyPartial()
		for _, ps := range parts {
			if ps != nil {
				merged[i].Merge(ps[i])
			}
		}
	}
	return merged, nil
}

// shard returns p for the columns of x (cols wide) from lo on.
func shard(p *Problem, cols, lo int) *Problem {
	q := *p
	q.Vocab = p.Classes(cols)
	q.Col0 = p.Col0 + lo
	return &q
}

// Partials implements Device.
func (g *Group) Partials(ctx context.Context, dst []Partial, x Matrix, targets []int32, p *Problem) error {
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
func (g *Group) Backward(ctx context.Context, gr Grad, x Matrix, targets []int32, part []Partial, p *Problem) error {
	if err := errors.Join(hostOnly(x), hostOnly(Matrix{Buf: gr.Buf})); err != nil {
		return err
	}
	if g.split == SplitRows {
		return g.run(x.Rows, x.Rows*x.Cols, func(_ int, d Device, lo, hi int) error {
			return d.Backward(ctx, *gr.RowRange(lo, hi), x.RowRange(lo, hi), targets[lo:hi], part[lo:hi], p)
		})
	}
	return g.run(x.Cols, x.Rows*x.Cols, func(_ int, d Device, lo, hi int) error {
		return d.Backward(ctx, *gr.Columns(lo), x.Columns(lo, hi), targets, part, shard(p, x.Cols, lo))
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

// LinearCrossEntropy implements Device: a group has no fused linear
// cross-entropy yet (ErrNotImplemented).
func (g *Group) LinearCrossEntropy(context.Context, Out, *LinearGrad, *Linear, []int32, *Problem) error {
	return notLinear("a group")
}

// LinearPartials implements Device (ErrNotImplemented).
func (g *Group) LinearPartials(context.Context, []Partial, *Linear, []int32, *Problem) error {
	return notLinear("a group")
}

// LinearBackward implements Device (ErrNotImplemented).
func (g *Group) LinearBackward(context.Context, LinearGrad, *Linear, []int32, []Partial, *Problem) error {
	return notLinear("a group")
}
