//go:build purego || !(amd64 || arm64)

package probe

// sumOf: no vector loop in this build.
func sumOf(string) (func([]float32) float32, int) { return nil, 0 }

// fmaOf: no vector loop in this build.
func fmaOf(string) (func(int) float32, int) { return nil, 0 }
