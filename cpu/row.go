package cpu

import "github.com/xentlab/xent/ce"

// The contract of the row primitives, which every implementation gives:
// the fields of Impl, each with what it computes. The portable ones are
// in row_generic.go, the vector ones are the assembly of row_amd64.s and
// row_arm64.s (their stubs in row_stub_*.go) wrapped in vector.go, and
// one choice of the fastest is made at start-up (row_amd64.go,
// row_arm64.go; simd_none.go elsewhere). The row driver (kernel.go) runs
// over them through a plan resolved once per call.

// Impl is one implementation of the row primitives. The row driver and the
// formulas around the primitives are shared by all implementations.
type Impl struct {
	name string
	// chunk does one chunk of the row driver (see online). Given m, the
	// row's max so far (-Inf before the first finite logit), it returns a
	// reference r of its choosing with x_j - r ≤ 64 for every x_j (or -Inf
	// when x and m are all -Inf), s = Σ_j exp(x_j - r), and cm = max_j x_j
	// ignoring NaN (-Inf for an all -Inf x) with, when cm > m, ci = the
	// first j with x_j == cm (without dst an implementation may return -1
	// instead; online then searches the chunk once the row's max is known).
	// When dst is not nil it stores exp(x_j - r) in dst_j (dst may be x; 0
	// for -Inf). Each exp is within 3 ulp where it is above e^-16 of r (see
	// the implementations). A chunk holding NaN or +Inf gives s = NaN, and
	// dst is then not fully written. next is the chunk after x, which an
	// implementation may load as a prefetch.
	chunk func(dst, x []float32, m float32, next []float32) (r float32, s float64, cm float32, ci int)
	// max returns max_j x_j ignoring NaN (-Inf for an empty x), and
	// whether x holds a NaN.
	max func(x []float32) (m float32, nan bool)
	// scale sets dst_j *= c.
	scale func(dst []float32, c float32)
	// index returns the first j with x_j == v, or -1.
	index func(x []float32, v float32) int
	// countAbove returns how many x_j > v (a NaN on either side is not
	// above).
	countAbove func(x []float32, v float32) int
	// dot returns Σ_j w_j·(x_j - r) in float64 (w nil: all 1); -Inf
	// terms and NaN propagate as in the scalar sum.
	dot func(x, w []float32, r float32) float64
	// axpy sets dst_j = a·dst_j - b·w_j (w nil: all 1).
	axpy func(dst []float32, a, b float32, w []float32)
	// capTo sets dst_j = c·tanh(x_j·inv), the soft cap (len(dst) ≥
	// len(x)); ±Inf become ±c, NaN stays NaN.
	capTo func(dst, x []float32, c, inv float32)
	// chunkDot is chunk, for a finite m, that also returns Σ_j w_j·(x_j -
	// m) (dot; w nil: all 1) of the chunk as given (before dst is written).
	chunkDot func(dst, x []float32, m float32, next, w []float32) (r float32, s float64, cm float32, ci int, dot float64)
	// grad is the gradient pass with options: dst_j = (a·exp(z_j -
	// shift) - b·w_j)·(1 - t_j²) with t_j = tanh(x_j·inv), z_j = c·t_j
	// and the factor only when c > 0, w_j = 1 when w is nil; dst may be x
	// (see gradGeneral).
	grad func(dst, x []float32, shift, a, b float32, w []float32, c, inv float32)
	// half are the conversions of half-precision elements (see widen).
	half halfKernels
	// chunk16 is chunk without dst (and without options) on a
	// half-precision chunk x of type t, buf room for len(x) widened
	// elements and widen the conversion; nil: online widens the chunk and
	// takes chunk.
	chunk16 func(x []uint16, t ce.DType, m float32, next, buf []float32, widen func([]float32, []uint16, ce.DType)) (r float32, s float64, cm float32, ci int)
}

// Name names the implementation ("portable", "avx2", ...).
func (k *Impl) Name() string { return k.name }

// portable is the pure-Go implementation, available everywhere.
var portable = &Impl{name: "portable", chunk: chunkGeneric, max: maxGeneric, scale: scaleGeneric, index: indexGeneric, countAbove: countAboveGeneric,
	dot: dotGeneric, axpy: axpyGeneric, capTo: capGeneric, chunkDot: chunkDotGeneric, grad: gradGeneral, half: portableHalf}

// simd is the fastest vector implementation this CPU runs, nil when none;
// best is simd, else portable. Both are chosen once, at start-up (the
// init function of row_amd64.go or row_arm64.go); tests pick an
// implementation with Impls or Lookup, and nothing switches them.
var simd *Impl

// Portable returns the pure-Go implementation, available everywhere.
func Portable() *Impl { return portable }

// SIMD returns the fastest vector implementation this CPU runs (avx512,
// else avx2; neon on arm64), or nil when this build or this CPU has none
// (SIMDUnavailable says why).
func SIMD() *Impl { return simd }

// Default returns the fastest implementation available: SIMD when there is
// one, else Portable.
func Default() *Impl { return best }

// vectors are the vector implementations this CPU runs, slowest first.
var vectors []*Impl

var best = portable

// Impls returns every implementation this build and this CPU run:
// Portable, then the vector ones (avx2, avx512), which tests compare.
func Impls() []*Impl { return append([]*Impl{portable}, vectors...) }

// Lookup returns the implementation named name ("portable", "avx2",
// "avx512"; "simd" is SIMD), or nil when this build or this CPU lacks it.
func Lookup(name string) *Impl {
	if name == "simd" {
		return simd
	}
	for _, k := range Impls() {
		if k.name == name {
			return k
		}
	}
	return nil
}
