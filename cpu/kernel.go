package cpu

import (
	"math"
	"runtime"
	"sync"
	"unsafe"

	"github.com/xentlab/xent/ce"
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

// rowOf returns row i of a host matrix.
func matRow(m ce.Matrix, i int) vec { return rowOf(m.Data, m.Half, m.Type, i*m.Stride, m.Cols) }

// gradRow returns row i of a gradient of cols columns.
func gradRow(g *ce.Grad, i, cols int) vec { return rowOf(g.Data, g.Half, g.Type, i*g.Stride, cols) }

// Scale sets dst_j *= c with k's loop: the benchmarks' in-place read +
// write probe, the traffic of an in-place gradient.
func (k *Impl) Scale(dst []float32, c float32) { k.scale(dst, c) }

// LogSumExp sets dst[i] = log Σ_j exp(x_ij) for every row of x (no
// options apply). A row holding +Inf or NaN, or only -Inf, gives NaN.
func (k *Impl) LogSumExp(dst []float32, x ce.Matrix) {
	parallel(x.Rows, x.Cols, func(lo, hi int) {
		pl := newPlan(k, &ce.Problem{}, x.Cols, x.Type, ce.F32, false)
		for i := lo; i < hi; i++ {
			part := pl.scan(nil, matRow(x, i), nil, after(x, i, hi), &ce.Problem{})
			dst[i] = float32(float64(part.Max) + part.LogSum())
		}
	})
}

// online returns m = max_j x_j, its first index and rest = Σ_j exp(x_j -
// m) - 1 (Partial.Rest) in one pass over x, a chunk at a time (see
// Impl.chunk; the last chunk's next is after, the start of the next row):
// each chunk's sum comes relative to its own reference r_c, the running
// sum s is kept relative to the largest reference so far (and multiplied
// by exp(R_old - R) when it grows), and at the end it is made relative to
// m. Where s < 2 (p_max > 1/2) its rest is not s - 1, which would cancel,
// but summed again without the max's term (see rest). With dst, dst_j
// receives exp(x_j - r_c), x_j in chunk c, and ms[c] = r_c for the
// caller's scale pass (see chunkLen). A row holding NaN or +Inf gives rest
// = NaN (PyTorch's NaN), one of only -Inf m = -Inf and rest = -1; dst is
// then not fully written and the caller fills it.
func (pl *plan) online(dst []float32, x vec, ms *[MaxChunks]float32, after []float32) (m float32, idx int, am float32, rest, dot float64) {
	k := pl.k
	ninf := float32(math.Inf(-1))
	m, idx = ninf, -1
	ref := ninf      // s is relative to ref
	mlo, mhi := 0, 0 // the chunk that first reached m
	capped := pl.tr
	am = ninf // with a transform (soft cap, temperature), the raw max, first reached in chunk [alo, ahi)
	alo, ahi := 0, 0
	var dc [MaxChunks]float64
	var rc [MaxChunks]float32
	var sums [MaxChunks]float64 // each chunk's sum, relative to refs[c]
	var refs [MaxChunks]float32
	var before [MaxChunks]float32 // the row's max before each chunk
	var s float64
	n := x.len()
	cl := chunkLen(n)
	for c, lo := 0, 0; lo < n; c, lo = c+1, lo+cl {
		hi := min(lo+cl, n)
		var d []float32
		if dst != nil {
			d = dst[lo:hi]
		}
		var next []float32 // the prefetch (of a half row, its words: see halfWords)
		if x.t == ce.F32 {
			next = x.f[hi:min(hi+cl, n)]
		} else {
			next = halfWords(x.h[hi:min(hi+cl, n)])
		}
		if hi == n {
			next = after
		}
		before[c] = m
		var (
			raw   []float32 // the chunk widened, before the soft cap
			r, cm float32
			sc    float64
			ci    int
		)
		switch pl.sum {
		case sumHalf: // a half-precision chunk read as it is
			r, sc, cm, ci = k.chunk16(x.h[lo:hi], x.t, m, next, pl.wide, k.widen)
		case sumPlain:
			var xc []float32
			raw, xc = pl.load(x, lo, hi)
			r, sc, cm, ci = k.chunk(d, xc, m, next)
		case sumSmooth:
			var xc []float32
			raw, xc = pl.load(x, lo, hi)
			if !math.IsInf(float64(m), -1) { // Σ w_j·(z_j - m) in the chunk's max pass
				rc[c] = m
				r, sc, cm, ci, dc[c] = k.chunkDot(d, xc, m, next, pl.wchunk(lo, hi))
				break
			}
			// relative to the chunk's own max, before d (which may be x) is written
			rc[c], _ = k.max(xc)
			if math.IsInf(float64(rc[c]), 0) { // only -Inf (each term is w_j·(-Inf) whatever r), or a NaN row
				rc[c] = 0
			}
			dc[c] = k.dot(xc, pl.wchunk(lo, hi), rc[c])
			r, sc, cm, ci = k.chunk(d, xc, m, next)
		}
		if math.IsNaN(sc) {
			return m, -1, am, math.NaN(), 0
		}
		sums[c], refs[c] = sc, r
		if cm > m { // the first max is in the first chunk to reach it
			m, idx, mlo, mhi = cm, -1, lo, hi
			if ci >= 0 {
				idx = lo + ci
			}
		}
		if capped { // the argmax is the raw logits' (see ce.Partial.ArgMax)
			if rm, _ := k.max(raw); rm > am {
				am, alo, ahi = rm, lo, hi
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
	if math.IsInf(float64(m), -1) { // only -Inf: each chunk's terms are w_j·(-Inf), -Inf or NaN
		for c := range (n + cl - 1) / cl {
			dot += dc[c]
		}
		return m, -1, am, -1, dot
	}
	if ref != m {
		s *= math.Exp(float64(ref) - float64(m))
	}
	rest = s - 1
	if s < 2 {
		rest = pl.rest(dst, x, m, idx, mlo, mhi, &sums, &refs, before[mlo/chunkLen(n)])
	}
	if pl.smooth { // Σ_c [Σ_j w_j·(z_j - r_c) + W_c·(r_c - m)]
		for c := range (n + cl - 1) / cl {
			dot += dc[c] + pl.wc[c]*(float64(rc[c])-float64(m)) // -Inf or NaN stays so
		}
	}
	switch {
	case capped:
		idx = -1
		if i := k.index(pl.widen(x, alo, ahi), am); i >= 0 {
			idx = alo + i
		}
	case idx < 0: // one search per row, in the chunk that holds the max
		idx = mlo + k.index(pl.widen(x, mlo, mhi), m)
	}
	if !capped {
		am = m
	}
	return m, idx, am, rest, dot
}

// rest returns Σ_j exp(z_j - m) - 1 of a row of finite max m, first
// reached in chunk [mlo, mhi) (whose call saw the max before, mb), given
// each chunk's sum relative to its reference (online's sums and refs):
// the other chunks' sums rescaled to m, and the max's chunk summed again
// without the max's own term, from its stored exps e_j = exp(z_j - r)
// (dst's, where online stored them; else made again into a scratch
// buffer by the same call, so that a forward and a fused pass give the
// same bits), in float64, times exp(r - m). The chunk kernel's float32
// lanes held 1 + terms where the max's lane was, and lost the terms' low
// bits; here the max's term, exactly exp(r - m)·e_j0 = 1, is left out.
func (pl *plan) rest(dst []float32, x vec, m float32, idx, mlo, mhi int, sums *[MaxChunks]float64, refs *[MaxChunks]float32, mb float32) float64 {
	k := pl.k
	cl := chunkLen(x.len())
	cm := mlo / cl
	other := 0.0
	for c := range (x.len() + cl - 1) / cl {
		if c != cm {
			other += sums[c] * ce.ExpTo(refs[c], m)
		}
	}
	var e []float32
	j0, r := idx-mlo, refs[cm]
	if dst != nil {
		e = dst[mlo:mhi]
	} else {
		_, z := pl.load(x, mlo, mhi)
		if j0 = k.index(z, m); j0 < 0 { // not found (it is there): the sum as it was
			return other + sums[cm]*ce.ExpTo(r, m) - 1
		}
		b := scratch.Get().(*[]float32)
		defer scratch.Put(b)
		if len(*b) < len(z) {
			*b = make([]float32, cl) // this row's chunks (z is one): past Chunk·MaxChunks columns, more than Chunk
		}
		e = (*b)[:len(z)]
		r, _, _, _ = k.chunk(e, z, mb, nil)
	}
	own := 0.0
	for j, v := range e {
		if j != j0 {
			own += float64(v)
		}
	}
	return other + own*ce.ExpTo(r, m)
}

// scratch holds chunk buffers for rest.
var scratch = sync.Pool{New: func() any { return new([]float32) }}

// plan is the row driver's choices for one call, made once from the
// options and the element types (newPlan), with the buffers of the
// goroutine that runs it: which chunk kernel sums a chunk (sum), how a
// chunk is loaded (load: widened from half precision into wide, then,
// when tr, transformed into buf: ce.Problem.Transform's c and inv, a soft
// cap when c > 0, else the temperature's scale inv), with smoothing the weights
// of the row's columns (nil: all 1) and their sum over each chunk, how the
// fused path scales the exps it stored (scale), and for a half-precision
// gradient out, a chunk's room before it is narrowed, and exps, the
// row's exps (made on first use).
type plan struct {
	k         *Impl
	sum       sumKind
	scale     scaleKind
	c, inv    float32
	tr        bool
	buf       []float32
	smooth    bool
	w         []float32
	wc        [MaxChunks]float64
	wide, out []float32
	exps      []float32
}

// sumKind is the chunk kernel of online.
type sumKind uint8

const (
	sumPlain  sumKind = iota // Impl.chunk on the loaded chunk
	sumHalf                  // Impl.chunk16 on the 16-bit elements as they are: no options, no stored exps
	sumSmooth                // Impl.chunkDot once the row's max is finite, else max, dot and chunk
)

// scaleKind is how the fused path turns chunk c's stored exps
// exp(z_j - M_c) into the gradient (see plan.row).
type scaleKind uint8

const (
	scaleInPlace    scaleKind = iota // Impl.scale, a float32 gradient
	scaleNarrow                      // scaled as it is narrowed into a half-precision gradient
	scaleAxpy                        // less b·w_j (smoothing), a float32 gradient
	scaleAxpyNarrow                  // less b·w_j, then narrowed
)

// newPlan returns the plan of k for rows of cols columns of type t with
// p's options, a gradient of type gt (when fused: the forward stores its
// exps), for one goroutine (a value: on its stack, so that a call
// without options allocates nothing).
func newPlan(k *Impl, p *ce.Problem, cols int, t, gt ce.DType, fused bool) plan {
	c, inv := p.Transform()
	pl := plan{k: k, c: c, inv: inv, tr: !p.Identity(), smooth: p.Smoothing > 0, w: p.ShardWeights(cols)}
	switch {
	case pl.smooth:
		pl.sum = sumSmooth
	case t != ce.F32 && !fused && k.chunk16 != nil && !pl.tr:
		pl.sum = sumHalf
	}
	switch {
	case pl.smooth && gt != ce.F32:
		pl.scale = scaleAxpyNarrow
	case pl.smooth:
		pl.scale = scaleAxpy
	case gt != ce.F32:
		pl.scale = scaleNarrow
	}
	if pl.tr {
		pl.buf = make([]float32, chunkLen(cols))
	}
	if t != ce.F32 || gt != ce.F32 {
		pl.wide, pl.out = make([]float32, chunkLen(cols)), make([]float32, chunkLen(cols))
	}
	if pl.smooth {
		cl := chunkLen(cols)
		for ch, lo := 0, 0; lo < cols; ch, lo = ch+1, lo+cl {
			hi := min(lo+cl, cols)
			if pl.w == nil {
				pl.wc[ch] = float64(hi - lo)
				continue
			}
			for _, v := range pl.w[lo:hi] {
				pl.wc[ch] += float64(v)
			}
		}
	}
	return pl
}

// wsum returns the sum of the weights of a row.
func (pl *plan) wsum() float64 {
	w := 0.0
	for _, v := range pl.wc {
		w += v
	}
	return w
}

// load returns the chunk x[lo:hi] raw (widened, see widen) and as the
// kernels see it: transformed into the plan's buffer (capped, or scaled
// by 1/τ), raw without a transform.
func (pl *plan) load(x vec, lo, hi int) (raw, z []float32) {
	raw = pl.widen(x, lo, hi)
	if !pl.tr {
		return raw, raw
	}
	b := pl.buf[:hi-lo]
	if pl.c > 0 {
		pl.k.capTo(b, raw, pl.c, pl.inv)
	} else {
		copy(b, raw)
		pl.k.scale(b, pl.inv)
	}
	return raw, b
}

// widen returns the chunk x[lo:hi] as float32: x's own elements for a
// float32 row, else widened into the plan's buffer (valid until the next
// call).
func (pl *plan) widen(x vec, lo, hi int) []float32 {
	if x.t == ce.F32 {
		return x.f[lo:hi]
	}
	w := pl.wide[:hi-lo]
	pl.k.widen(w, x.h[lo:hi], x.t)
	return w
}

// gradPass writes the gradient of row x into g (see Impl.grad for shift,
// a and b; the plan's transform gives c and inv; w are the row's weights,
// nil for all 1) in one pass of its own: the float32 loop over the row
// (which caps as it goes), or, where either is half precision or the
// logits are scaled by a temperature alone, a chunk at a time, widened
// (and scaled) and narrowed through the plan's buffers (g may be x: each
// chunk is read before it is written).
func (pl *plan) gradPass(g, x vec, shift, a, b float32, w []float32) {
	k := pl.k
	c, inv := pl.c, pl.inv
	scaled := pl.tr && c == 0
	if x.t == ce.F32 && g.t == ce.F32 && !scaled {
		k.grad(g.f, x.f, shift, a, b, w, c, inv)
		return
	}
	n := x.len()
	cl := chunkLen(n)
	for lo := 0; lo < n; lo += cl {
		hi := min(lo+cl, n)
		xc := pl.widen(x, lo, hi)
		if scaled {
			_, xc = pl.load(x, lo, hi)
		}
		var wc []float32
		if w != nil {
			wc = w[lo:hi]
		}
		if g.t == ce.F32 {
			k.grad(g.f[lo:hi], xc, shift, a, b, wc, c, inv)
			continue
		}
		d := pl.out[:hi-lo]
		k.grad(d, xc, shift, a, b, wc, c, inv)
		k.narrow(g.h[lo:hi], d, 1, g.t)
	}
}

// wchunk returns the weights of chunk [lo, hi), nil for all 1.
func (pl *plan) wchunk(lo, hi int) []float32 {
	if pl.w == nil {
		return nil
	}
	return pl.w[lo:hi]
}

// after returns the first chunk of row i+1 of x when it is below hi (the
// rows of the calling goroutine), else nil: the row driver's prefetch
// across rows (of a half-precision row, its words: see halfWords).
func after(x ce.Matrix, i, hi int) []float32 {
	if i+1 >= hi {
		return nil
	}
	lo := (i + 1) * x.Stride
	n := min(x.Cols, chunkLen(x.Cols))
	if x.Type == ce.F32 {
		return x.Data[lo : lo+n]
	}
	return halfWords(x.Half[lo : lo+n])
}

// halfWords returns the 16-bit elements h as float32 words (the last odd
// one left out): the addresses of a half-precision chunk for the kernels'
// prefetch, which reads nothing.
func halfWords(h []uint16) []float32 {
	if len(h) < 2 {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&h[0])), len(h)/2)
}

// chunkLen returns the chunk length online uses on rows of n elements:
// Chunk, or a multiple of 16 large enough for MaxChunks chunks.
func chunkLen(n int) int {
	return max(Chunk, (n+16*MaxChunks-1)/(16*MaxChunks)*16)
}

// CrossEntropy writes the per-row results asked for in out and, when g is
// not nil, the gradient, of the rows of x against targets (classes, or -1
// for an ignored row) with the options of p, in one pass over each row
// (see the package comment). x holds the whole vocabulary (p.Col0 is 0,
// p.Vocab 0 or x.Cols): a shard takes Partials and Backward.
func (k *Impl) CrossEntropy(out ce.Out, g *ce.Grad, x ce.Matrix, targets []int32, p *ce.Problem) {
	gt := ce.F32
	if g != nil {
		gt = g.Type
	}
	parallel(x.Rows, x.Cols, func(lo, hi int) {
		pl := newPlan(k, p, x.Cols, x.Type, gt, g != nil) // this goroutine's: it holds a chunk's room
		for i := lo; i < hi; i++ {
			pl.row(out, g, x, targets, p, i, after(x, i, hi))
		}
	})
}

// Partials sets dst[i] to the partial of row i of x, the classes
// [p.Col0, p.Col0+x.Cols) of the vocabulary, for every row whose target is
// not -1 (an ignored row's is left as it is).
func (k *Impl) Partials(dst []ce.Partial, x ce.Matrix, targets []int32, p *ce.Problem) {
	parallel(x.Rows, x.Cols, func(lo, hi int) {
		pl := newPlan(k, p, x.Cols, x.Type, ce.F32, false)
		for i := lo; i < hi; i++ {
			if targets[i] < 0 {
				continue
			}
			xr := matRow(x, i)
			dst[i] = pl.scan(nil, xr, nil, after(x, i, hi), p)
			if t := int(targets[i]) - p.Col0; t >= 0 && t < x.Cols {
				dst[i].ZT, dst[i].HasT = pl.capped(xr.at(t)), true
			}
		}
	})
}

// Backward writes the gradient of rows of x, the classes [p.Col0,
// p.Col0+x.Cols) of the vocabulary, into g, given part[i], the partial of
// row i over the whole vocabulary (merged from every shard's): dz_j as in
// the package comment with p = exp(z - m)/s of the merged (m, s). Ignored
// rows (target -1) get a zero row; a row whose sum is NaN or 0 a NaN row.
// With g.Fix, each row's Extra (times 1/τ) is added to the coefficient of
// its p_j, and then its entries are set (ce.Fix).
func (k *Impl) Backward(g ce.Grad, x ce.Matrix, targets []int32, part []ce.Partial, p *ce.Problem) {
	C := p.Classes(x.Cols)
	w := p.ShardWeights(x.Cols)
	parallel(x.Rows, x.Cols, func(lo, hi int) {
		tr := ce.Problem{Softcap: p.Softcap, Temperature: p.Temperature}
		pl := newPlan(k, &tr, x.Cols, x.Type, g.Type, false) // gradPass's transform and buffers
		for i := lo; i < hi; i++ {
			gr, xr := gradRow(&g, i, x.Cols), matRow(x, i)
			t := int(targets[i])
			if t < 0 {
				gr.clear()
				continue
			}
			pt := &part[i]
			ls := pt.LogSum()
			if math.IsNaN(ls) {
				gr.fill(float32(math.NaN()))
				continue
			}
			lse := float64(pt.Max) + ls
			dt := (float64(pt.ZT) - float64(pt.Max)) - ls
			a, b, gt := p.GradTerms(float64(g.Scale[i]), p.Weight(t), lse, dt, C)
			if g.Fix != nil {
				ex := float64(g.Fix.Extra[i]) * float64(p.TempScale())
				a += ex
				gt += ex * math.Exp(dt)
			}
			tl := t - p.Col0
			inShard := tl >= 0 && tl < x.Cols
			var zt float32
			if inShard {
				zt = pl.capped(xr.at(tl)) // read before gr (which may be xr) is written
			}
			pl.gradPass(gr, xr, pt.Max, float32(a/(1+pt.Rest)), float32(b), w)
			if inShard {
				gr.set(tl, float32(p.CapFactor(gt, zt)))
			}
			if f := g.Fix; f != nil {
				for k, c := range f.Cols[i*f.K : (i+1)*f.K] {
					if j := int(c) - p.Col0; j >= 0 && j < x.Cols {
						gr.set(j, f.Vals[i*f.K+k])
					}
				}
			}
		}
	})
}

// capped returns the logit x as the kernels see it (ce.Problem.Transform):
// c·tanh(x·inv) with a soft cap, x·inv otherwise (x itself without
// either), by the same kernel as a chunk's (load), so that the target's
// logit compares with the others' as they are: a tie stays a tie.
func (pl *plan) capped(x float32) float32 {
	if !pl.tr {
		return x
	}
	v := [1]float32{x}
	if pl.c > 0 {
		pl.k.capTo(v[:], v[:], pl.c, pl.inv)
	} else {
		pl.k.scale(v[:], pl.inv)
	}
	return v[0]
}

// scan returns the partial of the row x (p's classes, Col0 included in
// Arg; ZT is left to the caller) in one pass a chunk at a time (online,
// with o for the options). With g (float32, as x) and no soft cap it
// stores exp(z_j - M_c) in g, chunk c's reference M_c in ms, for the fused
// path's scale pass; with a soft cap g is not written (its gradient takes
// a pass of its own).
func (pl *plan) scan(g []float32, x vec, ms *[MaxChunks]float32, next []float32, p *ce.Problem) ce.Partial {
	part := ce.EmptyPartial()
	if pl.c > 0 {
		g = nil
	}
	var idx int
	part.Max, idx, part.ArgMax, part.Rest, part.Dot = pl.online(g, x, ms, next)
	if idx >= 0 {
		part.Arg = p.Col0 + idx
	}
	if pl.smooth {
		part.WSum = pl.wsum()
	}
	return part
}

// row computes row i of CrossEntropy.
func (pl *plan) row(out ce.Out, g *ce.Grad, x ce.Matrix, targets []int32, p *ce.Problem, i int, next []float32) {
	k := pl.k
	xr := matRow(x, i)
	var gr vec
	if g != nil {
		gr = gradRow(g, i, x.Cols)
	}
	t := int(targets[i])
	if t < 0 {
		out.Set(i, 0, 0, false)
		gr.clear()
		return
	}
	// Everything is computed relative to the max: with ls = log Σ exp(z_j - m),
	// lse = m + ls and lse - z_t = (m - z_t) + ls, which stays exact when |m|
	// dwarfs ls (a row of -1e30 has loss log C, not 0), as PyTorch's
	// log_softmax does. Without options the row takes one pass (online), and
	// the fused path stores exp(z_j - m_c) in gr while summing and scales it
	// afterwards: one exp per logit. A float32 gradient of half-precision
	// logits (a buffer of its own) takes the exps the same way; a
	// half-precision gradient takes them in the plan's float32 row, and each
	// chunk is narrowed once scaled, so that it is rounded once.
	zt := xr.at(t) // read before gr (which may be xr) is written
	var gf []float32
	switch {
	case g == nil:
	case gr.t == ce.F32:
		gf = gr.f
	default:
		if len(pl.exps) < x.Cols {
			pl.exps = make([]float32, x.Cols)
		}
		gf = pl.exps[:x.Cols]
	}
	var ms [MaxChunks]float32
	part := pl.scan(gf, xr, &ms, next, p)
	part.ZT = pl.capped(zt)
	loss, lse, correct := p.Finish(&part, t, x.Cols)
	out.Set(i, loss, lse, correct)
	if g == nil {
		return
	}
	ls := part.LogSum()
	if math.IsNaN(ls) { // online stopped early, or no sum ran
		gr.fill(float32(math.NaN()))
		return
	}
	s := 1 + part.Rest
	c := pl.c
	a, b, gt := p.GradTerms(float64(g.Scale[i]), p.Weight(t), lse, (float64(part.ZT)-float64(part.Max))-ls, x.Cols)
	if c > 0 || gf == nil {
		pl.gradPass(gr, xr, part.Max, float32(a/s), float32(b), p.Weights)
	} else { // chunk c holds exp(z_j - M_c): scaled by exp(M_c - m)·a/s, less b·w_j
		f := a / s
		cl := chunkLen(len(gf))
		for c, lo := 0, 0; lo < len(gf); c, lo = c+1, lo+cl {
			hi := min(lo+cl, len(gf))
			fc := float32(f * math.Exp(float64(ms[c])-float64(part.Max)))
			switch pl.scale {
			case scaleInPlace:
				k.scale(gf[lo:hi], fc)
			case scaleNarrow:
				k.narrow(gr.h[lo:hi], gf[lo:hi], fc, gr.t)
			case scaleAxpy:
				k.axpy(gf[lo:hi], fc, float32(b), pl.wchunk(lo, hi))
			case scaleAxpyNarrow:
				k.axpy(gf[lo:hi], fc, float32(b), pl.wchunk(lo, hi))
				k.narrow(gr.h[lo:hi], gf[lo:hi], 1, gr.t)
			}
		}
	}
	gr.set(t, float32(p.CapFactor(gt, part.ZT)))
}

// fill sets every element of x to v.
func fill(x []float32, v float32) {
	for j := range x {
		x[j] = v
	}
}

// Parallel runs f over [0, rows) split into contiguous ranges, one per
// goroutine, on up to GOMAXPROCS goroutines: as many as rows of cols
// elements of a streaming kernel keep busy (one alone below 2^16
// elements). A caller whose rows cost more an element says so in cols.
func Parallel(rows, cols int, f func(lo, hi int)) { parallel(rows, cols, f) }

// parallel is Parallel.
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

// Ranks sets dst[i] to the rank of row i of x (ce.Rank: the classes
// [p.Col0, p.Col0+x.Cols) of the vocabulary) given part[i], the row's
// partial merged over the whole vocabulary, for every row whose target is
// not -1 (an ignored row's is left as it is): a pass of its own over the
// row, as the loss sees it (p's transform), a chunk at a time: each
// chunk's exps exp(z_j - r) from the chunk kernel and their Σ e_j·(z_j -
// m) from the dot kernel, times exp(r - m); a chunk holding -Inf (whose
// term 0·(-Inf) the dot makes NaN) is summed again term by term. A row
// whose merged sum is NaN gets a NaN Ent and no count. Where the logits
// are computed (a soft cap, a temperature), the partial may be another
// device's, whose rounding of them differs by ulps: the target's own
// column is never counted greater, and a logit above the merged max is
// taken as it (its term is the max's, 0), so that a confident row's
// entropy, about (m - z_j)·p_j, is not swamped by a max off by an ulp.
func (k *Impl) Ranks(dst []ce.Rank, x ce.Matrix, targets []int32, part []ce.Partial, p *ce.Problem) {
	parallel(x.Rows, x.Cols, func(lo, hi int) {
		pl := newPlan(k, p, x.Cols, x.Type, ce.F32, false)
		e := make([]float32, chunkLen(x.Cols))
		for i := lo; i < hi; i++ {
			if targets[i] < 0 {
				continue
			}
			dst[i] = pl.rank(e, matRow(x, i), &part[i], int(targets[i])-p.Col0)
		}
	})
}

// rank is one row of Ranks, e a chunk's room, tl the target's column
// (outside [0, x.len()) when another shard holds it): never counted
// greater than itself.
func (pl *plan) rank(e []float32, x vec, pt *ce.Partial, tl int) ce.Rank {
	if math.IsNaN(pt.LogSum()) {
		return ce.Rank{Ent: math.NaN()}
	}
	k := pl.k
	m, zt := pt.Max, pt.ZT
	var r ce.Rank
	n := x.len()
	cl := chunkLen(n)
	for lo := 0; lo < n; lo += cl {
		hi := min(lo+cl, n)
		_, z := pl.load(x, lo, hi)
		g := int64(k.countAbove(z, zt))
		if tl >= lo && tl < hi && z[tl-lo] > zt { // the target itself, computed apart (another device's partial)
			g--
		}
		r.Greater += g
		if pl.tr { // computed logits above the row's max (another device's rounding of it): the max's own term, 0
			for j, v := range z {
				z[j] = min(v, m)
			}
		}
		ec := e[:len(z)]
		ref, _, _, _ := k.chunk(ec, z, m, nil)
		if math.IsInf(float64(ref), -1) { // only -Inf: nothing to add
			continue
		}
		d := k.dot(z, ec, m)
		if math.IsNaN(d) { // a -Inf logit's 0·(-Inf): term by term, without them
			d = 0
			for j, v := range z {
				if !math.IsInf(float64(v), -1) {
					d += float64(ec[j]) * (float64(v) - float64(m))
				}
			}
		}
		r.Ent += d * ce.ExpTo(ref, m)
	}
	return r
}
