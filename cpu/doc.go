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
// The row driver is shared: without options a row is read once, a [Chunk]
// at a time (the chunk's max, then its exps while it is in L1, the running
// sum rescaled when the max grows; online log-sum-exp), and the fused path
// stores each exp in place and scales it afterwards. Implementations supply
// the primitives. [Portable] is plain Go: a float32 exp from a table of
// 2^(j/64) and a cubic (Cody–Waite range reduction, within 3 ulp, inlined
// into the loops), four independent accumulators, partial sums folded into
// float64 every [Block] elements. [SIMD] is the archsimd implementation
// (AVX2 + FMA: an 8-entry table read with VPERMPS and a minimax cubic,
// within 2 ulp) when the build and the CPU have it (nil otherwise), and
// [Default] is the fastest one available. Tests pick an implementation
// explicitly; nothing global is switched.
package cpu
