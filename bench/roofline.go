package bench

import (
	"runtime"
	"sync"
	"time"
)

// MeasureRoofline measures the CPU's streaming read bandwidth (a sum over
// x on GOMAXPROCS goroutines) and copy bandwidth (x into work, read + write
// bytes counted), each the best of 5 runs. x and work are as large as the
// benchmarked matrix, so caches do not flatter either figure. Run takes one
// more probe in each round of its CPU runs and keeps the best.
func MeasureRoofline(x, work []float32) Roofline {
	var rl Roofline
	for range 5 {
		rl = rl.best(probe(x, work))
	}
	return rl
}

// probe is one read and one copy of x.
func probe(x, work []float32) Roofline {
	procs := runtime.GOMAXPROCS(0)
	par := func(f func(lo, hi int)) float64 {
		var wg sync.WaitGroup
		t0 := time.Now()
		for p := range procs {
			lo, hi := len(x)*p/procs, len(x)*(p+1)/procs
			wg.Go(func() { f(lo, hi) })
		}
		wg.Wait()
		return time.Since(t0).Seconds()
	}
	var mu sync.Mutex
	var total float32
	read := par(func(lo, hi int) {
		s := sumFloats(x[lo:hi])
		mu.Lock()
		total += s
		mu.Unlock()
	})
	runtime.KeepAlive(total) // the sums must be computed
	cp := par(func(lo, hi int) { copy(work[lo:hi], x[lo:hi]) })
	n := float64(4 * len(x))
	return Roofline{ReadGBps: n / read / 1e9, CopyGBps: 2 * n / cp / 1e9}
}

// best is the larger of each bandwidth of r and o.
func (r Roofline) best(o Roofline) Roofline {
	return Roofline{ReadGBps: max(r.ReadGBps, o.ReadGBps), CopyGBps: max(r.CopyGBps, o.CopyGBps)}
}
