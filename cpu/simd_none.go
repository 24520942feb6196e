//go:build !(goexperiment.simd && amd64) || nosimd

package cpu

import "golang.org/x/sys/cpu"

// SIMDUnavailable says why SIMD is nil.
func SIMDUnavailable() string {
	why := "this binary was built without the SIMD kernels (they need GOEXPERIMENT=simd on amd64, without the nosimd tag)"
	if cpu.X86.HasAVX512F {
		why += "; do not build with the experiment on this CPU: " + experimentCost
	}
	return why
}
