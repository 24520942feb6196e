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
// capped logits, which an in-place gradient has overwritten), as does the
// gradient from merged partials ([Impl.Backward]). A
// [Partial] is the same pass over a shard's columns, and [Impl.Backward]
// the gradient from merged partials. Implementations supply the
// primitives. [Portable] is
// plain Go: a float64 exp from a table of 2^(j/1024) and a linear term
// (within 4e-8, inlined into the loops), sums in float64, and the forward
// pass reads each chunk once, finding its max in the same loop. The vector
// implementations, avx2 (AVX2 + FMA, 8 lanes) and avx512 (AVX-512 F, BW,
// VL, 16 lanes), are Go assembly generated with avo by internal/asmgen
// (go generate writes row_amd64.s; each kernel is written once there for
// both): the exp from an 8-entry table read with VPERMPS and a minimax
// cubic, within 3 ulp where it matters (see vector.go), tails through the
// same arithmetic with masked loads and stores, the next chunk prefetched
// with PREFETCHT0, the forward pass in one read of each chunk. They are
// chosen at run time from what the CPU has (golang.org/x/sys/cpu). On
// arm64, neon (Advanced SIMD, 4 lanes, every arm64 CPU) runs the max, the
// exps and the scale pass in assembly written by the same generator (an
// exp from Cephes' expf polynomial, within 1.3 ulp on [-16, 0]; tails
// padded), the other primitives the portable ones; it is tested under
// QEMU and its speed is unmeasured. [SIMD]
// is the fastest one this CPU runs (nil when none: SIMDUnavailable says
// why), [Impls] lists them all, and [Default] is the fastest available.
// The purego build tag leaves the assembly out (Portable only). Forward
// and fused passes of one implementation give bit-identical losses.
// Tests pick an implementation explicitly; nothing global is switched.
package cpu
