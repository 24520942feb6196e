//go:build !purego

package probe

// sumOf returns isa's read loop (lengths a multiple of 16) and its
// granule.
func sumOf(isa string) (func([]float32) float32, int) {
	if isa == "neon" {
		return sumNEON, 16
	}
	return nil, 0
}

// fmaOf returns isa's FMA loop: none on arm64 yet.
func fmaOf(string) (func(int) float32, int) { return nil, 0 }
