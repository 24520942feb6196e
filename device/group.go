package device

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Group is a Device that splits the rows of each call across several
// devices in proportion to their measured speed and runs them at once.
// Rows are independent and every per-row output has its own place, so the
// parts need no merging beyond their row ranges; reductions over rows stay
// with the caller (batch.Stats merges exactly).
type Group struct {
	devs []Device
	mu   sync.Mutex
	rate []float64 // logits per second, measured; 0 until first seen
}

// NewGroup returns a Group over devs; it closes them when closed.
func NewGroup(devs ...Device) (*Group, error) {
	if len(devs) == 0 {
		return nil, errors.New("device: empty group")
	}
	return &Group{devs: devs, rate: make([]float64, len(devs))}, nil
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
		Kernel: strings.Join(kernels, " + "), Spec: "all (" + strings.Join(specs, ", ") + ")"}
}

// Devices returns the members of the group.
func (g *Group) Devices() []Device { return g.devs }

// split returns the row boundaries of each device's part.
func (g *Group) split(rows int) []int {
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
		cut[i+1] = int(float64(rows) * acc / total)
	}
	cut[len(r)] = rows
	return cut
}

func (g *Group) run(ctx context.Context, rows, cols int, f func(d Device, lo, hi int) error) error {
	cut := g.split(rows)
	errs := make([]error, len(g.devs))
	var wg sync.WaitGroup
	for i, d := range g.devs {
		lo, hi := cut[i], cut[i+1]
		if lo == hi {
			continue
		}
		wg.Go(func() {
			start := time.Now()
			if errs[i] = f(d, lo, hi); errs[i] != nil {
				errs[i] = fmt.Errorf("%s: %w", d.Info().Spec, errs[i])
				return
			}
			rate := float64((hi-lo)*cols) / max(time.Since(start).Seconds(), 1e-9)
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

func rowsOf(x Matrix, lo, hi int) Matrix {
	return Matrix{Data: x.Data[lo*x.Stride:], Rows: hi - lo, Cols: x.Cols, Stride: x.Stride}
}

// LogSumExp implements Device.
func (g *Group) LogSumExp(ctx context.Context, dst []float32, x Matrix) error {
	return g.run(ctx, x.Rows, x.Cols, func(d Device, lo, hi int) error {
		return d.LogSumExp(ctx, dst[lo:hi], rowsOf(x, lo, hi))
	})
}

// CrossEntropy implements Device.
func (g *Group) CrossEntropy(ctx context.Context, x Matrix, targets []int32, opt *Options, out Rows, grad *Grad) error {
	return g.run(ctx, x.Rows, x.Cols, func(d Device, lo, hi int) error {
		o := Rows{Loss: sub(out.Loss, lo, hi), LSE: sub(out.LSE, lo, hi), Correct: sub(out.Correct, lo, hi)}
		var gr *Grad
		if grad != nil {
			gr = &Grad{Data: grad.Data[lo*grad.Stride:], Stride: grad.Stride, Scale: grad.Scale[lo:hi]}
		}
		return d.CrossEntropy(ctx, rowsOf(x, lo, hi), targets[lo:hi], opt, o, gr)
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
