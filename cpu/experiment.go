package cpu

// experimentCost is what GOEXPERIMENT=simd costs on AVX-512 CPUs (see
// ExperimentWarning).
const experimentCost = "with AVX-512, Go's runtime built with GOEXPERIMENT=simd makes ordinary float code up to ~80× slower " +
	"once a goroutine has been preempted (Go 1.26.8, 1.27.3; bench/simdslow reproduces it)"
