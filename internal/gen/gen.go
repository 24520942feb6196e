// Package gen makes the inputs of tests, benchmarks and the demo: random
// logits and targets from a seed, the same on every machine whatever its
// number of cores, and the textbook example of `xent demo`. It imports no
// test code, so that the xent binary may use it.
package gen

import (
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
)

// parts is the number of independent streams Logits draws from: fixed, so
// that a seed gives the same logits on any machine.
const parts = 64

// Logits returns rows × cols N(0, 3²) logits drawn from seed, in parts
// streams filled on up to GOMAXPROCS goroutines.
func Logits(rows, cols int, seed uint64) []float32 {
	x := make([]float32, rows*cols)
	next := make(chan int, parts)
	for p := range parts {
		next <- p
	}
	close(next)
	var wg sync.WaitGroup
	for range min(parts, runtime.GOMAXPROCS(0)) {
		wg.Go(func() {
			for p := range next {
				rng := rand.New(rand.NewPCG(seed, uint64(p)))
				for i := len(x) * p / parts; i < len(x)*(p+1)/parts; i++ {
					x[i] = float32(rng.NormFloat64() * 3)
				}
			}
		})
	}
	wg.Wait()
	return x
}

// Targets returns rows uniform targets in [0, cols) drawn from seed.
func Targets(rows, cols int, seed uint64) []int32 {
	rng := rand.New(rand.NewPCG(seed, 0))
	t := make([]int32, rows)
	for i := range t {
		t[i] = int32(rng.IntN(cols))
	}
	return t
}

// Textbook is the worked example of the LM-loss chapter and of `xent
// demo`: 4 positions, vocabulary 5; the logits are log-probabilities, so
// P(true) is .2 .6 .4 .8.
var Textbook = struct {
	Probs   [][]float64
	Targets []int32
	Loss    []float64 // -ln P(true)
}{
	Probs: [][]float64{
		{.05, .10, .60, .20, .05},
		{.10, .05, .15, .10, .60},
		{.40, .20, .15, .15, .10},
		{.05, .05, .80, .05, .05},
	},
	Targets: []int32{3, 4, 0, 2},
	Loss:    []float64{-math.Log(.2), -math.Log(.6), -math.Log(.4), -math.Log(.8)},
}

// TextbookLogits returns the log-probabilities of the textbook example,
// row-major 4 × 5.
func TextbookLogits() []float32 {
	var x []float32
	for _, r := range Textbook.Probs {
		for _, p := range r {
			x = append(x, float32(math.Log(p)))
		}
	}
	return x
}

// Linear returns the inputs of a fused linear cross-entropy drawn from r:
// hidden states H (n × d, entries N(0, sdH²)), a classifier W (v × d,
// N(0, sdW²)) and n targets in [0, v), drawn in that order.
func Linear(r *rand.Rand, n, d, v int, sdH, sdW float64) (h, w []float32, targets []int32) {
	h, w = make([]float32, n*d), make([]float32, v*d)
	for k := range h {
		h[k] = float32(r.NormFloat64() * sdH)
	}
	for k := range w {
		w[k] = float32(r.NormFloat64() * sdW)
	}
	targets = make([]int32, n)
	for i := range targets {
		targets[i] = int32(r.IntN(v))
	}
	return h, w, targets
}
