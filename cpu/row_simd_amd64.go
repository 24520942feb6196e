//go:build goexperiment.simd && amd64 && !nosimd

package cpu

import (
	"math"
	"simd/archsimd"
)

// simdWhy says why SIMD is nil on this CPU ("" when it is set).
var simdWhy string

func init() {
	if !archsimd.X86.AVX2() || !archsimd.X86.FMA() {
		simdWhy = "this CPU lacks AVX2 and FMA"
		return
	}
	SIMD = &Impl{name: "avx2", maxIndex: maxIndexAVX2, expSum: expSumAVX2, scale: scaleAVX2}
	Default = SIMD
}

// SIMDUnavailable says why SIMD is nil.
func SIMDUnavailable() string { return simdWhy }

type f32x8 = archsimd.Float32x8

func bc(v float32) f32x8 { return archsimd.BroadcastFloat32x8(v) }

// expSumAVX2 is expSumGeneric on eight lanes: expBlockAVX2 does the
// vector part of each block, the scalar tail uses exp32.
func expSumAVX2(dst, x []float32, shift float32) float64 {
	sv := bc(shift)
	var total float64
	for lo := 0; lo < len(x); lo += Block {
		hi := min(lo+Block, len(x))
		n := lo + (hi-lo)&^15
		var d []float32
		if dst != nil {
			d = dst[lo:n]
		}
		s := hsum(expBlockAVX2(d, x[lo:n], sv))
		for j := n; j < hi; j++ {
			e := exp32(x[j] - shift)
			s += e
			if dst != nil {
				dst[j] = e
			}
		}
		total += float64(s)
	}
	return total
}

// expBlockAVX2 is the vector part of expSumAVX2 on len(x) (a multiple of
// 16) elements: two 8-lane exps per step for instruction-level
// parallelism, and no scalar float arithmetic in the function (legacy SSE
// instructions between 256-bit ones stall some CPUs). The exp is exp32's
// Cephes twin with FMA (AVX2 has no gather worth a 64-entry table):
// n = round(x·log2e), r = x - n·ln2 in two FMAs, e^x = 2^n·(1 + r +
// r²·P(r)) with P of degree 5, within 2 ulp; x is clamped to -88, where
// n = -127 makes 2^n exactly +0. The clamp turns NaN into 0: rows holding
// NaN are caught by maxIndexAVX2 instead.
func expBlockAVX2(dst, x []float32, sv f32x8) f32x8 {
	var (
		lo         = bc(-88)
		log2e, mag = bc(1.44269504088896341), bc(12582912.0)
		nln2Hi     = bc(-0.693359375)
		nln2Lo     = bc(2.12194440e-4)
		c5, c4, c3 = bc(1.9875691500e-4), bc(1.3981999507e-3), bc(8.3334519073e-3)
		c2, c1, c0 = bc(4.1665795894e-2), bc(1.6666665459e-1), bc(5.0000001201e-1)
		one        = bc(1)
		bias       = archsimd.BroadcastUint32x8(127)
	)
	store := dst != nil
	var acc0, acc1 f32x8
	for j := 0; j+16 <= len(x); j += 16 {
		v0 := archsimd.LoadFloat32x8Slice(x[j:]).Sub(sv).Max(lo)
		v1 := archsimd.LoadFloat32x8Slice(x[j+8:]).Sub(sv).Max(lo)
		t0, t1 := v0.MulAdd(log2e, mag), v1.MulAdd(log2e, mag)
		n0, n1 := t0.Sub(mag), t1.Sub(mag)
		r0, r1 := n0.MulAdd(nln2Hi, v0), n1.MulAdd(nln2Hi, v1)
		r0, r1 = n0.MulAdd(nln2Lo, r0), n1.MulAdd(nln2Lo, r1)
		// P(r) by Estrin's scheme (shorter dependency chains than Horner's).
		q0, q1 := r0.Mul(r0), r1.Mul(r1)
		a0, a1 := c5.MulAdd(r0, c4), c5.MulAdd(r1, c4)
		b0, b1 := c3.MulAdd(r0, c2), c3.MulAdd(r1, c2)
		d0, d1 := c1.MulAdd(r0, c0), c1.MulAdd(r1, c0)
		p0, p1 := a0.MulAdd(q0, b0).MulAdd(q0, d0), a1.MulAdd(q1, b1).MulAdd(q1, d1)
		e0 := p0.MulAdd(q0, r0).Add(one).Mul(t0.AsUint32x8().Add(bias).ShiftAllLeft(23).AsFloat32x8())
		e1 := p1.MulAdd(q1, r1).Add(one).Mul(t1.AsUint32x8().Add(bias).ShiftAllLeft(23).AsFloat32x8())
		acc0, acc1 = acc0.Add(e0), acc1.Add(e1)
		if store {
			e0.StoreSlice(dst[j:])
			e1.StoreSlice(dst[j+8:])
		}
	}
	return acc0.Add(acc1)
}

// hsum returns the sum of the eight lanes in a fixed order.
func hsum(v f32x8) float32 {
	var a [8]float32
	v.Store(&a)
	return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]))
}

// scaleAVX2 sets dst_j *= c.
func scaleAVX2(dst []float32, c float32) {
	n := len(dst) &^ 7
	scaleBlockAVX2(dst[:n], bc(c))
	for j := n; j < len(dst); j++ {
		dst[j] *= c
	}
}

func scaleBlockAVX2(dst []float32, cv f32x8) {
	for j := 0; j+8 <= len(dst); j += 8 {
		archsimd.LoadFloat32x8Slice(dst[j:]).Mul(cv).StoreSlice(dst[j:])
	}
}

// maxIndexAVX2 is maxIndexGeneric on eight lanes: a lane takes a value
// only when strictly greater, so each lane keeps its first maximum. A row
// holding NaN returns index -1 (a NaN row: expBlockAVX2's clamp would
// lose the NaN).
func maxIndexAVX2(x []float32) (float32, int) {
	ninf := float32(math.Inf(-1))
	n := len(x) &^ 7
	m, id, nan := maxBlockAVX2(x[:n])
	var ma [9]float32
	var ia [8]int32
	m.Store((*[8]float32)(ma[:8]))
	id.Store(&ia)
	var mi [9]int
	for l := range 8 {
		mi[l] = int(ia[l])
	}
	ma[8], mi[8] = ninf, -1
	for j := n; j < len(x); j++ {
		nan = nan || x[j] != x[j]
		if x[j] > ma[8] {
			ma[8], mi[8] = x[j], j
		}
	}
	if nan {
		return float32(math.NaN()), -1
	}
	return mergeMax(ma[:], mi[:])
}

// maxBlockAVX2 is the vector part of maxIndexAVX2 (len(x) a multiple of 8).
func maxBlockAVX2(x []float32) (m f32x8, id archsimd.Int32x8, nan bool) {
	m = bc(float32(math.Inf(-1)))
	id = archsimd.BroadcastInt32x8(-1)
	cur := archsimd.LoadInt32x8(&[8]int32{0, 1, 2, 3, 4, 5, 6, 7})
	step := archsimd.BroadcastInt32x8(8)
	var nans archsimd.Mask32x8
	for j := 0; j+8 <= len(x); j += 8 {
		v := archsimd.LoadFloat32x8Slice(x[j:])
		gt := v.Greater(m)
		m = v.Merge(m, gt)
		id = cur.Merge(id, gt)
		cur = cur.Add(step)
		nans = nans.Or(v.IsNaN())
	}
	return m, id, nans.ToBits() != 0
}
