//go:build goexperiment.simd && amd64 && !nosimd

package cpu

import (
	"math"
	"simd/archsimd"
	"unsafe"
)

// simdWhy says why SIMD is nil on this CPU ("" when it is set).
var simdWhy string

func init() {
	if !archsimd.X86.AVX2() || !archsimd.X86.FMA() {
		simdWhy = "this CPU lacks AVX2 and FMA"
		return
	}
	SIMD = &Impl{name: "avx2", chunk: chunkAVX2, max: maxAVX2, scale: scaleAVX2, index: indexAVX2,
		dot: dotAVX2, axpy: axpyAVX2, capTo: capAVX2, chunkDot: chunkDotAVX2}
	Default = SIMD
}

// SIMDUnavailable says why SIMD is nil.
func SIMDUnavailable() string { return simdWhy }

type f32x8 = archsimd.Float32x8

func bc(v float32) f32x8 { return archsimd.BroadcastFloat32x8(v) }

// The vector loops below follow rules found by measuring Go 1.26's
// archsimd code here:
//   - Each loop sits in a function of its own with no scalar float
//     arithmetic, and archsimd.ClearAVXUpperBits follows every loop: a
//     legacy SSE instruction after 256-bit ones costs up to 4× in a loop
//     and about 130 ns once. Zeroing an array, a small copy and a float
//     argument are SSE too, so a tail is padded before the first loop and
//     copied out after the last (a 17-element maxAVX2 took 145 ns the
//     other way and 25 ns this way; a 1105-element chunk 764 and 433 ns).
//   - Loads go through unsafe pointers inside bounds the loop condition
//     proves (the slice forms add a bounds check per load).
//   - The exp's loop holds its constants in registers in a function that
//     is not inlined, with no more live values than the 15 usable YMM
//     registers: one more constant or accumulator makes the register
//     allocator spill temporaries on the critical path, which costs more
//     than the work it would save (measured for a second reduction
//     constant, the max or the scale pass in the same loop).
//
// Tails are copied into a padded buffer and run through the same loop, so
// every element takes the same arithmetic.

// load returns the eight floats at p + 4·j.
func load(p unsafe.Pointer, j int) f32x8 {
	return archsimd.LoadFloat32x8((*[8]float32)(unsafe.Add(p, 4*j)))
}

// expK holds the vector exp's constants.
var expK = struct {
	lo, k8, mag, nC, c3, c2 float32
	tab                     [8]uint32
}{
	lo:  -88,
	k8:  8 * math.Log2E,
	mag: 12582912.0,          // 1.5·2^23: adding it rounds to an integer kept in the low bits
	nC:  -math.Ln2 / 8,       // rounded to float32: see expChunk
	c3:  0.16667117178440094, // minimax on [-ln2/16, ln2/16]
	c2:  0.5000671148300171,
	tab: expTable(),
}

// expTable holds the bits of 2^(j/8) less j<<20: adding the bits of
// t << 20 (t = n + 1.5·2^23, n = 8k + j) then adds k to the exponent.
func expTable() (t [8]uint32) {
	for j := range t {
		t[j] = math.Float32bits(float32(math.Exp2(float64(j)/8))) - uint32(j)<<20
	}
	return t
}

// chunkAVX2 is Impl.chunk in two passes over the chunk (which the
// previous chunk's pass has prefetched): its max (and the NaN test), then
// the exps relative to r = max(m, max of the chunk), so that every exp is
// at most 1. The max's index is searched for only with dst (which may
// overwrite x); without, online searches once per row.
func chunkAVX2(dst, x []float32, m float32, next []float32) (float32, float64, float32, int) {
	cm, nan := maxAVX2(x)
	return expAfterMax(dst, x, m, next, cm, nan)
}

// chunkDotAVX2 is Impl.chunkDot: chunkAVX2 with Σ_j w_j·(x_j - m) summed
// in its max pass (maxDotAVX2), where loads wait on memory and the adds
// cost little.
func chunkDotAVX2(dst, x []float32, m float32, next, w []float32) (float32, float64, float32, int, float64) {
	cm, nan, dot := maxDotAVX2(x, w, m)
	r, s, cm, ci := expAfterMax(dst, x, m, next, cm, nan)
	return r, s, cm, ci, dot
}

// expAfterMax is the rest of chunkAVX2 once the chunk's max cm (and
// whether it holds a NaN) is known.
func expAfterMax(dst, x []float32, m float32, next []float32, cm float32, nan bool) (float32, float64, float32, int) {
	if nan || math.IsInf(float64(cm), 1) {
		return cm, math.NaN(), cm, -1
	}
	r, ci := m, -1
	if cm > m {
		r = cm
		if dst != nil {
			ci = indexAVX2(x, cm)
		}
	}
	if math.IsInf(float64(r), -1) { // only -Inf so far
		clear(dst)
		return r, 0, cm, ci
	}
	return r, expSumAVX2(dst, x, r, next), cm, ci
}

// expSumAVX2 returns Σ_j exp(x_j - m) for m ≥ max_j x_j and stores each
// exp in dst when dst is not nil (dst may be x): expChunk does all but the
// last len(x) mod 16 elements, which go through it padded. It loads next
// as a prefetch.
func expSumAVX2(dst, x []float32, m float32, next []float32) float64 {
	n := len(x) &^ 15
	var d []float32
	if dst != nil {
		d = dst[:len(x)]
	}
	// The tail is padded with -Inf (whose exp is 0) before the vector code
	// runs, and copied out after it (see the rules above).
	var (
		lanes [2][4]float64
		t, e  [16]float32
	)
	if n < len(x) {
		padded(t[:], x[n:])
	}
	sum, _ := expChunk(d, x, n, m, next)
	sum.Store(&lanes[0])
	if n < len(x) {
		archsimd.ClearAVXUpperBits() // the call passes m in an SSE register
		st, _ := expChunk(e[:], t[:], 16, m, nil)
		st.Store(&lanes[1])
	}
	archsimd.ClearAVXUpperBits()
	if d != nil && n < len(x) {
		copy(d[n:], e[:])
	}
	l := &lanes
	return ((l[0][0] + l[0][1]) + (l[0][2] + l[0][3])) + ((l[1][0] + l[1][1]) + (l[1][2] + l[1][3]))
}

// expChunk returns the lane sums of exp(x_j - m) for j < n (a multiple of
// 16), summed in float32 lanes over each Block and in float64 lanes across
// blocks, and stores each exp in dst_j when dst is not nil (dst may be x).
// The sums are of the rounded exps, stored or not, so that both give the
// same sum.
//
// Per lane, for d = x_j - m ≤ 0 (0 for d ≤ -88, where 2^k reaches 0; NaN
// becomes 0 too, which maxAVX2 reports):
//
//	n = round(d·8/ln2) = 8k + j,  r = d - n·C ∈ [-ln2/16, ln2/16]
//	e^d = 2^k·2^(j/8) · (1 + r·(1 + c2·r + c3·r²))
//
// with 2^(j/8) from an 8-entry table (VPERMPS), n read from the low bits of
// t = d·8/ln2 + 1.5·2^23, and the cubic a minimax fit (relative error
// 3e-8), evaluated as s + (s·r)·(1 + c2·r + c3·r²) with s = 2^k·2^(j/8).
// C is ln2/8 rounded to float32 and n·C is exact inside the FMA, so r is
// off by n·(C - ln2/8), |n|·2.4e-10: e^d is within 2 + |d|/20 ulp, 3 ulp
// for d ≥ -16 and 6 ulp at -88, where e^d < 1e-38. A second constant (the
// Cody–Waite split) would make it 2 ulp throughout, at the cost of an FMA
// and of the register it needs: the loop then spills and runs 1.3× slower.
// Below e^-16 a term is under 1.2e-7 of the row's largest, so the sum,
// and with it the loss, does not see the difference; gradients of such
// terms are off by at most 2.5e-7 relative.
//
// The function is not inlined, so its nine constants stay in registers for
// the whole loop. It loads pre's elements, one per 64-byte line, into a
// general-purpose register, as a prefetch (the YMM registers are all in
// use); their sum is returned only to keep the loads. Such a load waits for
// its line before it retires, which PREFETCHT0 (in Go, only inside the
// runtime) does not: measured here, the same loop in assembly with
// PREFETCHT0 ran 1.16–1.21× faster from memory and 1.1× from L2. An
// assembly helper called once a Block to PREFETCHT0 its 16 lines ran
// 0.85–0.93×; loading two or four lines a step, or every second or fourth
// line, ran slower too, and loading them in the max pass instead 0.65×.
//
//go:noinline
func expChunk(dst, x []float32, n int, m float32, pre []float32) (sum archsimd.Float64x4, touched uint32) {
	k := &expK
	var (
		sv, lo, one = bc(m), bc(k.lo), bc(1)
		k8, mag, nC = bc(k.k8), bc(k.mag), bc(k.nC)
		c3, c2      = bc(k.c3), bc(k.c2)
		tab         = archsimd.LoadUint32x8(&k.tab).AsFloat32x8()
		p           = unsafe.Pointer(unsafe.SliceData(x[:n]))
		pd          unsafe.Pointer
	)
	exp := func(v f32x8) f32x8 {
		d := v.Sub(sv).Max(lo)
		t := d.MulAdd(k8, mag)
		r := t.Sub(mag).MulAdd(nC, d)
		tb := t.AsUint32x8()
		s := tab.Permute(tb).AsUint32x8().Add(tb.ShiftAllLeft(20)).AsFloat32x8()
		return s.Mul(r).MulAdd(c3.MulAdd(r, c2).MulAdd(r, one), s)
	}
	if dst != nil {
		pd = unsafe.Pointer(unsafe.SliceData(dst[:n]))
	}
	pp, np := unsafe.Pointer(unsafe.SliceData(pre)), len(pre)&^15
	for b := 0; b < n; b += Block {
		var acc f32x8
		j, e := b, min(b+Block, n)
		if pd != nil {
			for ; j < e; j += 16 {
				if j < np {
					touched += *(*uint32)(unsafe.Add(pp, 4*j))
				}
				e0, e1 := exp(load(p, j)), exp(load(p, j+8))
				e0.Store((*[8]float32)(unsafe.Add(pd, 4*j)))
				e1.Store((*[8]float32)(unsafe.Add(pd, 4*j+32)))
				acc = acc.Add(e0).Add(e1)
			}
		} else {
			for ; j < e; j += 16 {
				if j < np {
					touched += *(*uint32)(unsafe.Add(pp, 4*j))
				}
				acc = acc.Add(exp(load(p, j))).Add(exp(load(p, j+8)))
			}
		}
		sum = sum.Add(acc.GetLo().ConvertToFloat64()).Add(acc.GetHi().ConvertToFloat64())
	}
	return sum, touched
}

// padded copies the tail x into buf and fills the rest of buf with -Inf,
// neutral for the max and with an exp of 0, so that a tail runs through
// the vector loops.
func padded(buf, x []float32) {
	n := copy(buf, x)
	for i := n; i < len(buf); i++ {
		buf[i] = float32(math.Inf(-1))
	}
}

// hmax returns the largest lane of v.
func hmax(v f32x8) float32 {
	var a [8]float32
	v.Store(&a)
	archsimd.ClearAVXUpperBits()
	return max32(max32(max32(a[0], a[1]), max32(a[2], a[3])), max32(max32(a[4], a[5]), max32(a[6], a[7])))
}

// scaleAVX2 sets dst_j *= c.
func scaleAVX2(dst []float32, c float32) {
	n := len(dst) &^ 7
	scaleVec(dst[:n], bc(c))
	archsimd.ClearAVXUpperBits()
	for j := n; j < len(dst); j++ {
		dst[j] *= c
	}
}

// scaleVec is scaleAVX2's loop (len(dst) a multiple of 8), four vectors a
// step (10% faster than one here).
func scaleVec(dst []float32, cv f32x8) {
	p := unsafe.Pointer(unsafe.SliceData(dst))
	n := len(dst) &^ 31
	for j := 0; j < n; j += 32 {
		v0, v1, v2, v3 := load(p, j), load(p, j+8), load(p, j+16), load(p, j+24)
		v0.Mul(cv).Store((*[8]float32)(unsafe.Add(p, 4*j)))
		v1.Mul(cv).Store((*[8]float32)(unsafe.Add(p, 4*j+32)))
		v2.Mul(cv).Store((*[8]float32)(unsafe.Add(p, 4*j+64)))
		v3.Mul(cv).Store((*[8]float32)(unsafe.Add(p, 4*j+96)))
	}
	for j := n; j < len(dst); j += 8 {
		load(p, j).Mul(cv).Store((*[8]float32)(unsafe.Add(p, 4*j)))
	}
}

// maxAVX2 is maxGeneric on four 8-lane accumulators.
func maxAVX2(x []float32) (float32, bool) {
	n := len(x) &^ 31
	var b [32]float32
	if n < len(x) { // before the vector code (see the rules above)
		padded(b[:], x[n:])
	}
	m, nan := maxVec(x[:n])
	if n < len(x) {
		mt, nt := maxVec(b[:])
		m, nan = m.Max(mt), nan || nt
	}
	return hmax(m), nan
}

// maxDotAVX2 is maxAVX2 that also returns Σ_j w_j·(x_j - r) (w nil: all
// 1), summed as dotAVX2 sums it (float32 lanes over each Block, float64
// across; float64 lanes again when a term overflows float32). The tail's
// terms are summed in scalar code after the vector loops.
func maxDotAVX2(x, w []float32, r float32) (float32, bool, float64) {
	n := len(x) &^ 31
	var b [32]float32
	if n < len(x) { // before the vector code (see the rules above)
		padded(b[:], x[n:])
	}
	var lanes [2][4]float64
	m, nan, da, db := maxDotVec(x[:n], w, bc(r))
	if n < len(x) {
		mt, nt := maxVec(b[:])
		m, nan = m.Max(mt), nan || nt
	}
	da.Store(&lanes[0])
	db.Store(&lanes[1])
	mx := hmax(m) // clears the upper state
	l := &lanes
	dot := ((l[0][0] + l[0][1]) + (l[0][2] + l[0][3])) + ((l[1][0] + l[1][1]) + (l[1][2] + l[1][3]))
	var tw []float32
	if w != nil {
		tw = w[n:len(x)]
	}
	if math.IsInf(dot, 0) || dot != dot {
		return mx, nan, dotAVX2(x, w, r) // its float64 fallback
	}
	return mx, nan, dot + dotGeneric(x[n:], tw, r)
}

// maxDotVec is maxVec with the lane sums of w_j·(x_j - r) (see dotVec32).
func maxDotVec(x, w []float32, rv f32x8) (f32x8, bool, archsimd.Float64x4, archsimd.Float64x4) {
	p := unsafe.Pointer(unsafe.SliceData(x))
	m0 := bc(float32(math.Inf(-1)))
	m1, m2, m3 := m0, m0, m0
	var nan archsimd.Mask32x8
	var da, db archsimd.Float64x4
	var pw unsafe.Pointer
	if w != nil {
		pw = unsafe.Pointer(unsafe.SliceData(w[:len(x)]))
	}
	for blk := 0; blk < len(x); blk += Block {
		var a0, a1 f32x8
		for j := blk; j < min(blk+Block, len(x)); j += 32 {
			v0, v1, v2, v3 := load(p, j), load(p, j+8), load(p, j+16), load(p, j+24)
			m0, m1, m2, m3 = m0.Max(v0), m1.Max(v1), m2.Max(v2), m3.Max(v3)
			nan = nan.Or(v0.IsNaN().Or(v1.IsNaN())).Or(v2.IsNaN().Or(v3.IsNaN()))
			if pw == nil {
				a0 = a0.Add(v0.Sub(rv).Add(v1.Sub(rv)))
				a1 = a1.Add(v2.Sub(rv).Add(v3.Sub(rv)))
			} else {
				a0 = a0.Add(load(pw, j).Mul(v0.Sub(rv)).Add(load(pw, j+8).Mul(v1.Sub(rv))))
				a1 = a1.Add(load(pw, j+16).Mul(v2.Sub(rv)).Add(load(pw, j+24).Mul(v3.Sub(rv))))
			}
		}
		acc := a0.Add(a1)
		da, db = da.Add(acc.GetLo().ConvertToFloat64()), db.Add(acc.GetHi().ConvertToFloat64())
	}
	return m0.Max(m1).Max(m2.Max(m3)), nan.ToBits() != 0, da, db
}

// maxVec returns the lane maxima of x (len(x) a multiple of 32), NaN
// ignored, and whether x holds a NaN.
func maxVec(x []float32) (f32x8, bool) {
	p := unsafe.Pointer(unsafe.SliceData(x))
	m0 := bc(float32(math.Inf(-1)))
	m1, m2, m3 := m0, m0, m0
	var nan archsimd.Mask32x8
	for j := 0; j < len(x); j += 32 {
		v0, v1, v2, v3 := load(p, j), load(p, j+8), load(p, j+16), load(p, j+24)
		// VMAXPS returns its second operand when one is NaN, and the
		// compiler may swap the operands: NaN lanes are counted apart.
		m0, m1, m2, m3 = m0.Max(v0), m1.Max(v1), m2.Max(v2), m3.Max(v3)
		nan = nan.Or(v0.IsNaN().Or(v1.IsNaN())).Or(v2.IsNaN().Or(v3.IsNaN()))
	}
	return m0.Max(m1).Max(m2.Max(m3)), nan.ToBits() != 0
}

// indexAVX2 is indexGeneric eight lanes at a time.
func indexAVX2(x []float32, v float32) int {
	n := len(x) &^ 7
	j := indexVec(x[:n], bc(v))
	archsimd.ClearAVXUpperBits()
	if j < n {
		for ; x[j] != v; j++ {
		}
		return j
	}
	for ; j < len(x); j++ {
		if x[j] == v {
			return j
		}
	}
	return -1
}

// indexVec returns the start of the first group of eight holding v, or
// len(x) (a multiple of 8).
func indexVec(x []float32, vv f32x8) int {
	p := unsafe.Pointer(unsafe.SliceData(x))
	for j := 0; j < len(x); j += 8 {
		if load(p, j).Equal(vv).ToBits() != 0 {
			return j
		}
	}
	return len(x)
}

// dotAVX2 is dotGeneric with float64 lanes (x_j - r does not overflow
// them, as it would float32 ones near ±3e38): the vector loop, then the
// tail in scalar code after the upper state is cleared.
func dotAVX2(x, w []float32, r float32) float64 {
	n := len(x) &^ 7
	var lanes [2][4]float64
	a, b := dotVec32(x[:n], w, bc(r))
	a.Store(&lanes[0])
	b.Store(&lanes[1])
	archsimd.ClearAVXUpperBits() // before any scalar code (see the rules above)
	l := &lanes
	s := ((l[0][0] + l[0][1]) + (l[0][2] + l[0][3])) + ((l[1][0] + l[1][1]) + (l[1][2] + l[1][3]))
	if math.IsInf(s, 0) || s != s {
		// A term overflowed float32 (|x_j - r| past 3.4e38), or is ±Inf
		// or NaN: float64 lanes, as the scalar sum.
		a, b = dotVec(x[:n], w, float64(r))
		a.Store(&lanes[0])
		b.Store(&lanes[1])
		archsimd.ClearAVXUpperBits()
		s = ((l[0][0] + l[0][1]) + (l[0][2] + l[0][3])) + ((l[1][0] + l[1][1]) + (l[1][2] + l[1][3]))
	}
	var tw []float32
	if w != nil {
		tw = w[n:len(x)]
	}
	return s + dotGeneric(x[n:], tw, r)
}

// dotVec32 is dotVec with the terms in float32 lanes, summed in them over
// each Block and in float64 lanes across blocks (as expChunk's sums): a
// quarter of the conversions, so that smoothing costs little beside the
// exps. A term past the float32 range makes its sum ±Inf or NaN.
func dotVec32(x, w []float32, rv f32x8) (a, b archsimd.Float64x4) {
	p := unsafe.Pointer(unsafe.SliceData(x))
	var pw unsafe.Pointer
	if w != nil {
		pw = unsafe.Pointer(unsafe.SliceData(w[:len(x)]))
	}
	for blk := 0; blk < len(x); blk += Block {
		// Four accumulators: one would wait on its adds' latency.
		var a0, a1, a2, a3 f32x8
		e := min(blk+Block, len(x))
		j := blk
		if pw == nil {
			for ; j+32 <= e; j += 32 {
				a0, a1 = a0.Add(load(p, j).Sub(rv)), a1.Add(load(p, j+8).Sub(rv))
				a2, a3 = a2.Add(load(p, j+16).Sub(rv)), a3.Add(load(p, j+24).Sub(rv))
			}
			for ; j < e; j += 8 {
				a0 = a0.Add(load(p, j).Sub(rv))
			}
		} else {
			for ; j+32 <= e; j += 32 {
				a0, a1 = load(pw, j).MulAdd(load(p, j).Sub(rv), a0), load(pw, j+8).MulAdd(load(p, j+8).Sub(rv), a1)
				a2, a3 = load(pw, j+16).MulAdd(load(p, j+16).Sub(rv), a2), load(pw, j+24).MulAdd(load(p, j+24).Sub(rv), a3)
			}
			for ; j < e; j += 8 {
				a0 = load(pw, j).MulAdd(load(p, j).Sub(rv), a0)
			}
		}
		acc := a0.Add(a1).Add(a2.Add(a3))
		a, b = a.Add(acc.GetLo().ConvertToFloat64()), b.Add(acc.GetHi().ConvertToFloat64())
	}
	return a, b
}

// dotVec returns the lane sums of w_j·(x_j - r) for j < len(x), a
// multiple of 8 (w nil: all 1), in float64 lanes.
func dotVec(x, w []float32, r float64) (a, b archsimd.Float64x4) {
	p := unsafe.Pointer(unsafe.SliceData(x))
	rv := archsimd.BroadcastFloat64x4(r)
	if w == nil {
		for j := 0; j < len(x); j += 8 {
			v := load(p, j)
			a = a.Add(v.GetLo().ConvertToFloat64().Sub(rv))
			b = b.Add(v.GetHi().ConvertToFloat64().Sub(rv))
		}
		return a, b
	}
	pw := unsafe.Pointer(unsafe.SliceData(w[:len(x)]))
	for j := 0; j < len(x); j += 8 {
		v, u := load(p, j), load(pw, j)
		a = u.GetLo().ConvertToFloat64().MulAdd(v.GetLo().ConvertToFloat64().Sub(rv), a)
		b = u.GetHi().ConvertToFloat64().MulAdd(v.GetHi().ConvertToFloat64().Sub(rv), b)
	}
	return a, b
}

// axpyAVX2 is axpyGeneric eight lanes at a time, the tail after.
func axpyAVX2(dst []float32, a, b float32, w []float32) {
	n := len(dst) &^ 7
	axpyVec(dst[:n], bc(a), bc(b), w)
	archsimd.ClearAVXUpperBits()
	var tw []float32
	if w != nil {
		tw = w[n:len(dst)]
	}
	axpyGeneric(dst[n:], a, b, tw)
}

// axpyVec sets dst_j = a·dst_j - b·w_j (len(dst) a multiple of 8).
func axpyVec(dst []float32, av, bv f32x8, w []float32) {
	p := unsafe.Pointer(unsafe.SliceData(dst))
	if w == nil {
		for j := 0; j < len(dst); j += 8 {
			load(p, j).Mul(av).Sub(bv).Store((*[8]float32)(unsafe.Add(p, 4*j)))
		}
		return
	}
	pw := unsafe.Pointer(unsafe.SliceData(w[:len(dst)]))
	for j := 0; j < len(dst); j += 8 {
		load(p, j).Mul(av).Sub(load(pw, j).Mul(bv)).Store((*[8]float32)(unsafe.Add(p, 4*j)))
	}
}

// capAVX2 is Impl.capTo: dst_j = c·tanh(x_j·inv) eight lanes at a time,
// the tail through the same loop, padded (see the rules above).
func capAVX2(dst, x []float32, c, inv float32) {
	n := len(x) &^ 7
	var t, e [8]float32
	if n < len(x) {
		copy(t[:], x[n:])
	}
	cv, iv := bc(c), bc(inv)
	capVec(dst[:n], x[:n], cv, iv)
	if n < len(x) {
		capVec(e[:], t[:], cv, iv)
	}
	archsimd.ClearAVXUpperBits()
	copy(dst[n:len(x)], e[:])
}

// tanhK holds the vector tanh's constants: below |y| = 0.3 the odd Taylor
// series to y¹¹ (as tanh32), above it (1 - e)/(1 + e) with e = exp(-2|y|)
// from expChunk's exp (2^(j/8) from the table, the minimax cubic).
//
// They are vectors in memory, loaded inside the loop (AVX loads): a
// broadcast from a float there is a legacy SSE instruction amid 256-bit
// ones, which made the loop 5× slower than scalar code, and all of them
// in registers would spill.
var tanhK = func() (k struct{ small, t3, t5, t7, t9, t11, c3, c2 [8]float32 }) {
	for i := range 8 {
		k.small[i], k.t3[i], k.t5[i], k.t7[i] = 0.3, -1.0/3, 2.0/15, -17.0/315
		k.t9[i], k.t11[i], k.c3[i], k.c2[i] = 62.0/2835, -1382.0/155925, expK.c3, expK.c2
	}
	return k
}()

// capVec sets dst_j = c·tanh(x_j·inv) for j < len(x), a multiple of 8:
// within 3e-7 of tanh relative, as tanh32; ±Inf become ±c and NaN stays
// NaN.
//
//go:noinline
func capVec(dst, x []float32, cv, iv f32x8) {
	k, tk := &expK, &tanhK
	var (
		lo, one, m2 = bc(k.lo), bc(1), bc(-2)
		k8, mag, nC = bc(k.k8), bc(k.mag), bc(k.nC)
		tab         = archsimd.LoadUint32x8(&k.tab).AsFloat32x8()
		sign        = archsimd.BroadcastUint32x8(0x80000000)
		p           = unsafe.Pointer(unsafe.SliceData(x))
		pd          = unsafe.Pointer(unsafe.SliceData(dst[:len(x)]))
	)
	for j := 0; j < len(x); j += 8 {
		y := load(p, j).Mul(iv)
		a := y.AsUint32x8().AndNot(sign).AsFloat32x8() // |y|
		small := a.Less(archsimd.LoadFloat32x8(&tk.small))
		var th f32x8
		// Each lane takes one branch; a vector whose lanes all take the
		// same one (the usual case: logits well inside the cap) computes
		// that one alone, with the same result.
		bits := small.ToBits()
		if bits != 0 {
			y2 := y.Mul(y)
			th = archsimd.LoadFloat32x8(&tk.t11).MulAdd(y2, archsimd.LoadFloat32x8(&tk.t9)).MulAdd(y2, archsimd.LoadFloat32x8(&tk.t7)).MulAdd(y2, archsimd.LoadFloat32x8(&tk.t5)).MulAdd(y2, archsimd.LoadFloat32x8(&tk.t3)).MulAdd(y2, one).Mul(y)
		}
		if bits != 0xff {
			sb := y.AsUint32x8().And(sign)
			// e = exp(-2|y|), as expChunk's exp of d = -2|y| ≤ 0.
			d := a.Mul(m2).Max(lo)
			t := d.MulAdd(k8, mag)
			r := t.Sub(mag).MulAdd(nC, d)
			tb := t.AsUint32x8()
			sc := tab.Permute(tb).AsUint32x8().Add(tb.ShiftAllLeft(20)).AsFloat32x8()
			e := sc.Mul(r).MulAdd(archsimd.LoadFloat32x8(&tk.c3).MulAdd(r, archsimd.LoadFloat32x8(&tk.c2)).MulAdd(r, one), sc)
			big := one.Sub(e).Div(one.Add(e)).AsUint32x8().Or(sb).AsFloat32x8()
			th = th.Merge(big, small)
		}
		th = y.Merge(th, y.IsNaN()) // a NaN stays NaN (the exp's Max drops it)
		th.Mul(cv).Store((*[8]float32)(unsafe.Add(pd, 4*j)))
	}
}
