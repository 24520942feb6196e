package ce

// DefaultBudget is the bytes of logits a fused linear call holds at once
// when Linear.Budget is 0: 16 MiB (83 rows of GPT-2's 50257 classes), or
// 64 rows of the vocabulary when that is more (32 MiB for Llama 3's
// 128256), so that by default the gradients come in the forward pass. A
// device may hold more by default: the CPU with OpenBLAS holds min(N,
// 256) whole rows within 256 MiB (device.CPUDevice.LinearPlan), where its
// products are fast.
const DefaultBudget = 16 << 20

// FilterBlock is the number of classes of a block that gradient filtering
// skips or keeps whole.
const FilterBlock = 256

// Linear is the input of a fused linear cross-entropy: the logits are z =
// H·Wᵀ + Bias, never held whole. H is N × D (one row per token), W is V ×
// D (nn.Linear's layout: one row per class, the classes [p.Col0,
// p.Col0+V) of the vocabulary), Bias has V values or is nil. Budget is
// the bytes of logits the device may hold at a time (0: the device's
// default, DefaultBudget or more):
// it computes them in tiles of rows × classes within it, a chunk of rows
// over all V classes when that fits at least min(N, 64) rows (the
// gradients then come in the same pass), else tiles of the classes too,
// recomputed for the gradient.
//
// Filter > 0 turns on gradient filtering (Cut Cross-Entropy's): in the
// backward, a block of FilterBlock classes × a chunk's rows whose every
// unscaled gradient |dL/dz_ij|/|s_i| is below Filter adds nothing to dH,
// dW and dBias (its products are skipped). The loss is unchanged; each
// gradient entry moves by at most Filter·|s_i| times the sum of the
// skipped classes' |w| (dH) or the rows' |h| (dW).
type Linear struct {
	H, W   Matrix
	Bias   []float32
	Budget int
	Filter float32
}

// Classes returns lin with W's rows [lo, hi) only (and the bias's): the
// classes of a shard of the vocabulary.
func (lin *Linear) Classes(lo, hi int) *Linear {
	s := *lin
	s.W = lin.W.RowRange(lo, hi)
	if lin.Bias != nil {
		s.Bias = lin.Bias[lo:hi]
	}
	return &s
}

// LinearGrad says where the gradients of a fused linear cross-entropy go:
// dH (N × D) is written, or added to with AddH (the shards of a
// vocabulary add theirs); dW (V × D) and dBias (V) are added to, for
// gradient accumulation over micro-batches. A nil Data or Bias is not
// wanted. Scale is the per-row upstream factor, as in Grad; ignored rows
// contribute nothing (their dH row is 0).
type LinearGrad struct {
	H     Matrix
	AddH  bool
	W     Matrix
	Bias  []float32
	Scale []float32
	Fix   *Fix // what a loss beyond the cross-entropy adds (LinearBackward only; rows of H)
}

// ClearIgnored zeroes the rows of a host dH whose target is ignored
// (unless AddH: a shard adds its part).
func (g *LinearGrad) ClearIgnored(targets []int32) {
	if g == nil || g.H.Data == nil || g.AddH {
		return
	}
	for i := range g.H.Rows {
		if targets[i] < 0 {
			clear(g.H.Data[i*g.H.Stride : i*g.H.Stride+g.H.Cols])
		}
	}
}
