package spec

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/batch"
	"github.com/xentlab/xent/device"
)

// RunConcurrent has 16 goroutines share dev (and the more devices, in turn:
// several Devices opened on one OpenCL device share its program and
// kernels), each on its own matrix, and checks every result is
// bit-identical to the serial run of the same matrix; then that no
// goroutine outlives the calls.
func RunConcurrent(t *testing.T, dev device.Device, more ...device.Device) {
	ctx := context.Background()
	const workers, rows, cols = 16, 37, 1031
	type job struct {
		x    []float32
		tg   []int32
		loss []float32
		grad []float32
	}
	jobs := make([]*job, workers)
	var losses []*batch.Loss
	for _, d := range append([]device.Device{dev}, more...) {
		l, err := batch.New(d, batch.Reduce(batch.None), batch.LabelSmoothing(0.05))
		require.NoError(t, err)
		losses = append(losses, l)
	}
	run := func(w int, j *job) ([]float32, []float32, error) {
		g := make([]float32, len(j.x))
		r, err := losses[w%len(losses)].ForwardBackward(ctx, batch.NewGrad(g, rows, cols), batch.NewMatrix(j.x, rows, cols), j.tg, batch.One)
		return r.Losses, g, err
	}
	for w := range jobs {
		rng := rand.New(rand.NewPCG(uint64(w), 99))
		j := &job{x: make([]float32, rows*cols), tg: make([]int32, rows)}
		for i := range j.x {
			j.x[i] = float32(rng.NormFloat64() * 3)
		}
		for i := range j.tg {
			j.tg[i] = int32(rng.IntN(cols))
		}
		var err error
		j.loss, j.grad, err = run(0, j)
		require.NoError(t, err)
		jobs[w] = j
	}
	before := runtime.NumGoroutine()
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w, j := range jobs {
		wg.Go(func() {
			for range 3 {
				loss, grad, err := run(w, j)
				if err != nil {
					errs[w] = err
					return
				}
				for i := range loss {
					if math.Float32bits(loss[i]) != math.Float32bits(j.loss[i]) {
						errs[w] = errorf("worker %d: loss of row %d differs from the serial run", w, i)
						return
					}
				}
				for i := range grad {
					if math.Float32bits(grad[i]) != math.Float32bits(j.grad[i]) {
						errs[w] = errorf("worker %d: gradient %d differs from the serial run", w, i)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	for _, e := range errs {
		require.NoError(t, e)
	}
	// No goroutine outlives its call (allow the runtime a moment to reap).
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	require.LessOrEqual(t, runtime.NumGoroutine(), before, "goroutines left running")
}

// RunNoGrowth makes 1000 small calls on dev and checks that the live heap
// does not grow with them.
func RunNoGrowth(t *testing.T, dev device.Device) {
	ctx := context.Background()
	l, err := batch.New(dev)
	require.NoError(t, err)
	x := make([]float32, 8*129)
	for i := range x {
		x[i] = float32(i%13) - 6
	}
	tg := []int32{0, 1, 2, 3, 4, 5, 6, 7}
	m := batch.NewMatrix(x, 8, 129)
	call := func() {
		g := make([]float32, len(x))
		_, err := l.ForwardBackward(ctx, batch.NewGrad(g, 8, 129), m, tg, batch.One)
		require.NoError(t, err)
	}
	for range 100 { // warm caches, pools, programs
		call()
	}
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	h0 := heap()
	for range 1000 {
		call()
	}
	h1 := heap()
	t.Logf("live heap before 1000 calls %d B, after %d B", h0, h1)
	require.Less(t, int64(h1)-int64(h0), int64(256<<10), "the live heap grew by more than 256 KiB over 1000 calls")
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }
