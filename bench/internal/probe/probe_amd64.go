//go:build !purego

package probe

import "golang.org/x/sys/cpu"

var (
	hasAVX2   = cpu.X86.HasAVX2 && cpu.X86.HasFMA
	hasAVX512 = hasAVX2 && cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL && cpu.X86.HasBMI2
)

// sumOf returns isa's read loop (any length: its tails are masked) and
// its lanes.
func sumOf(isa string) (func([]float32) float32, int) {
	switch {
	case isa == "avx2" && hasAVX2:
		return sumAVX2, 1
	case isa == "avx512" && hasAVX512:
		return sumAVX512, 1
	}
	return nil, 0
}

// fmaOf returns isa's FMA loop and its lanes.
func fmaOf(isa string) (func(int) float32, int) {
	switch {
	case isa == "avx2" && hasAVX2:
		return fmaAVX2, 8
	case isa == "avx512" && hasAVX512:
		return fmaAVX512, 16
	}
	return nil, 0
}
