//go:build !purego

package cpu

import "golang.org/x/sys/cpu"

// simdWhy says why SIMD is nil on this CPU ("" when it is set).
var simdWhy string

func init() {
	x := cpu.X86
	if !x.HasAVX2 || !x.HasFMA || !x.HasPOPCNT {
		simdWhy = "this CPU lacks AVX2, FMA and POPCNT"
		return
	}
	k2 := vectorKernels{name: "avx2", maxNaN: maxNaNAVX2, expSum: expSumAVX2, expSumMax: expSumMaxAVX2, scale: scaleAVX2, index: indexAVX2, countAbove: countAboveAVX2,
		dot: dotAVX2, axpy: axpyAVX2, capTo: capToAVX2, grad: gradAVX2,
		fromBF16: fromBF16AVX2, toBF16: toBF16AVX2, expSumMaxBF16: expSumMaxBF16AVX2, lanes: 8}
	if x.HasF16C { // every AVX2 CPU made has it, but it is a flag of its own
		k2.fromF16, k2.toF16, k2.expSumMaxF16 = fromF16AVX2, toF16AVX2, expSumMaxF16AVX2
	}
	avx2 := vector(k2)
	vectors = append(vectors, avx2)
	simd = avx2
	if x.HasAVX512F && x.HasAVX512BW && x.HasAVX512VL && x.HasBMI2 {
		avx512 := vector(vectorKernels{name: "avx512", maxNaN: maxNaNAVX512, expSum: expSumAVX512, expSumMax: expSumMaxAVX512, scale: scaleAVX512, index: indexAVX512, countAbove: countAboveAVX512,
			dot: dotAVX512, axpy: axpyAVX512, capTo: capToAVX512, grad: gradAVX512,
			fromBF16: fromBF16AVX512, fromF16: fromF16AVX512, toBF16: toBF16AVX512, toF16: toF16AVX512,
			expSumMaxBF16: expSumMaxBF16AVX512, expSumMaxF16: expSumMaxF16AVX512, lanes: 16})
		vectors = append(vectors, avx512)
		simd = avx512
	}
	best = simd
}

// SIMDUnavailable says why SIMD is nil.
func SIMDUnavailable() string { return simdWhy }
