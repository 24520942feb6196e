//go:build !(goexperiment.simd && amd64) || nosimd

package cpu

// SIMDUnavailable says why SIMD is nil.
func SIMDUnavailable() string {
	return "this binary was built without the SIMD kernels (build with GOEXPERIMENT=simd on amd64, without the nosimd tag)"
}
