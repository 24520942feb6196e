//go:build goexperiment.simd && amd64

package cpu

import (
	"os"
	"strings"

	"golang.org/x/sys/cpu"
)

// ExperimentWarning says what building with GOEXPERIMENT=simd costs on
// this CPU, or "" when it costs nothing known. On CPUs with AVX-512, Go's
// runtime built with the experiment (1.26.8 and 1.27.3) saves and restores
// Z0–Z31 around every asynchronous preemption and never clears their upper
// halves, so every legacy SSE instruction after the first preemption —
// all of Go's scalar float code: the portable kernels, the float64
// reductions, the user's own code — pays the dirty-upper-state penalty: a
// plain math.Exp loop ran 0.69 s without the experiment and 58 s with it
// on a Sapphire Rapids VM (bench/simdslow reproduces it). xent does not
// use the experiment (its vector kernels are assembly, which clears the
// upper state after itself), but the program it is linked into pays.
// GODEBUG=asyncpreemptoff=1 avoids it, at the cost of preemption.
func ExperimentWarning() string {
	if !cpu.X86.HasAVX512F {
		return ""
	}
	w := "this CPU has AVX-512 and this binary was built with GOEXPERIMENT=simd: " + experimentCost + "; build without the experiment"
	if strings.Contains(os.Getenv("GODEBUG"), "asyncpreemptoff=1") {
		return w + " (GODEBUG=asyncpreemptoff=1 is set, which avoids it)"
	}
	return w + ", or set GODEBUG=asyncpreemptoff=1"
}

// experimentCost is what GOEXPERIMENT=simd costs on AVX-512 CPUs (see
// ExperimentWarning).
const experimentCost = "with AVX-512, Go's runtime built with GOEXPERIMENT=simd makes ordinary float code up to ~80× slower " +
	"once a goroutine has been preempted (Go 1.26.8, 1.27.3; bench/simdslow reproduces it)"
