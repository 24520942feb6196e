package bench

import (
	"runtime"
	"sync"
	"time"
)

var sink float32

// MeasureRoofline measures the CPU's streaming read bandwidth (a sum over
// x on GOMAXPROCS goroutines) and copy bandwidth (x into work, read + write
// bytes counted), each the best of 5 runs. x and work are as large as the
// benchmarked matrix, so caches do not flatter either figure.
func MeasureRoofline(x, work []float32) Roofline {
	procs := runtime.GOMAXPROCS(0)
	par := func(f func(lo, hi int)) float64 {
		var best float64
		for range 5 {
			var wg sync.WaitGroup
			t0 := time.Now()
			for p := range procs {
				lo, hi := len(x)*p/procs, len(x)*(p+1)/procs
				wg.Go(func() { f(lo, hi) })
			}
			wg.Wait()
			s := time.Since(t0).Seconds()
			if best == 0 || s < best {
				best = s
			}
		}
		return best
	}
	var mu sync.Mutex
	read := par(func(lo, hi int) {
		s := sumFloats(x[lo:hi])
		mu.Lock()
		sink += s // keeps the sum from being optimized away
		mu.Unlock()
	})
	cp := par(func(lo, hi int) { copy(work[lo:hi], x[lo:hi]) })
	n := float64(4 * len(x))
	return Roofline{ReadGBps: n / read / 1e9, CopyGBps: 2 * n / cp / 1e9}
}

// sumFloats is a streaming sum with eight independent accumulators, so the
// loop is bound by memory, not by the latency of one add chain.
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
