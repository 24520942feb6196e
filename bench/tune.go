package bench

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/xentlab/xent/batch"
	"github.com/xentlab/xent/device"
	"github.com/xentlab/xent/internal/gen"
)

// Param is one of a device's tunables and the values to try.
type Param struct {
	Name   string
	Values []int
}

// TuneConfig says what Tune times: the ops, in the element types, at the
// sizes, kernel-only (the logits resident, kernel time from profiling
// events), on the devices Open returns for each candidate.
type TuneConfig struct {
	Batch  int
	Vocabs []int
	Types  []batch.DType // nil: float32
	Ops    []string      // nil: lse, forward, fused
	Repeat int
	// Params are visited in order, Rounds times (coordinate descent): each
	// value of one parameter is tried with the others at the best so far.
	Params []Param
	Rounds int
	// Start is the first candidate (the device's tuning today): the
	// scores are relative to its times.
	Start map[string]int
	// Open opens the device with the candidate's parameters.
	Open func(map[string]int) (device.Device, error)
	Log  func(format string, args ...any)
}

// Trial is one candidate's times.
type Trial struct {
	Params map[string]int `json:"params"`
	// Kernel is the device's own account of what ran (its work-group
	// size as built: a device may cap it).
	Kernel string `json:"kernel"`
	// Seconds are the median kernel times by "op type BxV".
	Seconds map[string]float64 `json:"seconds"`
	// Score is the geometric mean of the times over Start's: below 1 is
	// faster.
	Score float64 `json:"score"`
	Err   string  `json:"error,omitempty"`
}

// TuneReport is Tune's account: every candidate tried, in order, and the
// best.
type TuneReport struct {
	Machine map[string]string `json:"machine"`
	Trials  []Trial           `json:"trials"`
	Best    Trial             `json:"best"`
}

// Tune times the candidates of c by coordinate descent from c.Start and
// returns them all with the best (lowest score). A candidate that cannot
// be opened or run is kept with its error and never best; the start's
// error, a device's profiling clock that its copy probe refuses
// included, is Tune's.
func Tune(ctx context.Context, c TuneConfig) (*TuneReport, error) {
	if c.Open == nil || len(c.Vocabs) == 0 || c.Batch < 1 {
		return nil, errors.New("bench: Tune needs Open, a batch and a vocabulary")
	}
	c.Repeat, c.Rounds = max(c.Repeat, 1), max(c.Rounds, 1)
	types, ops := c.Types, c.Ops
	if len(types) == 0 {
		types = []batch.DType{batch.F32}
	}
	if len(ops) == 0 {
		ops = []string{OpLSE, OpForward, OpFused}
	}
	type size struct {
		ins []*logits
		tg  []int32
	}
	var sizes []size
	for _, v := range c.Vocabs {
		x := gen.Logits(c.Batch, v, 1)
		s := size{tg: gen.Targets(c.Batch, v, 2)}
		for _, t := range types {
			s.ins = append(s.ins, newLogits(t, x, c.Batch, v))
		}
		sizes = append(sizes, s)
	}
	rep := &TuneReport{Machine: machine()}
	var base map[string]float64
	seen := map[string]*Trial{}
	try := func(p map[string]int) (*Trial, error) {
		tr := &Trial{Params: maps.Clone(p), Seconds: map[string]float64{}, Score: math.Inf(1)}
		err := func() error {
			d, err := c.Open(p)
			if err != nil {
				return err
			}
			defer d.Close()
			tr.Kernel = d.Info().Kernel
			if prev, ok := seen[tr.Kernel]; ok { // the same kernels as a candidate before (a capped size)
				tr.Seconds, tr.Score, tr.Err = prev.Seconds, prev.Score, prev.Err
				return nil
			}
			od, ok := d.(profiler)
			if !ok {
				return fmt.Errorf("%s times no kernels", d.Info().Spec)
			}
			if len(rep.Trials) == 0 {
				// The start: a profiling clock that cannot time the kernels
				// (the copy probe refuses it) would rank the candidates at
				// random, and --write would keep the draw.
				if _, err := od.CopyBandwidth(ctx, 16<<20, 2); err != nil {
					return err
				}
			}
			for _, s := range sizes {
				for _, in := range s.ins {
					if err := tuneOne(ctx, d, od, ops, in, s.tg, c.Repeat, tr.Seconds); err != nil {
						return err
					}
				}
			}
			return nil
		}()
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			tr.Err = err.Error()
		} else if _, ok := seen[tr.Kernel]; !ok {
			if base == nil {
				base = tr.Seconds
			}
			tr.Score = score(tr.Seconds, base)
			seen[tr.Kernel] = tr
		}
		rep.Trials = append(rep.Trials, *tr)
		if c.Log != nil {
			c.Log("%s", tr)
		}
		return tr, nil
	}
	best, err := try(c.Start)
	if err != nil {
		return nil, err
	}
	if best.Err != "" {
		return rep, fmt.Errorf("bench: the starting tuning %v: %s", c.Start, best.Err)
	}
	for range c.Rounds {
		for _, prm := range c.Params {
			for _, v := range prm.Values {
				if v == best.Params[prm.Name] {
					continue
				}
				p := maps.Clone(best.Params)
				p[prm.Name] = v
				tr, err := try(p)
				if err != nil {
					return rep, err
				}
				if tr.Score < best.Score {
					best = tr
				}
			}
		}
	}
	rep.Best = *best
	return rep, nil
}

// tuneOne times each op on in resident on d, in order (fused last: it
// overwrites the logits with their gradient, on which it then runs
// again, bounded values, the same work), into secs.
func tuneOne(ctx context.Context, d device.Device, od profiler, ops []string, in *logits, tg []int32, repeat int, secs map[string]float64) error {
	in.fresh()
	dm, err := batch.Upload(ctx, d, in.matrix())
	if err != nil {
		return err
	}
	defer dm.Release()
	for _, op := range orderOps(ops) {
		run, err := newOpRun(d, op, in, tg)
		if err != nil {
			return err
		}
		var ts []float64
		for i := range repeat + 1 {
			if err := run.do(ctx, dm.Matrix()); err != nil {
				return err
			}
			if i > 0 {
				s, err := kernelSeconds(od)
				if err != nil {
					return err
				}
				ts = append(ts, s)
			}
		}
		med, _, _ := stats(ts)
		secs[fmt.Sprintf("%s %s %dx%d", op, in.t, in.rows, in.cols)] = med
	}
	return nil
}

// orderOps returns ops with fused last.
func orderOps(ops []string) []string {
	out := slices.DeleteFunc(slices.Clone(ops), func(s string) bool { return s == OpFused })
	if slices.Contains(ops, OpFused) {
		out = append(out, OpFused)
	}
	return out
}

// score is the geometric mean of secs over base, key by key.
func score(secs, base map[string]float64) float64 {
	var sum float64
	n := 0
	for k, s := range secs {
		if b, ok := base[k]; ok && b > 0 && s > 0 {
			sum += math.Log(s / b)
			n++
		}
	}
	if n == 0 {
		return math.Inf(1)
	}
	return math.Exp(sum / float64(n))
}

func (t Trial) String() string {
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(t.Params)) {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", k, t.Params[k])
	}
	if t.Err != "" {
		return fmt.Sprintf("%s: %s", b.String(), t.Err)
	}
	fmt.Fprintf(&b, " (%s): score %.3f;", t.Kernel, t.Score)
	for _, k := range slices.Sorted(maps.Keys(t.Seconds)) {
		fmt.Fprintf(&b, " %s %.4g ms;", k, 1e3*t.Seconds[k])
	}
	return strings.TrimSuffix(b.String(), ";")
}
