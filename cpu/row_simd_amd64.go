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
	SIMD = &Impl{name: "avx2", max: maxAVX2, expSum: expSumAVX2, scale: scaleAVX2, index: indexAVX2}
	Default = SIMD
}

// SIMDUnavailable says why SIMD is nil.
func SIMDUnavailable() string { return simdWhy }

type f32x8 = archsimd.Float32x8

func bc(v float32) f32x8 { return archsimd.BroadcastFloat32x8(v) }

// The vector loops below follow three rules found by measuring Go 1.26's
// archsimd code: each loop sits in a function of its own with no scalar
// float arithmetic (legacy SSE instructions between 256-bit ones cost up
// to 4× here); loads go through unsafe pointers inside bounds the loop
// condition proves (the slice forms add a bounds check per load); and the
// exp's constants are loaded from memory in the loop body (a load is
// cheap, while holding all of them in the 15 usable YMM registers makes
// the register allocator spill temporaries on the critical path). Tails
// are copied into a padded buffer and run through the same loop, so every
// element takes the same arithmetic.

// load returns the eight floats at p + 4·j.
func load(p unsafe.Pointer, j int) f32x8 {
	return archsimd.LoadFloat32x8((*[8]float32)(unsafe.Add(p, 4*j)))
}

// expK holds the vector exp's constants.
var expK = struct {
	lo, k8, mag, nHi, nLo, c3, c2 float32
	tab                           [8]uint32
}{
	lo:  -88,
	k8:  8 * math.Log2E,
	mag: 12582912.0,       // 1.5·2^23: adding it rounds to an integer kept in the low bits
	nHi: -0.693359375 / 8, // -ln2/8 in two parts: n·nHi is exact
	nLo: 2.12194440e-4 / 8,
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

// expSumAVX2 is expSumGeneric on eight lanes: expBlock does a Block at a
// time, its lane sums are folded into float64 here.
func expSumAVX2(dst, x []float32, m float32, next []float32) (float64, float32, bool) {
	var total float64
	var lanes [8]float32
	for lo := 0; lo < len(x); lo += Block {
		b := x[lo:min(lo+Block, len(x))]
		n := len(b) &^ 7
		var d []float32
		if dst != nil {
			d = dst[lo : lo+len(b)]
		}
		// Touch the same block of the next chunk, so that it streams in from
		// memory while this block's exps are computed.
		var pre []float32
		if lo < len(next) {
			pre = next[lo:min(lo+Block, len(next))]
		}
		acc, _ := expBlock(d, b, n, m, pre)
		if n < len(b) { // the tail, padded with -Inf (whose exp is 0)
			var t, e [8]float32
			padded(t[:], b[n:])
			at, _ := expBlock(e[:], t[:], 8, m, nil)
			acc = acc.Add(at)
			if d != nil {
				copy(d[n:], e[:])
			}
		}
		acc.Store(&lanes)
		// Back to scalar code: with the upper halves of the YMM registers
		// left dirty, the scalar code runs at half speed here (measured).
		archsimd.ClearAVXUpperBits()
		total += float64(((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7])))
	}
	nm, nan := maxAVX2(next)
	return total, nm, nan
}

// expBlock returns the lane sums of exp(x_j - m) for j < n (a multiple of
// 8), storing each exp in dst_j when dst is not nil (dst may be x). The
// sums are of the rounded exps, stored or not.
//
// Per lane, for d = x_j - m ≤ 0, e^d within 2 ulp (0 for d ≤ -88, where
// 2^k reaches 0; NaN becomes 0 too, which maxAVX2 reports):
//
//	n = round(d·8/ln2) = 8k + j,  r = d - n·ln2/8 ∈ [-ln2/16, ln2/16]
//	e^d = 2^k·2^(j/8) · (1 + r + c2·r² + c3·r³)
//
// with 2^(j/8) from an 8-entry table (VPERMPS), n read from the low bits of
// t = d·8/ln2 + 1.5·2^23, and the cubic a minimax fit (relative error
// 3e-8). The function is not inlined: its ten constants then stay in
// registers for the whole loop. It also loads pre's elements into a
// general-purpose register, as a prefetch (the YMM registers are all in
// use); their sum is returned only to keep the loads.
//
//go:noinline
func expBlock(dst, x []float32, n int, m float32, pre []float32) (sum f32x8, touched uint32) {
	k := &expK
	var (
		sv, lo, one = bc(m), bc(k.lo), bc(1)
		k8, mag     = bc(k.k8), bc(k.mag)
		nHi, nLo    = bc(k.nHi), bc(k.nLo)
		c3, c2      = bc(k.c3), bc(k.c2)
		tab         = archsimd.LoadUint32x8(&k.tab).AsFloat32x8()
		acc         f32x8
		p, pd       = unsafe.Pointer(unsafe.SliceData(x[:n])), unsafe.Pointer(nil)
	)
	if dst != nil {
		pd = unsafe.Pointer(unsafe.SliceData(dst[:n]))
	}
	pp, np := unsafe.Pointer(unsafe.SliceData(pre)), len(pre)
	for j := 0; j < n; j += 8 {
		if j < np {
			touched += *(*uint32)(unsafe.Add(pp, 4*j))
		}
		d := load(p, j).Sub(sv).Max(lo)
		t := d.MulAdd(k8, mag)
		nf := t.Sub(mag)
		r := nf.MulAdd(nHi, d)
		r = nf.MulAdd(nLo, r)
		tb := t.AsUint32x8()
		s := tab.Permute(tb).AsUint32x8().Add(tb.ShiftAllLeft(20)).AsFloat32x8()
		e := s.Mul(c3.MulAdd(r, c2).MulAdd(r, one).MulAdd(r, one))
		if pd != nil {
			e.Store((*[8]float32)(unsafe.Add(pd, 4*j)))
		}
		acc = acc.Add(e)
	}
	return acc, touched
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

func scaleVec(dst []float32, cv f32x8) {
	p := unsafe.Pointer(unsafe.SliceData(dst))
	for j := 0; j+8 <= len(dst); j += 8 {
		load(p, j).Mul(cv).Store((*[8]float32)(unsafe.Add(p, 4*j)))
	}
}

// maxAVX2 is maxGeneric on four 8-lane accumulators.
func maxAVX2(x []float32) (float32, bool) {
	n := len(x) &^ 31
	m, nan := maxVec(x[:n])
	if n < len(x) {
		var b [32]float32
		padded(b[:], x[n:])
		mt, nt := maxVec(b[:])
		m, nan = m.Max(mt), nan || nt
	}
	return hmax(m), nan
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
