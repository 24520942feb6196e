package bench

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	vec "github.com/xentlab/xent/bench/internal/probe"
	"github.com/xentlab/xent/cpu"
)

// Probe is one way of measuring the CPU's memory bandwidth or FMA rate,
// and the best it measured.
type Probe struct {
	Name  string  `json:"name"`
	Kind  string  `json:"kind"` // "read", "copy" (read + write bytes counted), "fma" (GFLOP/s)
	Value float64 `json:"value"`
	Peer  bool    `json:"peer,omitempty"` // measured by a peer (PyTorch, NumPy): shown beside ours, not in the roofline
}

// Roofline is what this machine's CPU does at best, measured in the run:
// the streaming read bandwidth and the copy bandwidth (read + write bytes
// counted), in GB/s, each the best of several probes (Probes), and the
// vector FMA peak in GFLOP/s.
type Roofline struct {
	ReadGBps  float64 `json:"read_gbps"`
	CopyGBps  float64 `json:"copy_gbps"`
	FMAGflops float64 `json:"fma_gflops,omitempty"`
	ReadBy    string  `json:"read_by,omitempty"`
	CopyBy    string  `json:"copy_by,omitempty"`
	Probes    []Probe `json:"probes,omitempty"`
}

// MeasureRoofline takes every probe 5 times over x (and work, as large):
// x and work are as large as the benchmarked matrix, so caches do not
// flatter the figures. Run takes one more of each in each round of its
// CPU runs and keeps the best.
func MeasureRoofline(x, work []float32) Roofline {
	var rl Roofline
	for range 5 {
		rl = rl.best(probe(x, work))
	}
	return rl
}

// probe takes each probe once (the reads twice), all on GOMAXPROCS
// goroutines:
//   - read: the portable sum (eight accumulators) and the vector sum of
//     cpu.SIMD() (four vectors a step, assembly);
//   - copy: Go's copy of x into work, and an in-place scale of work by 1
//     (one read and one write of each line, the traffic of the in-place
//     gradient, without the write-allocate reads a copy's stores cause);
//   - fma: cpu.SIMD()'s FMA loop, 50 ms or so.
func probe(x, work []float32) Roofline {
	procs := runtime.GOMAXPROCS(0)
	par := func(f func(lo, hi int) float32) float64 {
		var wg sync.WaitGroup
		var mu sync.Mutex
		var total float32
		t0 := time.Now()
		for p := range procs {
			lo, hi := len(x)*p/procs, len(x)*(p+1)/procs
			wg.Go(func() {
				s := f(lo, hi)
				mu.Lock()
				total += s
				mu.Unlock()
			})
		}
		wg.Wait()
		d := time.Since(t0).Seconds()
		runtime.KeepAlive(total) // the sums must be computed
		return d
	}
	n := float64(4 * len(x))
	th := fmt.Sprintf(", %d threads", procs)
	var ps []Probe
	add := func(name, kind string, v float64) { ps = append(ps, Probe{Name: name + th, Kind: kind, Value: v}) }
	// The reads first, each twice: a read that follows writes (the copy,
	// a kernel's gradient) also pays for the dirty lines it evicts.
	for range 2 {
		add("portable sum, 8 accumulators", "read", n/par(func(lo, hi int) float32 { return sumFloats(x[lo:hi]) })/1e9)
		if k := cpu.SIMD(); k != nil {
			if vec.Has(k.Name(), "sum") {
				add(k.Name()+" vector sum, 4 vectors a step", "read", n/par(func(lo, hi int) float32 { s, _ := vec.Sum(k.Name(), x[lo:hi]); return s })/1e9)
			}
		}
	}
	add("Go copy", "copy", 2*n/par(func(lo, hi int) float32 { copy(work[lo:hi], x[lo:hi]); return 0 })/1e9)
	impl := cpu.Default()
	add(impl.Name()+" in-place scale", "copy", 2*n/par(func(lo, hi int) float32 { impl.Scale(work[lo:hi], 1); return 0 })/1e9)
	if k := cpu.SIMD(); k != nil && vec.Has(k.Name(), "fma") {
		const iters = 1 << 21
		var flops atomic.Int64 // of all goroutines
		secs := par(func(lo, hi int) float32 { f, v := vec.FMA(k.Name(), iters); flops.Add(int64(f)); return v })
		add(k.Name()+" FMA, 10 chains", "fma", float64(flops.Load())/secs/1e9)
	}
	return Roofline{}.best(Roofline{Probes: ps})
}

// best keeps the better figure of each probe of r and o.
func (r Roofline) best(o Roofline) Roofline {
	out := Roofline{Probes: append([]Probe(nil), r.Probes...)}
	for _, p := range o.Probes {
		found := false
		for i := range out.Probes {
			if out.Probes[i].Name == p.Name && out.Probes[i].Kind == p.Kind {
				out.Probes[i].Value, found = max(out.Probes[i].Value, p.Value), true
			}
		}
		if !found {
			out.Probes = append(out.Probes, p)
		}
	}
	return out.summed()
}

// summed sets the roofline from the best of our probes (peers' are shown,
// not counted).
func (r Roofline) summed() Roofline {
	r.ReadGBps, r.CopyGBps, r.FMAGflops, r.ReadBy, r.CopyBy = 0, 0, 0, "", ""
	for _, p := range r.Probes {
		if p.Peer {
			continue
		}
		switch {
		case p.Kind == "read" && p.Value > r.ReadGBps:
			r.ReadGBps, r.ReadBy = p.Value, p.Name
		case p.Kind == "copy" && p.Value > r.CopyGBps:
			r.CopyGBps, r.CopyBy = p.Value, p.Name
		case p.Kind == "fma" && p.Value > r.FMAGflops:
			r.FMAGflops = p.Value
		}
	}
	return r
}

// sumFloats is a streaming sum with eight independent accumulators, so the
// loop is bound by memory more than by the latency of one add chain.
func sumFloats(x []float32) float32 {
	var s0, s1, s2, s3, s4, s5, s6, s7 float32
	n := len(x) &^ 7
	for j := 0; j < n; j += 8 {
		v := x[j : j+8 : j+8]
		s0 += v[0]
		s1 += v[1]
		s2 += v[2]
		s3 += v[3]
		s4 += v[4]
		s5 += v[5]
		s6 += v[6]
		s7 += v[7]
	}
	for _, v := range x[n:] {
		s0 += v
	}
	return s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7
}
