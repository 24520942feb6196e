// Package cpu holds the pure-Go kernels of xent: row-wise log-sum-exp,
// softmax cross-entropy per row and its gradient over row-major float32
// matrices.
//
// # Contract
//
// The kernels compute and do not check: the caller (package batch, through
// package device) has validated shapes, strides, targets and options. Every
// kernel works on rows independently and runs them in parallel on up to
// GOMAXPROCS goroutines; a row is always computed by one goroutine in one
// fixed order, so results are bit-identical whatever the number of
// goroutines.
//
// For row i with logits z (after the optional soft cap z ← c·tanh(z/c)),
// target t, class weights w (all 1 when absent, W = Σ_c w_c), label
// smoothing ε, z-loss λ and C classes:
//
//	lse    = log Σ_j exp(z_j)                 (max-subtracted, stable)
//	loss_i = (1-ε)·w_t·(lse - z_t) + (ε/C)·Σ_c w_c·(lse - z_c) + λ·lse²
//	dz_j   = s_i·[ (1-ε)·w_t·(p_j - δ_jt) + (ε/C)·(W·p_j - w_j) + 2λ·lse·p_j ]
//
// with p = softmax(z) and s_i the per-row gradient factor; with a soft cap
// dz_j is multiplied by 1 - (z_j/c)². Ignored rows (target -1) have loss 0
// and a zero gradient row.
//
// # Implementations
//
// The row driver is shared: a row is read a [Chunk] at a time (online
// log-sum-exp: each chunk's exps are summed relative to a reference near
// the max so far, and the running sum is rescaled when the reference
// grows), and the fused path stores each exp in place and scales it
// afterwards. Every option takes the same path: with a soft cap each chunk
// is capped into a buffer first (and the argmax is that of the capped
// logits, as on OpenCL), with smoothing Σ_j w_j·(z_j - r) is summed while
// the chunk is in L1 and the scale pass subtracts (ε/C)·w_j; only the soft
// cap's gradient takes a pass of its own (its factor 1 - (z/c)² needs the
// capped logits, which an in-place gradient has overwritten). A
// [Partial] is the same pass over a shard's columns, and [Impl.Backward]
// the gradient from merged partials. Implementations supply the
// primitives. [Portable] is
// plain Go: a float64 exp from a table of 2^(j/1024) and a linear term
// (within 4e-8, inlined into the loops), sums in float64, and the forward
// pass reads each chunk once, finding its max in the same loop. [SIMD] is
// the archsimd implementation (AVX2 + FMA: the chunk's max, then its exps
// from an 8-entry table read with VPERMPS and a minimax cubic, within 3
// ulp where they matter; see expChunk) when the build and the CPU have it
// (nil otherwise), and [Default] is the fastest one available. Forward and
// fused passes of one implementation give bit-identical losses. Tests pick
// an implementation explicitly; nothing global is switched.
package cpu
