//go:build purego || !(amd64 || arm64)

package cpu

import "runtime"

// SIMDUnavailable says why SIMD is nil.
func SIMDUnavailable() string {
	if runtime.GOARCH == "amd64" || runtime.GOARCH == "arm64" {
		return "this binary was built with the purego tag, which keeps to the portable kernels"
	}
	return "xent has no vector kernels for " + runtime.GOARCH + " yet"
}
