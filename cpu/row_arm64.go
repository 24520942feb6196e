//go:build !purego

package cpu

import "math"

// simdWhy says why SIMD is nil on this CPU ("" when it is set).
var simdWhy string

// The NEON kernels (every arm64 CPU has Advanced SIMD) take lengths that
// are multiples of 16; a tail goes through them padded with -Inf (neutral
// for the max, an exp of 0), so that every element takes the same
// arithmetic. The kernels without a NEON loop yet take the portable ones.
func init() {
	neon := vector(vectorKernels{name: "neon", maxNaN: maxNaN16, expSum: expSum16, expSumMax: expSumMax16,
		scale: scale16, index: indexGeneric, countAbove: countAboveGeneric, dot: dotGeneric, axpy: func(dst, w []float32, a, b float32) { axpyGeneric(dst, a, b, w) },
		capTo: capGeneric, lanes: 4,
		grad: func(dst, x, w []float32, shift, a, b, c, inv float32, _ bool) {
			gradGeneral(dst, x, shift, a, b, w, c, inv)
		}})
	vectors = append(vectors, neon)
	simd, best = neon, neon
}

// SIMDUnavailable says why SIMD is nil.
func SIMDUnavailable() string { return simdWhy }

// pad16 copies x's last len(x) mod 16 elements into buf, the rest -Inf,
// and returns the number of leading elements the kernels take directly.
func pad16(buf *[16]float32, x []float32) int {
	n := len(x) &^ 15
	if n < len(x) {
		copy(buf[:], x[n:])
		for i := len(x) - n; i < 16; i++ {
			buf[i] = float32(math.Inf(-1))
		}
	}
	return n
}

func maxNaN16(x []float32) (float32, bool) {
	var t [16]float32
	n := pad16(&t, x)
	m, nan := maxNaNNEON(x[:n])
	if n < len(x) {
		mt, nt := maxNaNNEON(t[:])
		m, nan = max32(m, mt), nan || nt
	}
	return m, nan
}

func expSum16(dst, x []float32, m float32, pre []float32) float64 {
	var t, e [16]float32
	n := pad16(&t, x)
	var d, de []float32
	if len(dst) > 0 {
		d, de = dst[:n], e[:]
	}
	s := expSumNEON(d, x[:n], m, pre)
	if n < len(x) {
		s += expSumNEON(de, t[:], m, nil)
		if d != nil {
			copy(dst[n:len(x)], de)
		}
	}
	return s
}

func expSumMax16(x []float32, m float32, pre []float32) (float64, float32) {
	var t [16]float32
	n := pad16(&t, x)
	s, cm := expSumMaxNEON(x[:n], m, pre)
	if n < len(x) {
		st, ct := expSumMaxNEON(t[:], m, nil)
		s, cm = s+st, max32(cm, ct)
	}
	return s, cm
}

func scale16(dst []float32, c float32) {
	n := len(dst) &^ 15
	scaleNEON(dst[:n], c)
	scaleGeneric(dst[n:], c)
}
