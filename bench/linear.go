package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/xentlab/xent/batch"
	"github.com/xentlab/xent/ce"
	"github.com/xentlab/xent/device"
	"github.com/xentlab/xent/device/blas"
	"github.com/xentlab/xent/internal/gen"
	"github.com/xentlab/xent/internal/tiles"
)

// LinearResult is the timing of one fused linear operation.
type LinearResult struct {
	Device     string  `json:"device"`
	Kernel     string  `json:"kernel"` // row kernel and BLAS
	Op         string  `json:"op"`     // linear-forward, linear-fused
	N          int     `json:"n"`
	V          int     `json:"v"`
	D          int     `json:"d"`
	SecondsMed float64 `json:"seconds_med"`
	SecondsMin float64 `json:"seconds_min"`
	SecondsMax float64 `json:"seconds_max"`
	// GFLOPs is the work over the median time: 2·N·V·D forward; forward +
	// backward 6·N·V·D with chunks over the whole vocabulary, 8·N·V·D when
	// tiles of the vocabulary are recomputed.
	GFLOPs float64 `json:"gflops"`
	// ExtraMB is the memory a call takes beyond its inputs and outputs:
	// the Go heap allocated during one call (C libraries' own buffers not
	// counted); for PyTorch the growth of the peak RSS.
	ExtraMB float64 `json:"extra_mb"`
	// DWErr, for linear-fused-filter: max |dW - dW unfiltered| over max
	// |dW unfiltered|.
	DWErr float64 `json:"dw_err,omitempty"`
	// DeviceMB is the device memory a call holds (off the CPU): the tile,
	// W, dW and the chunks of H and dH.
	DeviceMB float64 `json:"device_mb,omitempty"`
}

// LinearConfig is a fused linear benchmark.
type LinearConfig struct {
	N, V, D int
	Budget  int
	Devices []string
	BLAS    []string // gonum, openblas (default: both where present)
	Repeat  int
	Peers   bool
	// Peaked > 0 makes the rows like a trained model's: H_i =
	// Peaked·W_t/|W_t|² + noise (z_t ≈ Peaked, the rest N(0, Peaked²/D)).
	Peaked float64
	// Filter > 0 also times forward + backward with gradient filtering
	// at that threshold ("linear-fused-filter"), and reports how far its
	// dW is from the unfiltered one.
	Filter float64
	// TeacherK > 0 also times forward + backward with top-k distillation
	// (batch.Distill, α 0.5) from a teacher of TeacherK classes a row
	// ("linear-fused-distill"): the student's logits at them picked from
	// the partials' products where the device does (device.LinearPicker;
	// OpenCL's CLBlast path with XENT_OPENCL_PICK=1), else computed apart.
	TeacherK int
	PeerDir  string
	Log      func(format string, args ...any)
}

// SgemmPeak returns the GFLOP/s of b's Sgemm at 2048 × 2048 × 2048, the
// best of three: the product's practical peak on this machine.
func SgemmPeak(b *blas.BLAS) float64 {
	const n = 2048
	x := make([]float32, n*n)
	for k := range x {
		x[k] = float32(k%7) - 3
	}
	c := make([]float32, n*n)
	best := 0.0
	for range 3 {
		t0 := time.Now()
		b.Sgemm(false, true, n, n, n, 1, x, n, x, n, 0, c, n)
		best = max(best, 2*n*n*n/time.Since(t0).Seconds()/1e9)
	}
	return best
}

// LinearSeconds returns the median seconds of repeat forward + backward
// passes (forward passes, without backward) after a warm-up of the fused
// linear on dev at n × v × d, float32, H and W drawn as Linear draws
// them: xent tune's measure of a device's linear path.
func LinearSeconds(ctx context.Context, dev device.Device, n, v, d, repeat int, backward bool) (float64, error) {
	r := rand.New(rand.NewPCG(1, 2))
	h, w, tg := gen.Linear(r, n, d, v, 1/float64(d), 1)
	l, err := batch.NewLinear(dev)
	if err != nil {
		return 0, err
	}
	g := batch.LinearGrads{H: batch.NewGrad(make([]float32, n*d), n, d), W: batch.NewGrad(make([]float32, v*d), v, d)}
	var secs []float64
	for i := range max(repeat, 1) + 1 {
		t0 := time.Now()
		hm, wm := batch.NewMatrix(h, n, d), batch.NewMatrix(w, v, d)
		if backward {
			_, err = l.ForwardBackward(ctx, g, hm, wm, nil, tg, batch.One)
		} else {
			_, err = l.Forward(ctx, hm, wm, nil, tg)
		}
		if err != nil {
			return 0, err
		}
		if i > 0 { // the first run warms up (and builds the kernels)
			secs = append(secs, time.Since(t0).Seconds())
		}
	}
	slices.Sort(secs)
	return secs[len(secs)/2], nil
}

// Linear times the fused linear forward and forward + backward on the CPU
// devices and BLAS asked for, and PyTorch beside them with Peers.
func Linear(ctx context.Context, c LinearConfig) ([]LinearResult, map[string]float64, error) {
	if c.TeacherK < 0 || c.TeacherK > c.V {
		return nil, nil, fmt.Errorf("a teacher of %d classes a row: it takes 0 (none) to the vocabulary's %d", c.TeacherK, c.V)
	}
	r := rand.New(rand.NewPCG(1, 2))
	h, w, tg := gen.Linear(r, c.N, c.D, c.V, 1/float64(c.D), 1)
	if c.Peaked > 0 {
		for i, t := range tg {
			wt := w[int(t)*c.D : (int(t)+1)*c.D]
			nn := 0.0
			for _, x := range wt {
				nn += float64(x) * float64(x)
			}
			for k := range c.D {
				h[i*c.D+k] = float32(c.Peaked*float64(wt[k])/nn + 0.1*r.NormFloat64()/math.Sqrt(float64(c.D)))
			}
		}
	}
	g := batch.LinearGrads{H: batch.NewGrad(make([]float32, c.N*c.D), c.N, c.D), W: batch.NewGrad(make([]float32, c.V*c.D), c.V, c.D)}
	blases := map[string]*blas.BLAS{"gonum": blas.Gonum()}
	if o, err := blas.OpenBLAS(); err == nil {
		blases["openblas"] = o
	}
	names := c.BLAS
	if len(names) == 0 {
		for n := range blases {
			names = append(names, n)
		}
		slices.Sort(names)
	}
	peaks := map[string]float64{}
	var out []LinearResult
	for _, spec := range c.Devices {
		d, err := device.Open(spec)
		if err != nil {
			return nil, nil, err
		}
		if !d.Caps().Linear {
			return nil, nil, fmt.Errorf("%s has no fused linear cross-entropy (OpenCL needs CLBlast)", spec)
		}
		// A device's own float32 FMA rate (an OpenCL device's probe): what
		// its fused linear's products cannot pass.
		if fp, ok := d.(interface {
			FMAPeak(context.Context, int) (float64, error)
		}); ok {
			v, err := fp.FMAPeak(ctx, 3)
			if err != nil {
				return nil, nil, err
			}
			peaks[spec+" fp32 FMA probe"] = v / 1e9
		}
		// The CPU runs once per BLAS asked for; another device with its own.
		var runs []device.Device
		cd, isCPU := d.(*device.CPUDevice)
		for _, bn := range names {
			if !isCPU {
				runs = []device.Device{d}
				break
			}
			b, ok := blases[bn]
			if !ok {
				return nil, nil, fmt.Errorf("BLAS %q is not available here", bn)
			}
			if _, done := peaks[b.Name()]; !done {
				peaks[b.Name()] = SgemmPeak(b)
			}
			runs = append(runs, cd.WithBLAS(b))
		}
		for _, rd := range runs {
			l, err := batch.NewLinear(rd, batch.Budget(c.Budget))
			if err != nil {
				return nil, nil, err
			}
			ops := []string{"linear-forward", "linear-fused"}
			var lf *batch.Linear
			var dw0 []float32
			if c.Filter > 0 {
				ops = append(ops, "linear-fused-filter")
				if lf, err = batch.NewLinear(rd, batch.Budget(c.Budget), batch.GradFilter(c.Filter)); err != nil {
					return nil, nil, err
				}
			}
			var ld *batch.Linear
			if c.TeacherK > 0 {
				ops = append(ops, "linear-fused-distill")
				if ld, err = batch.NewLinear(rd, batch.Budget(c.Budget), batch.Distill(teacherOf(r, c.N, c.V, c.TeacherK), 0.5)); err != nil {
					return nil, nil, err
				}
			}
			// Off the CPU, also with W and dW resident on the device: only
			// H, the targets and dH cross the bus.
			var wd, dwd *batch.DeviceMatrix
			if !isCPU && rd.Caps().Resident {
				if wd, err = batch.Upload(ctx, rd, batch.NewMatrix(w, c.V, c.D)); err == nil {
					dwd, err = batch.Upload(ctx, rd, g.W.Matrix())
				}
				if err != nil {
					return nil, nil, err
				}
				ops = append(ops, "linear-fused-resident")
			}
			for _, op := range ops {
				var secs []float64
				var extra uint64
				for i := range c.Repeat + 1 {
					runtime.GC()
					var m0, m1 runtime.MemStats
					runtime.ReadMemStats(&m0)
					t0 := time.Now()
					clear(g.W.Matrix().Data)
					switch op {
					case "linear-forward":
						_, err = l.Forward(ctx, batch.NewMatrix(h, c.N, c.D), batch.NewMatrix(w, c.V, c.D), nil, tg)
					case "linear-fused":
						_, err = l.ForwardBackward(ctx, g, batch.NewMatrix(h, c.N, c.D), batch.NewMatrix(w, c.V, c.D), nil, tg, batch.One)
					case "linear-fused-filter":
						_, err = lf.ForwardBackward(ctx, g, batch.NewMatrix(h, c.N, c.D), batch.NewMatrix(w, c.V, c.D), nil, tg, batch.One)
					case "linear-fused-distill":
						_, err = ld.ForwardBackward(ctx, g, batch.NewMatrix(h, c.N, c.D), batch.NewMatrix(w, c.V, c.D), nil, tg, batch.One)
					case "linear-fused-resident":
						gr := g
						gr.W = dwd.Grad()
						_, err = l.ForwardBackward(ctx, gr, batch.NewMatrix(h, c.N, c.D), wd.Matrix(), nil, tg, batch.One)
					}
					s := time.Since(t0).Seconds()
					runtime.ReadMemStats(&m1)
					if err != nil {
						return nil, nil, err
					}
					if i > 0 {
						secs = append(secs, s)
						extra = max(extra, m1.TotalAlloc-m0.TotalAlloc)
					}
				}
				med, lo, hi := stats(secs)
				dwErr := 0.0
				switch op {
				case "linear-fused":
					dw0 = append(dw0[:0], g.W.Matrix().Data...)
				case "linear-fused-filter":
					big, diff := 0.0, 0.0
					for k, v := range dw0 {
						big = max(big, math.Abs(float64(v)))
						diff = max(diff, math.Abs(float64(g.W.Matrix().Data[k]-v)))
					}
					dwErr = diff / big
				}
				work := 2.0
				if op != "linear-forward" {
					work = 6
					if c.Budget > 0 && c.Budget/4/c.V < min(c.N, 64) { // tiles of the vocabulary (ce.Linear)
						work = 8
					}
				}
				info := rd.Info()
				lin := &ce.Linear{H: batch.NewMatrix(h, c.N, c.D), W: batch.NewMatrix(w, c.V, c.D), Budget: c.Budget}
				pl := tiles.PlanOf(lin, tg)
				if lp, ok := rd.(interface { // the device's own (OpenCL: wide tiles with Tuning.Wide)
					LinearPlan(lin *ce.Linear, targets []int32, grads bool) tiles.Plan
				}); ok {
					pl = lp.LinearPlan(lin, tg, op != "linear-forward")
				}
				// On a device: the tile, W, dW, H's and dH's chunks.
				devMB := float64(pl.R*pl.C+2*c.V*c.D+2*pl.R*c.D) * 4 / 1e6
				res := LinearResult{Device: info.Spec, Kernel: info.Kernel + ", " + info.BLAS, Op: op, N: c.N, V: c.V, D: c.D,
					SecondsMed: med, SecondsMin: lo, SecondsMax: hi, GFLOPs: work * float64(c.N) * float64(c.V) * float64(c.D) / med / 1e9,
					ExtraMB: float64(extra) / 1e6, DWErr: dwErr}
				if lb, ok := rd.(interface {
					LinearBytes(n, v, d int, t ce.DType, budget int) (int64, bool)
				}); ok {
					if b, ok := lb.LinearBytes(c.N, c.V, c.D, ce.F32, c.Budget); ok { // linear.cl's kernels
						devMB = float64(b) / 1e6
					}
				}
				if !isCPU {
					res.DeviceMB = devMB
				}
				c.Log("%s %s %s: %.3f s, %.1f GFLOP/s", res.Device, info.BLAS, op, med, res.GFLOPs)
				out = append(out, res)
			}
			if wd != nil {
				wd.Release()
				dwd.Release()
			}
		}
	}
	if c.Peers {
		ps, err := linearPeers(ctx, c)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, ps...)
	}
	return out, peaks, nil
}

// teacherOf returns a teacher of k distinct classes a row (k at most v),
// each of probability 0.9/k: for timing, not a model's.
func teacherOf(r *rand.Rand, n, v, k int) batch.Teacher {
	t := batch.Teacher{K: k, IDs: make([]int32, 0, n*k), LogProbs: make([]float32, n*k)}
	lp := float32(math.Log(0.9 / float64(k)))
	for i := range n {
		for _, c := range r.Perm(v)[:k] {
			t.IDs = append(t.IDs, int32(c))
		}
		for j := range k {
			t.LogProbs[i*k+j] = lp
		}
	}
	return t
}

// linearPeers runs bench/peers/pytorch_linear.py.
func linearPeers(ctx context.Context, c LinearConfig) ([]LinearResult, error) {
	dir := c.PeerDir
	if dir == "" {
		dir = filepath.Join("bench", "peers")
	}
	script := filepath.Join(dir, "pytorch_linear.py")
	py, err := python(ctx)
	if err != nil {
		return nil, err
	}
	var rs []LinearResult
	for _, op := range []string{"linear-forward", "linear-fused"} { // a process each: a clean RSS baseline
		var out, errb bytes.Buffer
		cmd := exec.CommandContext(ctx, py, script, "--batch", fmt.Sprint(c.N), "--vocab", fmt.Sprint(c.V), "--hidden", fmt.Sprint(c.D),
			"--repeat", fmt.Sprint(c.Repeat), "--threads", fmt.Sprint(runtime.GOMAXPROCS(0)), "--ops", op)
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("%s: %v: %s", script, err, strings.TrimSpace(errb.String()))
		}
		var r LinearResult
		if err := json.Unmarshal(bytes.TrimSpace(out.Bytes()), &r); err != nil {
			return nil, fmt.Errorf("%s: bad output %q: %v", script, out.String(), err)
		}
		rs = append(rs, r)
	}
	return rs, nil
}
