// Package ce is the vocabulary of xent's softmax cross-entropy, as data and
// scalar float64 math: the element types ([DType]), the matrix views
// ([Matrix], [Grad]), the one description of a problem ([Problem]: the
// options and the shard of the vocabulary a matrix holds), what a shard of
// the vocabulary knows of a row ([Partial]) and its exact merge, the loss
// from the merged partial ([Problem.Finish]), the per-row results ([Out])
// and the input of the fused linear ([Linear], [LinearGrad]). It computes
// no row: package cpu's kernels and the OpenCL kernels of package
// device/opencl do, and package batch checks what they are given. Every
// other package of xent imports this one; it imports none of them.
//
// # The formulas every device computes
//
// For row i with logits z (after the optional soft cap z ← c·tanh(z/c),
// then the optional temperature z ← z/τ: [Problem.Transform]),
// target t, class weights w (all 1 when absent, W = Σ_c w_c), label
// smoothing ε, z-loss λ and C classes:
//
//	lse    = log Σ_j exp(z_j)                 (max-subtracted, stable)
//	loss_i = (1-ε)·w_t·(lse - z_t) + (ε/C)·Σ_c w_c·(lse - z_c) + λ·lse²
//	dz_j   = s_i·[ (1-ε)·w_t·(p_j - δ_jt) + (ε/C)·(W·p_j - w_j) + 2λ·lse·p_j ]
//
// with p = softmax(z) and s_i the per-row gradient factor; with a soft cap
// dz_j is multiplied by 1 - tanh²(x_j/c) of the raw logit x_j, and with a
// temperature by 1/τ (the gradient is with respect to the raw logits, as
// Liger's and TransformerEngine's). Ignored rows (target -1) have loss
// 0 and a zero gradient row.
//
// The work on a row splits with the vocabulary: each shard of columns
// gives the row's [Partial], partials of disjoint shards merge
// ([Partial.Merge]) in any order into the partial of their union, the
// merged partial gives the loss ([Problem.Finish]), and the gradient of
// each shard's columns follows from it.
package ce
