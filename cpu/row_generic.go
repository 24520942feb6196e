package cpu

import "math"

// maxGeneric returns max_j x_j ignoring NaN (-Inf for an empty x) and
// whether x holds a NaN, with four independent lanes. Σ (x_j - x_j) is NaN
// exactly when x holds NaN or ±Inf; only such rows are scanned again.
func maxGeneric(x []float32) (float32, bool) {
	ninf := float32(math.Inf(-1))
	m0, m1, m2, m3 := ninf, ninf, ninf, ninf
	var z0, z1, z2, z3 float32
	n := len(x) &^ 3
	for j := 0; j < n; j += 4 {
		v := x[j : j+4 : j+4]
		m0, m1, m2, m3 = max32(m0, v[0]), max32(m1, v[1]), max32(m2, v[2]), max32(m3, v[3])
		z0, z1, z2, z3 = z0+(v[0]-v[0]), z1+(v[1]-v[1]), z2+(v[2]-v[2]), z3+(v[3]-v[3])
	}
	for _, v := range x[n:] {
		m0, z0 = max32(m0, v), z0+(v-v)
	}
	m := max32(max32(m0, m1), max32(m2, m3))
	if z := (z0 + z1) + (z2 + z3); z == z {
		return m, false
	}
	for _, v := range x {
		if v != v {
			return m, true
		}
	}
	return m, false
}

// max32 returns the larger of m and v, m when v is NaN.
func max32(m, v float32) float32 {
	if v > m {
		return v
	}
	return m
}

// indexGeneric returns the first j with x_j == v, or -1.
func indexGeneric(x []float32, v float32) int {
	for j, u := range x {
		if u == v {
			return j
		}
	}
	return -1
}

// expSumGeneric returns Σ_j exp(x_j - m), summed in four float32 lanes
// over blocks of Block elements and the blocks in float64, and stores each
// exp in dst when dst is not nil (dst may be x); then maxGeneric(next).
func expSumGeneric(dst, x []float32, m float32, next []float32) (float64, float32, bool) {
	nm, nan := maxGeneric(next)
	return expSumRow(dst, x, m), nm, nan
}

func expSumRow(dst, x []float32, m float32) float64 {
	var total float64
	for lo := 0; lo < len(x); lo += Block {
		b := x[lo:min(lo+Block, len(x))]
		var s0, s1, s2, s3 float32
		n := len(b) &^ 3
		if dst == nil {
			for j := 0; j < n; j += 4 {
				v := b[j : j+4 : j+4]
				s0 += exp32(v[0] - m)
				s1 += exp32(v[1] - m)
				s2 += exp32(v[2] - m)
				s3 += exp32(v[3] - m)
			}
		} else {
			d := dst[lo : lo+len(b)]
			for j := 0; j < n; j += 4 {
				v := b[j : j+4 : j+4]
				e0, e1, e2, e3 := exp32(v[0]-m), exp32(v[1]-m), exp32(v[2]-m), exp32(v[3]-m)
				s0, s1, s2, s3 = s0+e0, s1+e1, s2+e2, s3+e3
				w := d[j : j+4 : j+4]
				w[0], w[1], w[2], w[3] = e0, e1, e2, e3
			}
		}
		for j := n; j < len(b); j++ {
			e := exp32(b[j] - m)
			s0 += e
			if dst != nil {
				dst[lo+j] = e
			}
		}
		total += float64((s0 + s1) + (s2 + s3))
	}
	return total
}

// scaleGeneric sets dst_j *= c.
func scaleGeneric(dst []float32, c float32) {
	for j := range dst {
		dst[j] *= c
	}
}

// sumExpGeneral is the sum pass with options, shared by all
// implementations: with z'_j = c·tanh(x_j/c) when c > 0 (inv = 1/c), else
// x_j, it returns Σ_j exp(z'_j - m), folded into float64 every Block
// elements, and, when dot is set, Σ_j w_j·(z'_j - m) (w nil: all 1) summed
// in float64.
func sumExpGeneral(x []float32, m, c, inv float32, w []float32, dot bool) (sum, wz float64) {
	for lo := 0; lo < len(x); lo += Block {
		hi := min(lo+Block, len(x))
		var s float32
		for j := lo; j < hi; j++ {
			z := x[j]
			if c > 0 {
				z = c * tanh32(z*inv)
			}
			s += exp32(z - m)
			if dot { // in float64: z - m overflows float32 near ±3e38
				d := float64(z) - float64(m)
				if w != nil {
					d *= float64(w[j])
				}
				wz += d
			}
		}
		sum += float64(s)
	}
	return sum, wz
}

// gradGeneral is the gradient pass with options, shared by all
// implementations: dst_j = (a·exp(z'_j - shift) - b·w_j)·(1 - (z'_j/c)²),
// with the soft cap factor only when c > 0 and w_j = 1 when w is nil.
// dst may be x.
func gradGeneral(dst, x []float32, shift, a, b float32, w []float32, c, inv float32) {
	dst = dst[:len(x)]
	for j, z := range x {
		if c > 0 {
			z = c * tanh32(z*inv)
		}
		wj := float32(1)
		if w != nil {
			wj = w[j]
		}
		g := a*exp32(z-shift) - b*wj
		if c > 0 {
			r := z * inv
			g *= 1 - r*r
		}
		dst[j] = g
	}
}
