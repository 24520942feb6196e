// Package bench measures xent honestly: each kernel variant and device side
// by side in one run, the median of several repeats after a warm-up, with
// the machine's measured memory bandwidth (the roofline) beside the
// figures, kernel-only and end-to-end (transfers counted) times for
// OpenCL devices, and PyTorch on the same CPU as a peer.
package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/xentlab/xent/batch"
	"github.com/xentlab/xent/cpu"
	"github.com/xentlab/xent/device"
	"github.com/xentlab/xent/internal/gen"
)

// Ops benchmarked.
const (
	OpLSE     = "lse"     // log-sum-exp per row
	OpForward = "forward" // loss per row (lse, target logit, argmax), mean reduction
	OpFused   = "fused"   // forward + gradient written in place
)

// Config says what to run.
type Config struct {
	Batch  int
	Vocabs []int
	Ops    []string
	// Types are the logits' element types (nil: float32); each op runs
	// on the same values in each.
	Types   []batch.DType
	Devices []string // device specs; "all" expands to every CPU variant and OpenCL device
	Repeat  int
	// Modes of the OpenCL runs: "kernel" (resident logits, kernel time
	// from profiling events), "end-to-end" (host logits, transfers
	// counted); nil: both.
	Modes   []string
	Peers   bool   // run bench/peers/pytorch_cpu.py too
	PeerDir string // where pytorch_cpu.py is (default bench/peers)
	Log     func(format string, args ...any)
}

// Result is one measured (device, kernel, op, size).
type Result struct {
	Device     string  `json:"device"`
	Kernel     string  `json:"kernel"`
	Op         string  `json:"op"`
	Type       string  `json:"type"` // the logits' element type
	Mode       string  `json:"mode"` // "host" (CPU), "kernel" or "end-to-end" (OpenCL), "peer"
	Batch      int     `json:"batch"`
	Vocab      int     `json:"vocab"`
	SecondsMed float64 `json:"seconds_median"`
	SecondsMin float64 `json:"seconds_min"`
	SecondsMax float64 `json:"seconds_max"`
	GBps       float64 `json:"gbps"`
	RooflineGB float64 `json:"roofline_gbps"`
	Fraction   float64 `json:"roofline_fraction"`
	VsPortable float64 `json:"vs_portable"`
	// VsF32 is the logits per second over the float32 run's, same device,
	// op and size (a half-precision type reads half the bytes).
	VsF32       float64 `json:"vs_float32"`
	RooflineFor string  `json:"roofline_kind"` // "cpu read", "cpu copy", "device copy", "host-device transfer", "pinned host-device transfer"
	// Host is "pinned" when the end-to-end run's logits (and in-place
	// gradient) were in batch.AllocHost's memory (XENT_BENCH_PINNED=1).
	Host string `json:"host,omitempty"`
}

// Report is the whole run.
type Report struct {
	Machine  map[string]string `json:"machine"`
	Roofline Roofline          `json:"roofline"`
	Results  []Result          `json:"results"`
}

func (c *Config) logf(format string, args ...any) {
	if c.Log != nil {
		c.Log(format, args...)
	}
}

// Run measures everything c asks for.
func Run(ctx context.Context, c Config) (*Report, error) {
	if c.Repeat < 1 {
		c.Repeat = 1
	}
	rep := &Report{Machine: machine()}
	devs, err := openDevices(c.Devices)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, d := range devs {
			d.Close()
		}
	}()
	types := c.Types
	if len(types) == 0 {
		types = []batch.DType{batch.F32}
	}
	for _, v := range c.Vocabs {
		x := gen.Logits(c.Batch, v, 1)
		tg := gen.Targets(c.Batch, v, 2)
		ins := make([]*logits, len(types))
		for k, t := range types {
			ins[k] = newLogits(t, x, c.Batch, v)
		}
		work := make([]float32, len(x))
		rl := MeasureRoofline(x, work)
		host := map[string]*hostRun{}
		var order []*hostRun
		for _, d := range devs {
			if d.Info().Backend == "opencl" {
				continue
			}
			for _, op := range c.Ops {
				for _, in := range ins {
					h, err := newHostRun(ctx, d, op, in, tg)
					if err != nil {
						return nil, fmt.Errorf("%s %s %v %d×%d: %w", d.Info().Spec, op, in.t, c.Batch, v, err)
					}
					host[d.Info().Spec+" "+op+" "+in.t.String()] = h
					order = append(order, h)
				}
			}
		}
		// The CPU runs take turns, one repeat each per round after a warm-up
		// round, with a read and a copy probe in every round: each figure
		// and the roofline see the same mix of this machine's moods.
		for i := range c.Repeat + 1 {
			if i > 0 {
				rl = rl.best(probe(x, work))
			}
			for _, h := range order {
				h.in.fresh() // fused overwrites them
				t0 := time.Now()
				if err := h.once(); err != nil {
					return nil, fmt.Errorf("%s %s %d×%d: %w", h.d.Info().Spec, h.op, c.Batch, v, err)
				}
				if i > 0 { // the first round warms up
					h.secs = append(h.secs, time.Since(t0).Seconds())
				}
			}
		}
		rep.Roofline = rl // the last (largest) size's probe is the report's: caches help it least
		c.logf("roofline at %d×%d: read %.1f GB/s, copy %.1f GB/s", c.Batch, v, rl.ReadGBps, rl.CopyGBps)
		for _, d := range devs {
			for _, op := range c.Ops {
				for _, in := range ins {
					var rs []Result
					if h := host[d.Info().Spec+" "+op+" "+in.t.String()]; h != nil {
						rs = []Result{h.result(rl)}
					} else if rs, err = measureOpenCL(ctx, d, op, in, tg, c.Repeat, c.Modes); err != nil {
						return nil, fmt.Errorf("%s %s %v %d×%d: %w", d.Info().Spec, op, in.t, c.Batch, v, err)
					}
					for _, r := range rs {
						c.logf("%-22s %-8s %-8s %-10s %d×%d: %8.4f s  %7.2f GB/s  %4.0f%% of %s", r.Device, r.Op, r.Type, r.Mode, r.Batch, r.Vocab, r.SecondsMed, r.GBps, 100*r.Fraction, r.RooflineFor)
					}
					rep.Results = append(rep.Results, rs...)
				}
			}
		}
		if c.Peers {
			ps, probes, err := Peers(ctx, c.PeerDir, c.Batch, v, c.Ops, c.Repeat, c.Types)
			if err != nil {
				c.logf("peers: %v", err)
			}
			for i := range ps {
				setFraction(&ps[i], rl)
			}
			rep.Results = append(rep.Results, ps...)
			rep.Roofline.Probes = append(rep.Roofline.Probes, probes...) // beside the report's roofline, of the same size
		}
	}
	ratios(rep.Results)
	return rep, nil
}

// openDevices opens the devices named by specs ("all": every CPU variant
// and every OpenCL device).
func openDevices(specs []string) ([]device.Device, error) {
	var names []string
	for _, s := range specs {
		if s != "all" {
			names = append(names, s)
			continue
		}
		for _, k := range cpu.Impls() {
			names = append(names, "cpu:"+k.Name())
		}
		for _, d := range device.List() {
			if strings.HasPrefix(d.Spec, "opencl:") {
				names = append(names, d.Spec)
			}
		}
	}
	var devs []device.Device
	seen := map[string]bool{}
	for _, n := range names {
		d, err := device.Open(n)
		if err != nil {
			for _, o := range devs {
				o.Close()
			}
			return nil, err
		}
		if seen[d.Info().Spec] { // "cpu" and "cpu:portable" can be the same device
			d.Close()
			continue
		}
		seen[d.Info().Spec] = true
		devs = append(devs, d)
	}
	return devs, nil
}

// stats returns the median, min and max of secs.
func stats(secs []float64) (med, lo, hi float64) {
	s := slices.Clone(secs)
	slices.Sort(s)
	return s[len(s)/2], s[0], s[len(s)-1]
}

// logits are one size's logits in one element type: x the values (the
// float32 ones rounded to the type), work what the ops run on (fused
// overwrites it; fresh restores it).
type logits struct {
	t          batch.DType
	rows, cols int
	x, work    []float32 // float32
	xh, workh  []uint16  // the half-precision types
}

func newLogits(t batch.DType, x []float32, rows, cols int) *logits {
	in := &logits{t: t, rows: rows, cols: cols}
	if t == batch.F32 {
		in.x, in.work = x, make([]float32, len(x))
	} else {
		in.xh, in.workh = make([]uint16, len(x)), make([]uint16, len(x))
		cpu.Narrow(in.xh, x, t)
	}
	return in
}

func (in *logits) fresh() {
	copy(in.work, in.x)
	copy(in.workh, in.xh)
}

// matrix returns the work rows.
func (in *logits) matrix() batch.Matrix {
	if in.t == batch.F32 {
		return batch.NewMatrix(in.work, in.rows, in.cols)
	}
	return batch.NewHalfMatrix(in.workh, in.t, in.rows, in.cols)
}

// pin puts the working copy of the logits in dev's batch.AllocHost
// memory (pinned, on an OpenCL GPU) until restore.
func (in *logits) pin(dev device.Device) (restore func(), err error) {
	m, free, err := batch.AllocHost(dev, in.rows, in.cols, in.t)
	if err != nil {
		return nil, err
	}
	w, wh := in.work, in.workh
	if in.t == batch.F32 {
		in.work = m.Data
	} else {
		in.workh = m.Half
	}
	return func() {
		in.work, in.workh = w, wh
		free() // an error here leaves the memory to the device's Close
	}, nil
}

// bytes returns the bytes of the matrix.
func (in *logits) bytes() float64 { return float64(in.t.Size() * in.rows * in.cols) }

// hostRun is one op on one CPU device, timed by Run in turns with the
// others.
type hostRun struct {
	d    device.Device
	op   string
	in   *logits
	once func() error
	secs []float64
}

func newHostRun(ctx context.Context, d device.Device, op string, in *logits, tg []int32) (*hostRun, error) {
	r, err := newOpRun(d, op, in, tg)
	if err != nil {
		return nil, err
	}
	return &hostRun{d: d, op: op, in: in, once: func() error { return r.do(ctx, r.m) }}, nil
}

// result is the run's figure against the CPU roofline rl.
func (h *hostRun) result(rl Roofline) Result {
	r := newResult(h.d.Info(), h.op, "host", h.in, h.secs)
	setFraction(&r, rl)
	return r
}

// newResult returns the figures of secs on in: GB/s of the logits' own
// bytes (half of float32's for the half-precision types).
func newResult(info device.Info, op, mode string, in *logits, secs []float64) Result {
	med, lo, hi := stats(secs)
	return Result{Device: info.Spec, Kernel: info.Kernel, Op: op, Type: in.t.String(), Mode: mode, Batch: in.rows, Vocab: in.cols,
		SecondsMed: med, SecondsMin: lo, SecondsMax: hi, GBps: in.bytes() / med / 1e9}
}

// opRun is one op on one device over the work logits of in: lse,
// forward, or forward + backward with the gradient in place.
type opRun struct {
	op  string
	l   *batch.Loss
	m   batch.Matrix
	tg  []int32
	lse []float32
}

func newOpRun(d device.Device, op string, in *logits, tg []int32) (*opRun, error) {
	switch op {
	case OpLSE, OpForward, OpFused:
	default:
		return nil, fmt.Errorf("unknown op %q (want lse, forward, fused)", op)
	}
	l, err := batch.New(d)
	if err != nil {
		return nil, err
	}
	return &opRun{op: op, l: l, m: in.matrix(), tg: tg, lse: make([]float32, in.rows)}, nil
}

// do runs the op on m: the host rows (on an OpenCL device, transfers
// included), or rows resident on the device (dm.Matrix()).
func (r *opRun) do(ctx context.Context, m batch.Matrix) error {
	var err error
	switch r.op {
	case OpLSE:
		err = r.l.LogSumExp(ctx, r.lse, m)
	case OpForward:
		_, err = r.l.Forward(ctx, m, r.tg)
	case OpFused:
		_, err = r.l.ForwardBackward(ctx, batch.InPlace(m), m, r.tg, batch.One)
	}
	return err
}

// profiler is what an OpenCL device offers a benchmark: its copy
// bandwidth and the kernel time of its last call (package opencl's Device;
// named here so that bench does not link a back end).
type profiler interface {
	CopyBandwidth(ctx context.Context, bytes, repeats int) (float64, error)
	LastKernelTime() time.Duration
	FusedReads(cols int, t batch.DType) int
	PinnedBandwidth(ctx context.Context, bytes, repeats int) (float64, error)
}

// kernelSeconds returns od's last kernel time in seconds, or an error
// where it has none (0: the driver gave no profiling time for a kernel).
func kernelSeconds(od profiler) (float64, error) {
	s := od.LastKernelTime().Seconds()
	if s <= 0 {
		return 0, errors.New("bench: the device's profiling events gave no kernel time: its kernel-only timings are unknown")
	}
	return s, nil
}

// measureOpenCL times one op on an OpenCL device: end-to-end (host slices,
// transfers counted) and kernel-only (resident buffer, profiling events),
// the median of repeat runs after a warm-up; only the modes asked for
// (nil: both).
func measureOpenCL(ctx context.Context, d device.Device, op string, in *logits, tg []int32, repeat int, modes []string) ([]Result, error) {
	want := func(m string) bool { return len(modes) == 0 || slices.Contains(modes, m) }
	info := d.Info()
	rows, cols := in.rows, in.cols
	host := ""
	if os.Getenv("XENT_BENCH_PINNED") == "1" {
		restore, err := in.pin(d)
		if err != nil {
			return nil, err
		}
		defer restore()
		host = "pinned"
	}
	run, err := newOpRun(d, op, in, tg)
	if err != nil {
		return nil, err
	}
	// fresh: the host logits restored before each run (an end-to-end
	// fused pass overwrites them; a kernel-only one its resident copy,
	// which it may compute on again: bounded values, the same work).
	timeIt := func(fresh bool, f func() (float64, error)) ([]float64, error) {
		var secs []float64
		for i := range repeat + 1 {
			if fresh {
				in.fresh()
			}
			s, err := f()
			if err != nil {
				return nil, err
			}
			if i > 0 { // the first run warms up
				secs = append(secs, s)
			}
		}
		return secs, nil
	}
	var rs []Result
	od, ok := d.(profiler)
	if want("end-to-end") || !ok {
		secs, err := timeIt(true, func() (float64, error) {
			t0 := time.Now()
			err := run.do(ctx, run.m)
			return time.Since(t0).Seconds(), err
		})
		if err != nil {
			return nil, err
		}
		e2e := newResult(info, op, "end-to-end", in, secs)
		e2e.Host = host
		if !ok {
			return []Result{e2e}, nil
		}
		in.fresh()
		h2d := transferBandwidth(ctx, d, in.matrix(), in.bytes())
		e2e.RooflineFor = "host-device transfer"
		if p, err := od.PinnedBandwidth(ctx, int(in.bytes()), 3); err == nil && p > h2d {
			h2d, e2e.RooflineFor = p, "pinned host-device transfer" // what the staged transfers can reach
		}
		e2e.RooflineGB = h2d / 1e9
		e2e.Fraction = transferBytes(op, in) / e2e.SecondsMed / h2d
		rs = append(rs, e2e)
	}
	if !want("kernel") {
		return rs, nil
	}
	copyBW, err := od.CopyBandwidth(ctx, min(4*rows*cols, 1<<28), repeat)
	if err != nil {
		return nil, err
	}
	// Kernel-only: a resident buffer, kernel time from profiling events.
	in.fresh()
	dm, err := batch.Upload(ctx, d, run.m)
	if err != nil {
		return nil, err
	}
	defer dm.Release()
	ksecs, err := timeIt(false, func() (float64, error) {
		if err := run.do(ctx, dm.Matrix()); err != nil {
			return 0, err
		}
		return kernelSeconds(od)
	})
	if err != nil {
		return nil, err
	}
	k := newResult(info, op, "kernel", in, ksecs)
	k.RooflineFor, k.RooflineGB = "device copy", copyBW/1e9
	// Device traffic: one read for lse and forward; for fused, one write
	// and the reads the device takes (one where a row fits in its
	// registers, else two: the second pass may hit the cache; this counts
	// it as not).
	traffic := in.bytes()
	if op == OpFused {
		traffic *= float64(1 + od.FusedReads(cols, in.t))
	}
	k.Fraction = traffic / k.SecondsMed / copyBW
	return append([]Result{k}, rs...), nil
}

// transferBytes is what crosses the bus end to end: the logits in, and
// for the fused op the gradient out (in the logits' type).
func transferBytes(op string, in *logits) float64 {
	b := in.bytes()
	if op == OpFused {
		b *= 2
	}
	return b
}

// transferBandwidth measures host-to-device upload bandwidth (bytes/s) of
// m, of the bytes given.
func transferBandwidth(ctx context.Context, d device.Device, m batch.Matrix, bytes float64) float64 {
	best := math.Inf(1)
	for range 3 {
		t0 := time.Now()
		dm, err := batch.Upload(ctx, d, m)
		if err != nil {
			return math.NaN()
		}
		best = min(best, time.Since(t0).Seconds())
		dm.Release()
	}
	return bytes / best
}

// setFraction sets the CPU roofline of a host or peer result: the read
// probe for lse and forward, the copy probe for fused (2 bytes moved per
// logit byte).
func setFraction(r *Result, rl Roofline) {
	if r.Op == OpFused {
		r.RooflineFor, r.RooflineGB = "cpu copy", rl.CopyGBps
		r.Fraction = 2 * r.GBps / rl.CopyGBps
		return
	}
	r.RooflineFor, r.RooflineGB = "cpu read", rl.ReadGBps
	r.Fraction = r.GBps / rl.ReadGBps
}

// ratios sets VsPortable, each result's throughput over the portable CPU
// path's for the same op, type and size, and VsF32, its logits per second
// over the float32 run's of the same device, op, mode and size.
func ratios(rs []Result) {
	for i := range rs {
		r := &rs[i]
		for _, p := range rs {
			same := p.Op == r.Op && p.Vocab == r.Vocab && p.Batch == r.Batch
			if same && p.Device == "cpu:portable" && p.Type == r.Type {
				r.VsPortable = r.GBps / p.GBps
			}
			if same && p.Device == r.Device && p.Mode == r.Mode && p.Type == batch.F32.String() && r.Type != "" {
				r.VsF32 = p.SecondsMed / r.SecondsMed
			}
		}
	}
}

func machine() map[string]string {
	m := map[string]string{
		"cpu":        device.List()[0].Name,
		"gomaxprocs": fmt.Sprint(runtime.GOMAXPROCS(0)),
		"go":         runtime.Version(),
		"goarch":     runtime.GOARCH,
		"date":       time.Now().UTC().Format(time.RFC3339),
		"cpu_kernel": cpu.Default().Name(),
	}
	for _, d := range device.List() {
		if strings.HasPrefix(d.Spec, "opencl:") {
			m[d.Spec] = d.Name
		}
	}
	return m
}
