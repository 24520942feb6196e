package bench

import (
	"runtime"
	"sync"
	"time"
)

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
