package cpu

import (
	"math"
	"runtime"
	"sync"
)

// Block is the number of elements the SIMD implementation sums in float32
// lanes before the lane sums are folded into float64 lanes.
const Block = 256

// Chunk is the number of elements of a row that the row driver handles at a
// time, while the chunk is in L1 (8 KB), so that a row is read from memory
// once. Rows of more than MaxChunks·Chunk elements use longer chunks (a
// multiple of 16, so that there are MaxChunks of them). Tests name these
// boundaries by the constants.
const (
	Chunk     = 2048
	MaxChunks = 128
)

// minParallelWork is the number of elements below which a call runs on
// the calling goroutine alone.
const minParallelWork = 1 << 16

// Problem is a validated cross-entropy problem: Rows rows of Cols logits,
// row i at X[i*Stride:], with Targets[i] in [0, Cols) or -1 for an ignored
// row.
type Problem struct {
	X                  []float32
	Rows, Cols, Stride int
	Targets            []int32

	Smoothing float32   // ε in [0, 1]
	ZLoss     float32   // λ ≥ 0
	Softcap   float32   // c > 0, or 0 for none
	Weights   []float32 // per-class weights w (len Cols), or nil for all 1
	WeightSum float64   // W = Σ_c w_c (Cols when Weights is nil)
}

// Out says what a kernel writes; a nil slice is not written.
type Out struct {
	Loss    []float32 // per-row loss (0 for ignored rows)
	LSE     []float32 // per-row log-sum-exp of the (capped) logits
	Correct []bool    // per-row argmax == target (false for ignored rows)

	// Grad receives dL/dz, row i at Grad[i*GradStride:]; it may be X itself
	// (in place, GradStride == Stride). Scale[i] is the factor s_i of row i.
	Grad       []float32
	GradStride int
	Scale      []float32
}

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
}

// Name names the implementation ("portable", "avx2", ...).
func (k *Impl) Name() string { return k.name }

// Portable is the pure-Go implementation, available everywhere.
var Portable = &Impl{name: "portable", chunk: chunkGeneric, max: maxGeneric, scale: scaleGeneric, index: indexGeneric}

// SIMD is the archsimd implementation, or nil when this build or this CPU
// has none.
var SIMD *Impl

// Default is the fastest implementation available: SIMD when set, else
// Portable.
var Default = Portable

// LogSumExp sets dst[i] = log Σ_j exp(x[i*stride+j]) for i < rows. A row
// holding +Inf or NaN, or only -Inf, gives NaN.
func (k *Impl) LogSumExp(dst, x []float32, rows, cols, stride int) {
	parallel(rows, cols, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			m, _, s := k.online(nil, x[i*stride:i*stride+cols], nil, after(x, i, hi, cols, stride))
			dst[i] = float32(float64(m) + math.Log(s))
		}
	})
}

// online returns m = max_j x_j, its first index and s = Σ_j exp(x_j - m)
// in one pass over x, a chunk at a time (see Impl.chunk; the last chunk's
// next is after, the start of the next row): each chunk's sum comes
// relative to its own reference r_c, the running sum is kept relative to
// the largest reference so far (and multiplied by exp(R_old - R) when it
// grows), and at the end it is made relative to m. With dst,
// dst_j receives exp(x_j - r_c), x_j in chunk c, and ms[c] = r_c for the
// caller's scale pass (see chunkLen). A row holding NaN or +Inf, or only
// -Inf, gives s = NaN (PyTorch's NaN); dst is then not fully written and
// the caller fills it.
func (k *Impl) online(dst, x []float32, ms *[MaxChunks]float32, after []float32) (m float32, idx int, s float64) {
	ninf := float32(math.Inf(-1))
	m, idx = ninf, -1
	ref := ninf      // s is relative to ref
	mlo, mhi := 0, 0 // the chunk that first reached m
	cl := chunkLen(len(x))
	for c, lo := 0, 0; lo < len(x); c, lo = c+1, lo+cl {
		hi := min(lo+cl, len(x))
		var d []float32
		if dst != nil {
			d = dst[lo:hi]
		}
		next := x[hi:min(hi+cl, len(x))]
		if hi == len(x) {
			next = after
		}
		r, sc, cm, ci := k.chunk(d, x[lo:hi], m, next)
		if math.IsNaN(sc) {
			return m, -1, math.NaN()
		}
		if cm > m { // the first max is in the first chunk to reach it
			m, idx, mlo, mhi = cm, -1, lo, hi
			if ci >= 0 {
				idx = lo + ci
			}
		}
		if dst != nil {
			ms[c] = r
		}
		switch {
		case r == ninf: // only -Inf so far: nothing to add
		case r > ref:
			s = s*math.Exp(float64(ref)-float64(r)) + sc // s is 0 while ref is -Inf
			ref = r
		case r == ref:
			s += sc
		default:
			s += sc * math.Exp(float64(r)-float64(ref))
		}
	}
	if math.IsInf(float64(m), -1) {
		return m, -1, math.NaN()
	}
	if ref != m {
		s *= math.Exp(float64(ref) - float64(m))
	}
	if idx < 0 { // one search per row, in the chunk that holds the max
		idx = mlo + k.index(x[mlo:mhi], m)
	}
	return m, idx, s
}

// after returns the first chunk of row i+1 of x when it is below hi (the
// rows of the calling goroutine), else nil: the row driver's prefetch
// across rows.
func after(x []float32, i, hi, cols, stride int) []float32 {
	if i+1 >= hi {
		return nil
	}
	lo := (i + 1) * stride
	return x[lo : lo+min(cols, chunkLen(cols))]
}

// chunkLen returns the chunk length online uses on rows of n elements:
// Chunk, or a multiple of 16 large enough for MaxChunks chunks.
func chunkLen(n int) int {
	return max(Chunk, (n+16*MaxChunks-1)/(16*MaxChunks)*16)
}

// CrossEntropy computes the per-row loss, log-sum-exp and argmax test of p
// (see the package comment), and the gradient when o.Grad is set.
func (k *Impl) CrossEntropy(p *Problem, o *Out) {
	parallel(p.Rows, p.Cols, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			k.row(p, o, i, after(p.X, i, hi, p.Cols, p.Stride))
		}
	})
}

func (k *Impl) row(p *Problem, o *Out, i int, next []float32) {
	x := p.X[i*p.Stride : i*p.Stride+p.Cols]
	var g []float32
	if o.Grad != nil {
		g = o.Grad[i*o.GradStride : i*o.GradStride+p.Cols]
	}
	t := int(p.Targets[i])
	if t < 0 {
		setRow(o, i, 0, 0, false)
		clear(g)
		return
	}
	c, inv := p.Softcap, float32(0)
	if c > 0 {
		inv = 1 / c
	}
	zt := x[t] // read before g (which may be x) is written
	// Everything is computed relative to the max: with ls = log Σ exp(z_j - m),
	// lse = m + ls and lse - z_t = (m - z_t) + ls, which stays exact when |m|
	// dwarfs ls (a row of -1e30 has loss log C, not 0), as PyTorch's
	// log_softmax does.
	// Without options the row takes one pass (online), and the fused path
	// stores exp(z_j - M_c) in g while summing and scales it afterwards:
	// one exp per logit.
	general := c > 0 || p.Smoothing > 0
	var (
		m, mc  float32 // the max of the raw and of the capped row
		idx    int     // the first index of m in the raw row
		s, dot float64 // Σ exp(z_j - m), Σ w_j·(z_j - m)
		ms     [MaxChunks]float32
	)
	if general {
		var nan bool
		m, nan = k.max(x)
		mc, idx = m, k.index(x, m)
		if c > 0 {
			// tanh is monotonic: the max of the capped row. Capped, ±Inf are
			// ±c, valid logits; a NaN still makes the row NaN.
			mc = c * tanh32(m*inv)
		}
		if nan || c == 0 && math.IsInf(float64(m), 0) {
			s = math.NaN()
		} else {
			s, dot = sumExpGeneral(x, mc, c, inv, p.Weights, p.Smoothing > 0)
		}
	} else {
		m, idx, s = k.online(g, x, &ms, next)
		mc = m
	}
	if c > 0 {
		zt = c * tanh32(zt*inv)
	}
	ls := math.Log(s)
	lse := float64(mc) + ls

	eps, lam := float64(p.Smoothing), float64(p.ZLoss)
	wt := 1.0
	if p.Weights != nil {
		wt = float64(p.Weights[t])
	}
	ec := eps / float64(p.Cols)
	loss := (1 - eps) * wt * ((float64(mc) - float64(zt)) + ls)
	if eps > 0 { // Σ_c w_c·(lse - z_c) = W·ls - Σ_c w_c·(z_c - m)
		loss += ec * (p.WeightSum*ls - dot)
	}
	if lam > 0 {
		loss += lam * lse * lse
	}
	setRow(o, i, loss, lse, idx == t && !math.IsNaN(loss))
	if g == nil {
		return
	}

	// dz_j = s_i·(a·p_j - ec·w_j) with a = (1-ε)w_t + ec·W + 2λ·lse and
	// p_j = exp(z_j - m)/s, and the target column -s_i·(1-ε)w_t computed
	// apart, from p_t - 1 = expm1((z_t - m) - ls) so that nothing cancels as
	// p_t → 1. z_t was read before the row was overwritten (g may be x).
	si := float64(o.Scale[i])
	a := (1-eps)*wt + ec*p.WeightSum + 2*lam*lse
	// p_t itself comes from exp, not from pt1 + 1, which loses it when it
	// is small (a target of weight 0 with smoothing has only that term).
	dt := (float64(zt) - float64(mc)) - ls
	pt1 := math.Expm1(dt)
	gt := si * ((1-eps)*wt*pt1 + (ec*p.WeightSum+2*lam*lse)*math.Exp(dt) - ec*wt)
	if c > 0 {
		r := float64(zt) / float64(c)
		gt *= 1 - r*r
	}
	switch {
	case math.IsNaN(s): // online stopped early, or no sum ran
		for j := range g {
			g[j] = float32(math.NaN())
		}
	case general:
		gradGeneral(g, x, mc, float32(si*a/s), float32(si*ec), p.Weights, c, inv)
	default: // chunk c holds exp(z_j - M_c): scaled by exp(M_c - m)·si·a/s
		f := si * a / s
		cl := chunkLen(len(g))
		for c, lo := 0, 0; lo < len(g); c, lo = c+1, lo+cl {
			k.scale(g[lo:min(lo+cl, len(g))], float32(f*math.Exp(float64(ms[c])-float64(m))))
		}
	}
	g[t] = float32(gt)
}

func setRow(o *Out, i int, loss, lse float64, correct bool) {
	if o.Loss != nil {
		o.Loss[i] = float32(loss)
	}
	if o.LSE != nil {
		o.LSE[i] = float32(lse)
	}
	if o.Correct != nil {
		o.Correct[i] = correct
	}
}

// parallel runs f over [0, rows) split into contiguous ranges, one per
// goroutine, on up to GOMAXPROCS goroutines.
func parallel(rows, cols int, f func(lo, hi int)) {
	workers := min(runtime.GOMAXPROCS(0), rows, max(1, rows*cols/minParallelWork))
	if workers <= 1 {
		f(0, rows)
		return
	}
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := rows*w/workers, rows*(w+1)/workers
		wg.Go(func() { f(lo, hi) })
	}
	wg.Wait()
}
