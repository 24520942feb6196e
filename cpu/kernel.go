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
	// shift) - b·w_j)·(1 - (z_j/c)²) with z_j = c·tanh(x_j/c) and the
	// factor only when c > 0, w_j = 1 when w is nil; dst may be x (see
	// gradGeneral).
	grad func(dst, x []float32, shift, a, b float32, w []float32, c, inv float32)
	// sum returns Σ_j x_j in float32 lanes: the read probe's loop (nil
	// for Portable, whose probe is in package bench).
	sum func(x []float32) float32
	// fma runs the FMA peak probe's loop iters times and returns a lane
	// of its result and the flops it took (nil for Portable).
	fma func(iters int) (float32, int)
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
var portable = &Impl{name: "portable", chunk: chunkGeneric, max: maxGeneric, scale: scaleGeneric, index: indexGeneric,
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

// Scale sets dst_j *= c with k's loop: the benchmarks' in-place read +
// write probe, the traffic of an in-place gradient.
func (k *Impl) Scale(dst []float32, c float32) { k.scale(dst, c) }

// FMA runs iters steps of k's FMA peak probe (independent vector FMAs)
// and returns the floating-point operations they took, 0 when k has
// none (Portable), and a result to keep, so that they are computed.
func (k *Impl) FMA(iters int) (flops int, keep float32) {
	if k.fma == nil {
		return 0, 0
	}
	v, f := k.fma(iters)
	return f, v
}

// ReadSum returns Σ_j x_j with the vector loop of k's fastest read (four
// vectors a step), for the benchmarks' read probe, and false when k has
// none (Portable).
func (k *Impl) ReadSum(x []float32) (float32, bool) {
	if k.sum == nil {
		return 0, false
	}
	return k.sum(x), true
}

// LogSumExp sets dst[i] = log Σ_j exp(x_ij) for every row of x (no
// options apply). A row holding +Inf or NaN, or only -Inf, gives NaN.
func (k *Impl) LogSumExp(dst []float32, x ce.Matrix) {
	parallel(x.Rows, x.Cols, func(lo, hi int) {
		o := newRowOpts(&ce.Problem{}, x.Cols, x.Type)
		for i := lo; i < hi; i++ {
			part := k.scan(nil, matRow(x, i), nil, after(x, i, hi), &ce.Problem{}, o)
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
func (k *Impl) online(dst []float32, x vec, ms *[MaxChunks]float32, after []float32, o *rowOpts) (m float32, idx int, am float32, rest, dot float64) {
	ninf := float32(math.Inf(-1))
	m, idx = ninf, -1
	ref := ninf      // s is relative to ref
	mlo, mhi := 0, 0 // the chunk that first reached m
	capped := o != nil && o.c > 0
	am = ninf // with a soft cap, the raw max, first reached in chunk [alo, ahi)
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
		raw, xc := k.load(o, x, lo, hi, dst != nil)
		var (
			r, cm float32
			sc    float64
			ci    int
		)
		switch {
		case raw == nil: // a half-precision chunk read as it is (see load)
			r, sc, cm, ci = k.chunk16(x.h[lo:hi], x.t, m, next, o.wide, k.widen)
		case o == nil || !o.smooth:
			r, sc, cm, ci = k.chunk(d, xc, m, next)
		case !math.IsInf(float64(m), -1): // Σ w_j·(z_j - m) in the chunk's max pass
			rc[c] = m
			r, sc, cm, ci, dc[c] = k.chunkDot(d, xc, m, next, o.wchunk(lo, hi))
		default: // relative to the chunk's own max, before d (which may be x) is written
			rc[c], _ = k.max(xc)
			if math.IsInf(float64(rc[c]), 0) { // only -Inf (each term is w_j·(-Inf) whatever r), or a NaN row
				rc[c] = 0
			}
			dc[c] = k.dot(xc, o.wchunk(lo, hi), rc[c])
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
		rest = k.rest(dst, x, m, idx, mlo, mhi, &sums, &refs, before[mlo/chunkLen(n)], o)
	}
	if o != nil && o.smooth { // Σ_c [Σ_j w_j·(z_j - r_c) + W_c·(r_c - m)]
		for c := range (n + cl - 1) / cl {
			dot += dc[c] + o.wc[c]*(float64(rc[c])-float64(m)) // -Inf or NaN stays so
		}
	}
	switch {
	case capped:
		idx = -1
		if i := k.index(k.wide(o, x, alo, ahi), am); i >= 0 {
			idx = alo + i
		}
	case idx < 0: // one search per row, in the chunk that holds the max
		idx = mlo + k.index(k.wide(o, x, mlo, mhi), m)
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
func (k *Impl) rest(dst []float32, x vec, m float32, idx, mlo, mhi int, sums *[MaxChunks]float64, refs *[MaxChunks]float32, mb float32, o *rowOpts) float64 {
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
		_, z := k.load(o, x, mlo, mhi, true)
		if j0 = k.index(z, m); j0 < 0 { // not found (it is there): the sum as it was
			return other + sums[cm]*ce.ExpTo(r, m) - 1
		}
		b := scratch.Get().(*[]float32)
		defer scratch.Put(b)
		if len(*b) < len(z) {
			*b = make([]float32, chunkLen(len(z)))
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

// rowOpts are what the row driver needs of the options and of the
// element type: the soft cap (c > 0, with inv = 1/c and buf, a chunk's
// room for its capped logits), with smoothing the weights of the row's
// columns (nil: all 1) and their sum over each chunk, and for a
// half-precision row wide and out, a chunk's room for its widened logits
// and for its gradient before it is narrowed. A nil *rowOpts is no
// options on float32 rows.
type rowOpts struct {
	c, inv    float32
	buf       []float32
	smooth    bool
	w         []float32
	wc        [MaxChunks]float64
	wide, out []float32
	row       []float32 // a half-precision gradient's exps (row), made on first use
}

// newRowOpts returns the row driver's options for rows of cols columns
// of type t with p's options, or nil when there is nothing it handles (no
// soft cap, no smoothing, float32).
func newRowOpts(p *ce.Problem, cols int, t ce.DType) *rowOpts {
	c, inv := capInv(p)
	if c == 0 && p.Smoothing == 0 && t == ce.F32 {
		return nil
	}
	o := &rowOpts{c: c, inv: inv, smooth: p.Smoothing > 0, w: p.ShardWeights(cols)}
	if c > 0 {
		o.buf = make([]float32, chunkLen(cols))
	}
	if t != ce.F32 {
		o.wide, o.out = make([]float32, chunkLen(cols)), make([]float32, chunkLen(cols))
	}
	if o.smooth {
		cl := chunkLen(cols)
		for ch, lo := 0, 0; lo < cols; ch, lo = ch+1, lo+cl {
			hi := min(lo+cl, cols)
			if o.w == nil {
				o.wc[ch] = float64(hi - lo)
				continue
			}
			for _, v := range o.w[lo:hi] {
				o.wc[ch] += float64(v)
			}
		}
	}
	return o
}

// wsum returns the sum of the weights of a row.
func (o *rowOpts) wsum() float64 {
	w := 0.0
	for _, v := range o.wc {
		w += v
	}
	return w
}

// load returns the chunk x[lo:hi] raw (widened, see wide) and as the
// kernels see it: capped into o's buffer with a soft cap, raw otherwise.
// Unless wide, a half-precision chunk without options is not widened here
// (raw and z are nil): chunk16 reads it as it is.
func (k *Impl) load(o *rowOpts, x vec, lo, hi int, wide bool) (raw, z []float32) {
	if x.t != ce.F32 && !wide && k.chunk16 != nil && o.c == 0 && !o.smooth {
		return nil, nil
	}
	raw = k.wide(o, x, lo, hi)
	if o == nil || o.c == 0 {
		return raw, raw
	}
	b := o.buf[:hi-lo]
	k.capTo(b, raw, o.c, o.inv)
	return raw, b
}

// wide returns the chunk x[lo:hi] as float32: x's own elements for a
// float32 row, else widened into o's buffer (valid until the next call).
func (k *Impl) wide(o *rowOpts, x vec, lo, hi int) []float32 {
	if x.t == ce.F32 {
		return x.f[lo:hi]
	}
	w := o.wide[:hi-lo]
	k.widen(w, x.h[lo:hi], x.t)
	return w
}

// gradPass writes the gradient of row x into g (see Impl.grad for shift,
// a, b, c and inv; w are the row's weights, nil for all 1) in one pass of
// its own: the float32 loop over the row, or, where either is half
// precision, a chunk at a time, widened and narrowed through o's buffers
// (g may be x: each chunk is read before it is written).
func (k *Impl) gradPass(g, x vec, shift, a, b float32, w []float32, c, inv float32, o *rowOpts) {
	if x.t == ce.F32 && g.t == ce.F32 {
		k.grad(g.f, x.f, shift, a, b, w, c, inv)
		return
	}
	n := x.len()
	cl := chunkLen(n)
	for lo := 0; lo < n; lo += cl {
		hi := min(lo+cl, n)
		xc := k.wide(o, x, lo, hi)
		var wc []float32
		if w != nil {
			wc = w[lo:hi]
		}
		if g.t == ce.F32 {
			k.grad(g.f[lo:hi], xc, shift, a, b, wc, c, inv)
			continue
		}
		d := o.out[:hi-lo]
		k.grad(d, xc, shift, a, b, wc, c, inv)
		k.narrow(g.h[lo:hi], d, 1, g.t)
	}
}

// wchunk returns the weights of chunk [lo, hi), nil for all 1.
func (o *rowOpts) wchunk(lo, hi int) []float32 {
	if o.w == nil {
		return nil
	}
	return o.w[lo:hi]
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
	t := x.Type
	if g != nil {
		t = max(t, g.Type) // ce.F32 is the least: either half needs the buffers
	}
	parallel(x.Rows, x.Cols, func(lo, hi int) {
		o := newRowOpts(p, x.Cols, t) // this goroutine's: it holds a chunk's room
		for i := lo; i < hi; i++ {
			k.row(out, g, x, targets, p, o, i, after(x, i, hi))
		}
	})
}

// Partials sets dst[i] to the partial of row i of x, the classes
// [p.Col0, p.Col0+x.Cols) of the vocabulary, for every row whose target is
// not -1 (an ignored row's is left as it is).
func (k *Impl) Partials(dst []ce.Partial, x ce.Matrix, targets []int32, p *ce.Problem) {
	parallel(x.Rows, x.Cols, func(lo, hi int) {
		o := newRowOpts(p, x.Cols, x.Type)
		for i := lo; i < hi; i++ {
			if targets[i] < 0 {
				continue
			}
			xr := matRow(x, i)
			dst[i] = k.scan(nil, xr, nil, after(x, i, hi), p, o)
			if t := int(targets[i]) - p.Col0; t >= 0 && t < x.Cols {
				dst[i].ZT, dst[i].HasT = capped(p, xr.at(t)), true
			}
		}
	})
}

// Backward writes the gradient of rows of x, the classes [p.Col0,
// p.Col0+x.Cols) of the vocabulary, into g, given part[i], the partial of
// row i over the whole vocabulary (merged from every shard's): dz_j as in
// the package comment with p = exp(z - m)/s of the merged (m, s). Ignored
// rows (target -1) get a zero row; a row whose sum is NaN or 0 a NaN row.
func (k *Impl) Backward(g ce.Grad, x ce.Matrix, targets []int32, part []ce.Partial, p *ce.Problem) {
	C := p.Classes(x.Cols)
	w := p.ShardWeights(x.Cols)
	parallel(x.Rows, x.Cols, func(lo, hi int) {
		o := newRowOpts(&ce.Problem{}, x.Cols, max(x.Type, g.Type)) // ce.F32 is the least: either half needs the buffers
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
			a, b, gt := gradTerms(p, float64(g.Scale[i]), p.Weight(t), lse, (float64(pt.ZT)-float64(pt.Max))-ls, C)
			c, inv := capInv(p)
			tl := t - p.Col0
			inShard := tl >= 0 && tl < x.Cols
			var zt float32
			if inShard {
				zt = capped(p, xr.at(tl)) // read before gr (which may be xr) is written
			}
			k.gradPass(gr, xr, pt.Max, float32(a/(1+pt.Rest)), float32(b), w, c, inv, o)
			if inShard {
				gr.set(tl, float32(capGrad(gt, zt, c)))
			}
		}
	})
}

// capInv returns the soft cap c and 1/c (0, 0 without a cap).
func capInv(p *ce.Problem) (c, inv float32) {
	if p.Softcap > 0 {
		return p.Softcap, 1 / p.Softcap
	}
	return 0, 0
}

// capped returns c·tanh(z/c), or z without a soft cap.
func capped(p *ce.Problem, z float32) float32 {
	if c, inv := capInv(p); c > 0 {
		return c * tanh32(z*inv)
	}
	return z
}

// capGrad multiplies a gradient entry at capped logit z by the soft cap's
// derivative 1 - (z/c)² (nothing without a cap).
func capGrad(g float64, z, c float32) float64 {
	if c > 0 {
		r := float64(z) / float64(c)
		g *= 1 - r*r
	}
	return g
}

// gradTerms returns, for a counted row with scale si, target weight wt,
// log-sum-exp lse and dt = (z_t - m) - log s over C classes, a and b such
// that dz_j = a·exp(z_j - m)/s - b·w_j off the target (before the soft
// cap's factor), and gt, the target's entry (before it too): with
// A = (1-ε)·w_t + (ε/C)·W + 2λ·lse, a = si·A and b = si·ε/C. p_t - 1
// comes from expm1, so that nothing cancels as p_t → 1, and p_t from exp,
// not from (p_t - 1) + 1, which loses a small p_t.
func gradTerms(p *ce.Problem, si, wt, lse, dt float64, C int) (a, b, gt float64) {
	eps, lam := float64(p.Smoothing), float64(p.ZLoss)
	ec := eps / float64(C)
	a = si * ((1-eps)*wt + ec*p.WeightSum + 2*lam*lse)
	gt = si * ((1-eps)*wt*math.Expm1(dt) + (ec*p.WeightSum+2*lam*lse)*math.Exp(dt) - ec*wt)
	return a, si * ec, gt
}

// scan returns the partial of the row x (p's classes, Col0 included in
// Arg; ZT is left to the caller) in one pass a chunk at a time (online,
// with o for the options). With g (float32, as x) and no soft cap it
// stores exp(z_j - M_c) in g, chunk c's reference M_c in ms, for the fused
// path's scale pass; with a soft cap g is not written (its gradient takes
// a pass of its own).
func (k *Impl) scan(g []float32, x vec, ms *[MaxChunks]float32, next []float32, p *ce.Problem, o *rowOpts) ce.Partial {
	part := ce.EmptyPartial()
	if o != nil && o.c > 0 {
		g = nil
	}
	var idx int
	part.Max, idx, part.ArgMax, part.Rest, part.Dot = k.online(g, x, ms, next, o)
	if idx >= 0 {
		part.Arg = p.Col0 + idx
	}
	if o != nil && o.smooth {
		part.WSum = o.wsum()
	}
	return part
}

func (k *Impl) row(out ce.Out, g *ce.Grad, x ce.Matrix, targets []int32, p *ce.Problem, o *rowOpts, i int, next []float32) {
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
	// half-precision gradient takes them in o's float32 row, and each
	// chunk is narrowed once scaled, so that it is rounded once.
	zt := xr.at(t) // read before gr (which may be xr) is written
	var gf []float32
	switch {
	case g == nil:
	case gr.t == ce.F32:
		gf = gr.f
	default:
		if len(o.row) < x.Cols {
			o.row = make([]float32, x.Cols)
		}
		gf = o.row[:x.Cols]
	}
	var ms [MaxChunks]float32
	part := k.scan(gf, xr, &ms, next, p, o)
	part.ZT = capped(p, zt)
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
	c, inv := capInv(p)
	a, b, gt := gradTerms(p, float64(g.Scale[i]), p.Weight(t), lse, (float64(part.ZT)-float64(part.Max))-ls, x.Cols)
	if c > 0 || gf == nil {
		k.gradPass(gr, xr, part.Max, float32(a/s), float32(b), p.Weights, c, inv, o)
	} else { // chunk c holds exp(z_j - M_c): scaled by exp(M_c - m)·a/s, less b·w_j
		f := a / s
		cl := chunkLen(len(gf))
		for c, lo := 0, 0; lo < len(gf); c, lo = c+1, lo+cl {
			hi := min(lo+cl, len(gf))
			fc := float32(f * math.Exp(float64(ms[c])-float64(part.Max)))
			switch {
			case gr.t != ce.F32 && (o == nil || !o.smooth): // scaled as it is narrowed
				k.narrow(gr.h[lo:hi], gf[lo:hi], fc, gr.t)
			case o == nil || !o.smooth:
				k.scale(gf[lo:hi], fc)
			default:
				k.axpy(gf[lo:hi], fc, float32(b), o.wchunk(lo, hi))
				if gr.t != ce.F32 {
					k.narrow(gr.h[lo:hi], gf[lo:hi], 1, gr.t)
				}
			}
		}
	}
	gr.set(t, float32(capGrad(gt, part.ZT, c)))
}

// fill sets every element of x to v.
func fill(x []float32, v float32) {
	for j := range x {
		x[j] = v
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
