// Package batch is the user API of xent: softmax cross-entropy over a
// [rows × cols] float32 logit matrix with integer targets, its reductions
// and its gradient, on any [device.Device].
//
// # Semantics
//
// They follow PyTorch's F.cross_entropy. For row i with target t:
//
//	loss_i = (1-ε)·w_t·(lse - z_t) + (ε/C)·Σ_c w_c·(lse - z_c) + λ·lse²
//	lse    = log Σ_j exp(z_j)
//
// with class weights w (all 1 by default), label smoothing ε, z-loss λ and,
// with a soft cap c, z ← c·tanh(z/c) first. Rows whose target equals the
// ignore index (-100 by default) are not counted: their loss and gradient
// are 0. The mean divides the sum over counted rows by the denominator:
// the number of counted rows, or Σ w_t over them with class weights.
//
// Edge cases, as PyTorch: mean with nothing counted is NaN, sum is 0;
// +Inf anywhere in a row, or a row of only -Inf, gives a NaN loss; a -Inf
// non-target logit is fine (its gradient is 0); a -Inf target logit gives
// +Inf; NaN stays in its row; one class gives loss 0 and gradient 0.
//
// # Errors
//
// Bad input returns an error wrapping one of [ErrTarget], [ErrShape],
// [ErrOption] or [ErrBuffer] (use errors.Is), and nothing is written; a
// target out of range is a [*TargetError] with its row (errors.As). The
// package never panics on user data.
//
// # Calls
//
// Destinations come first: [Loss.ForwardBackward](ctx, grad, x, targets,
// up) writes dL/dz into grad (which may be x, for an in-place gradient) and
// [Loss.LogSumExp](ctx, dst, x) the log-sum-exp of each row. up is dL/dloss:
// [One], [Scalar] or [PerRow]. Logits on a device ([Upload]) are a
// [DeviceMatrix] whose Matrix goes where host rows go; its gradient
// replaces it on the device.
//
// # Merging
//
// Every [Result] carries [Stats]: the sum and the denominator, not just the
// mean, so results of micro-batches, shards or machines merge exactly with
// [Stats.Merge] (a mean of means is wrong when the parts differ in counted
// rows or weight).
//
// # Shards of the vocabulary
//
// A classifier split across devices or machines gives each holder the
// columns of its classes: with [Shard], [Loss.Partials] gives each row's
// [Partial] over them (its max, Σ exp less the max's own term, target logit, argmax and smoothing
// sums), partials merge exactly (their Merge method, or one's own all-reduce),
// [Loss.Finish] gives the loss from the merged partials and
// [Loss.Backward] each holder's gradient of its columns.
//
// # Fused linear
//
// [Linear] computes the same loss of the logits z = H·Wᵀ + b from hidden
// states H (N × D), a classifier W (V × D, nn.Linear's weight) and an
// optional bias, without holding the N × V logits: a tile of rows ×
// classes at a time, within [Budget]. [Linear.ForwardBackward](ctx, g, h,
// w, bias, targets, up) writes dL/dH into g.H and adds dL/dW and dL/db to
// g.W and g.Bias. With [Shard], W holds some classes of the vocabulary:
// [Linear.Partials], merged, give the loss ([Linear.Finish]), and
// [Linear.Backward] each holder's gradients (its part of dH added to
// g.H). The device runs it where it can ([device.Caps].Linear: the CPU,
// with OpenBLAS or gonum's Sgemm; OpenCL, with CLBlast); otherwise the
// CPU does ([device.LinearOf]).
package batch
