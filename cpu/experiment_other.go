//go:build !(goexperiment.simd && amd64)

package cpu

// ExperimentWarning says what building with GOEXPERIMENT=simd costs on
// this CPU: nothing, in a build without it.
func ExperimentWarning() string { return "" }
