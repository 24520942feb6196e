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

// countAboveGeneric returns how many x_j > v (a NaN on either side is
// not above).
func countAboveGeneric(x []float32, v float32) int {
	n := 0
	for _, u := range x {
		if u > v {
			n++
		}
	}
	return n
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

// chunkGeneric is Impl.chunk. Without dst it takes one pass: the exps are
// taken relative to m, the row's max so far (x_0 at the start of a row,
// when it is finite), while the chunk's max and its first index are found
// in the same loop; only a chunk whose max exceeds that reference by more
// than 64 is read again, relative to its max. With dst (which may be x,
// so that nothing can be read twice) the chunk's max comes first, from a
// pass of its own, and the reference is chosen by the same rule, so that
// both give the same sum, in float64.
func chunkGeneric(dst, x []float32, m float32, _ []float32) (float32, float64, float32, int) {
	r := m
	if math.IsInf(float64(r), -1) {
		r = x[0]
	}
	known := dst != nil || !isFinite(r)
	if known {
		cm, nan := maxGeneric(x)
		if nan {
			return cm, math.NaN(), cm, -1
		}
		if !isFinite(r) {
			r = max(m, cm)
		}
		if math.IsInf(float64(r), -1) { // only -Inf so far
			clear(dst)
			return r, 0, cm, -1
		}
		if cm > r+64 {
			r = cm
		}
	}
	s, cm, ci := expMaxRow(dst, x, r)
	if !known && cm > r+64 { // the max jumped by more than 64: once more
		r = cm
		s, _, _ = expMaxRow(nil, x, r)
	}
	return r, s, cm, ci
}

func isFinite(v float32) bool { return !math.IsInf(float64(v), 0) && v == v }

// expMaxRow returns Σ_j exp(x_j - r) (in float64: four exps per step for
// the CPU to overlap, into two accumulators), max_j x_j ignoring NaN and
// its first index (-1 when x holds no value above -Inf), and stores each
// exp, rounded to float32, in dst when dst is not nil (dst may be x). NaN
// or +Inf in x make the sum NaN.
func expMaxRow(dst, x []float32, r float32) (float64, float32, int) {
	rf := float64(r)
	var s0, s1 float64
	cm, ci := float32(math.Inf(-1)), -1
	n := len(x) &^ 3
	for j := 0; j < n; j += 4 {
		v := x[j : j+4 : j+4]
		// The max rarely changes: four well-predicted branches.
		if v[0] > cm {
			cm, ci = v[0], j
		}
		if v[1] > cm {
			cm, ci = v[1], j+1
		}
		if v[2] > cm {
			cm, ci = v[2], j+2
		}
		if v[3] > cm {
			cm, ci = v[3], j+3
		}
		e0, e1 := exp64(float64(v[0])-rf), exp64(float64(v[1])-rf)
		e2, e3 := exp64(float64(v[2])-rf), exp64(float64(v[3])-rf)
		if dst != nil {
			w := dst[j : j+4 : j+4]
			w[0], w[1], w[2], w[3] = float32(e0), float32(e1), float32(e2), float32(e3)
		}
		s0 += e0 + e2
		s1 += e1 + e3
	}
	for j := n; j < len(x); j++ {
		if x[j] > cm {
			cm, ci = x[j], j
		}
		e := exp64(float64(x[j]) - rf)
		if dst != nil {
			dst[j] = float32(e)
		}
		s0 += e
	}
	return s0 + s1, cm, ci
}

// scaleGeneric sets dst_j *= c.
func scaleGeneric(dst []float32, c float32) {
	for j := range dst {
		dst[j] *= c
	}
}

// gradGeneral is the gradient pass with options, shared by all
// implementations: dst_j = (a·exp(z_j - shift) - b·w_j)·(1 - t_j²) with
// t_j = tanh(x_j·inv) and z_j = c·t_j, the soft cap and its factor only
// when c > 0 (c·inv is 1/τ with a temperature), and w_j = 1 when w is
// nil. dst may be x.
func gradGeneral(dst, x []float32, shift, a, b float32, w []float32, c, inv float32) {
	dst = dst[:len(x)]
	for j, z := range x {
		var t float32
		if c > 0 {
			t = tanh32(z * inv)
			z = c * t
		}
		wj := float32(1)
		if w != nil {
			wj = w[j]
		}
		g := a*exp32(z-shift) - b*wj
		if c > 0 {
			g *= 1 - t*t
		}
		dst[j] = g
	}
}

// dotGeneric is Impl.dot: Σ_j w_j·(x_j - r) in float64.
func dotGeneric(x, w []float32, r float32) float64 {
	rf := float64(r)
	var s0, s1 float64
	if w == nil {
		n := len(x) &^ 1
		for j := 0; j < n; j += 2 {
			s0 += float64(x[j]) - rf
			s1 += float64(x[j+1]) - rf
		}
		for _, v := range x[n:] {
			s0 += float64(v) - rf
		}
		return s0 + s1
	}
	w = w[:len(x)]
	for j, v := range x {
		s0 += float64(w[j]) * (float64(v) - rf)
	}
	return s0
}

// axpyGeneric is Impl.axpy: dst_j = a·dst_j - b·w_j.
func axpyGeneric(dst []float32, a, b float32, w []float32) {
	if w == nil {
		for j := range dst {
			dst[j] = a*dst[j] - b
		}
		return
	}
	w = w[:len(dst)]
	for j := range dst {
		dst[j] = a*dst[j] - b*w[j]
	}
}

// capGeneric is Impl.capTo: dst_j = c·tanh32(x_j·inv).
func capGeneric(dst, x []float32, c, inv float32) {
	dst = dst[:len(x)]
	for j, v := range x {
		dst[j] = c * tanh32(v*inv)
	}
}

// chunkDotGeneric is Impl.chunkDot: the sum first (dst may be x), then
// chunkGeneric.
func chunkDotGeneric(dst, x []float32, m float32, next, w []float32) (float32, float64, float32, int, float64) {
	dot := dotGeneric(x, w, m)
	r, s, cm, ci := chunkGeneric(dst, x, m, next)
	return r, s, cm, ci, dot
}
