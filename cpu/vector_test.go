package cpu

import (
	"math"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/ce"
	"github.com/xentlab/xent/internal/seed"
)

// vectorImpls returns the vector implementations this CPU runs, logging
// why there are none.
func vectorImpls(t *testing.T) []*Impl {
	if len(vectors) == 0 {
		t.Logf("no vector implementation here: %s", SIMDUnavailable())
	}
	return vectors
}

// guarded returns a slice of n elements from a buffer whose elements
// before and after it hold g, and a function that fails t if any of those
// changed: the kernels' masked tails must neither read (that would fault
// only at a page's end) nor write past a slice.
func guarded(t *testing.T, n int, g float32) ([]float32, func(what string)) {
	const pad = 40
	buf := make([]float32, n+2*pad)
	for i := range buf {
		buf[i] = g
	}
	return buf[pad : pad+n : pad+n], func(what string) {
		t.Helper()
		for i, v := range append(buf[:pad:pad], buf[pad+n:]...) {
			if !sameBits(v, g) {
				t.Fatalf("%s (n %d): guard %d changed to %v", what, n, i, v)
			}
		}
	}
}

func sameBits(a, b float32) bool { return math.Float32bits(a) == math.Float32bits(b) }

// TestVectorExp checks each vector exp lane by lane against math.Exp,
// within 2 + |x|/20 ulp where the result is normal (3 ulp on [-16, 0]),
// within 2^-126 where it is subnormal,
// the stored exps against the returned sum, and the edge cases.
func TestVectorExp(t *testing.T) {
	for _, k := range vectorImpls(t) {
		rng := seed.Rand(t, 1)
		x := make([]float32, 1<<16+13)
		for i := range x {
			x[i] = float32(-87.3 * rng.Float64())
		}
		copy(x, []float32{0, -1e-30, -0.34657359, -87.3, -40, -1})
		e, check := guarded(t, len(x), 7)
		_, s, _, _ := k.chunk(e, x, 0, nil)
		check(k.name + " exp")
		worst, worst16, sum, stored := 0.0, 0.0, 0.0, 0.0
		for i, v := range x {
			want := math.Exp(float64(v))
			sum += want
			stored += float64(e[i])
			u := ulps(e[i], want)
			require.LessOrEqual(t, u, 2-float64(v)/20, "%s: exp(%g)", k.name, v)
			worst = max(worst, u)
			if v >= -16 {
				worst16 = max(worst16, u)
			}
		}
		t.Logf("%s exp: worst error %.2f ulp on [-16, 0], %.2f ulp on [-87.3, 0], over %d values", k.name, worst16, worst, len(x))
		// Where e^x is subnormal, (-88, -87.3]: within 2^-126 absolute.
		sub := make([]float32, 1<<10)
		for i := range sub {
			sub[i] = float32(-88 + 0.7*rng.Float64())
		}
		es := make([]float32, len(sub))
		k.chunk(es, sub, 0, nil)
		for i, v := range sub {
			require.LessOrEqual(t, math.Abs(float64(es[i])-math.Exp(float64(v))), 0x1p-126, "%s: exp(%g)", k.name, v)
		}
		require.InDelta(t, sum, s, 1e-6*sum, k.name)
		require.InDelta(t, stored, s, 3e-7*sum, "%s: the sum is of other exps than those stored", k.name)
		// Without dst: the same sum.
		_, s2, _, _ := k.chunk(nil, x, 0, nil)
		require.Equal(t, s, s2, "%s: the sums with and without stores differ", k.name)
		for _, n := range []int{1, 5, 8, 15, 16, 17, 31, 33, 255, 256, 257, 300} {
			edge := make([]float32, n)
			for i := range edge {
				edge[i] = float32(math.Inf(-1))
			}
			edge[0] = 0
			if n > 2 {
				edge[1], edge[2] = -88, -1000
			}
			out, check := guarded(t, n, 5)
			_, s, _, _ := k.chunk(out, edge, 0, nil)
			check(k.name + " edge")
			require.Equal(t, 1.0, s, "%s: n %d", k.name, n)
			require.Equal(t, float32(1), out[0])
			for _, v := range out[1:] {
				require.Zero(t, v, "%s: exp of -Inf or ≤ -88 (n %d)", k.name, n)
			}
		}
	}
}

// TestVectorLengths compares every vector kernel with the portable one at
// every length to 200 (vector widths, the unrolled steps and the masked
// tails), with guards around every slice, and NaN found at every place.
func TestVectorLengths(t *testing.T) {
	rng := seed.Rand(t, 3)
	for _, k := range vectorImpls(t) {
		for n := range 200 {
			x, checkX := guarded(t, n, float32(math.NaN()))
			w, checkW := guarded(t, n, float32(math.NaN()))
			for i := range x {
				x[i] = float32(rng.NormFloat64() * 4)
				w[i] = float32(rng.Float64() * 2)
			}
			m, nan := k.max(x)
			wm, _ := maxGeneric(x)
			require.False(t, nan, "%s: n %d", k.name, n)
			require.Equal(t, wm, m, "%s: max, n %d", k.name, n)
			if n > 0 {
				at := rng.IntN(n)
				require.Equal(t, at, k.index(x, x[at]) /* values are distinct */, "%s: index, n %d", k.name, n)
				require.Equal(t, -1, k.index(x, 1000), "%s: index of an absent value, n %d", k.name, n)
				// countAbove, with NaN and ±Inf among the values and as v,
				// and v equal to a value (not above itself).
				e := slices.Clone(x)
				e[rng.IntN(n)], e[rng.IntN(n)], e[rng.IntN(n)] = float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))
				for _, v := range []float32{x[at], e[at], 0, float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN())} {
					want := 0
					for _, u := range e {
						if !math.IsNaN(float64(u)) && !math.IsNaN(float64(v)) && float64(u) > float64(v) {
							want++
						}
					}
					require.Equal(t, want, k.countAbove(e, v), "%s: countAbove %v, n %d", k.name, v, n)
				}
			}
			for _, ws := range [][]float32{nil, w} {
				require.InDelta(t, dotGeneric(x, ws, 0.5), k.dot(x, ws, 0.5), 1e-5*float64(n+1), "%s: dot, n %d", k.name, n)
			}
			// The stores: scale, axpy, cap, exps.
			// mag is the size of the terms of gradient element j (a·exp,
			// b·w_j): the scale of its rounding. With a cap, tanh's error
			// (3e-7 relative, either side) moves z by up to 3e-7·|z|, and the
			// exp by as much relative: the exp term counts (1 + 2|z|) times.
			mag := func(shift float64, ws []float32, c, inv float64) func(j int) float64 {
				return func(j int) float64 {
					z := float64(x[j])
					if c > 0 {
						z = c * math.Tanh(z*inv)
					}
					wj := 1.0
					if ws != nil {
						wj = float64(ws[j])
					}
					e := 0.7 * math.Exp(z-shift)
					if c > 0 {
						e *= 1 + 2*math.Abs(z)
					}
					return e + 0.2*wj
				}
			}
			for _, op := range []struct {
				name     string
				vec, gen func(dst []float32)
				mag      func(j int) float64 // nil: |want|
			}{
				{"scale", func(d []float32) { k.scale(d, 1.7) }, func(d []float32) { scaleGeneric(d, 1.7) }, nil},
				{"axpy", func(d []float32) { k.axpy(d, 0.3, 1.25, nil) }, func(d []float32) { axpyGeneric(d, 0.3, 1.25, nil) }, nil},
				{"axpy w", func(d []float32) { k.axpy(d, 0.3, 1.25, w) }, func(d []float32) { axpyGeneric(d, 0.3, 1.25, w) }, nil},
				{"cap", func(d []float32) { k.capTo(d, x, 5, 0.2) }, func(d []float32) { capGeneric(d, x, 5, 0.2) }, nil},
				{"grad", func(d []float32) { k.grad(d, x, wm, 0.7, 0.2, nil, 0, 0) }, func(d []float32) { gradGeneral(d, x, wm, 0.7, 0.2, nil, 0, 0) }, mag(float64(wm), nil, 0, 0)},
				{"grad w", func(d []float32) { k.grad(d, x, wm, 0.7, 0.2, w, 0, 0) }, func(d []float32) { gradGeneral(d, x, wm, 0.7, 0.2, w, 0, 0) }, mag(float64(wm), w, 0, 0)},
				{"grad cap", func(d []float32) { k.grad(d, x, 4, 0.7, 0.2, nil, 5, 0.2) }, func(d []float32) { gradGeneral(d, x, 4, 0.7, 0.2, nil, 5, 0.2) }, mag(4, nil, 5, 0.2)},
				{"grad cap w", func(d []float32) { k.grad(d, x, 4, 0.7, 0.2, w, 5, 0.2) }, func(d []float32) { gradGeneral(d, x, 4, 0.7, 0.2, w, 5, 0.2) }, mag(4, w, 5, 0.2)},
				// a soft cap 5 with a temperature 2: c·inv = 1/2
				{"grad cap temperature", func(d []float32) { k.grad(d, x, 2, 0.7, 0.2, nil, 2.5, 0.2) }, func(d []float32) { gradGeneral(d, x, 2, 0.7, 0.2, nil, 2.5, 0.2) }, mag(2, nil, 2.5, 0.2)},
			} {
				got, check := guarded(t, n, -3)
				want := make([]float32, n)
				copy(got, x)
				copy(want, x)
				op.vec(got)
				check(k.name + " " + op.name)
				op.gen(want)
				for i := range want {
					// 4e-7 relative, or 8e-7 of a gradient's terms (each exp
					// within 3 ulp, the portable one and the vector one);
					// the cap 7·2^-23 relative.
					tol := 4e-7 * math.Abs(float64(want[i]))
					if op.name == "cap" { // c·tanh: two tanh within 3 ulps each of theirs, and the products rounded
						tol = 7 * 0x1p-23 * math.Abs(float64(want[i]))
					}
					if op.mag != nil {
						tol = 8e-7 * op.mag(i)
					}
					require.InDelta(t, want[i], got[i], tol+1e-30, "%s %s: n %d, element %d", k.name, op.name, n, i)
				}
			}
			e, check := guarded(t, n, -3)
			r, s64, _, _ := k.chunk(e, x, 0, nil)
			check(k.name + " exps")
			rg, g64, _, _ := chunkGeneric(make([]float32, n), x, 0, nil)
			// Each takes its own reference: compare Σ exp(x_j).
			s64, g64 = s64*math.Exp(float64(r)), g64*math.Exp(float64(rg))
			require.InDelta(t, g64, s64, 1e-6*g64, "%s: exp sum, n %d", k.name, n)
			// One pass (no dst) and two (dst) give the same reference and
			// sum, bit for bit, for a row max so far below, near and far
			// below the chunk's.
			for _, m := range []float32{wm - 1, wm + 3, wm - 70, -1e30} {
				if n == 0 {
					break
				}
				r1, s1, c1, _ := k.chunk(nil, x, m, nil)
				d := make([]float32, n)
				r2, s2, c2, _ := k.chunk(d, x, m, nil)
				require.Equal(t, r2, r1, "%s: reference, n %d, m %v", k.name, n, m)
				require.Equal(t, math.Float64bits(s2), math.Float64bits(s1), "%s: sum, n %d, m %v: one pass %v, two %v", k.name, n, m, s1, s2)
				require.Equal(t, wm, c1, "%s: max, n %d", k.name, n)
				require.Equal(t, wm, c2, "%s: max, n %d", k.name, n)
			}
			checkX(k.name + " x")
			checkW(k.name + " w")
			for at := range n {
				y := append([]float32(nil), x...)
				y[at] = float32(math.NaN())
				_, nan := k.max(y)
				require.True(t, nan, "%s: NaN at %d of %d", k.name, at, n)
			}
		}
	}
}

// TestVectorCap checks each vector soft cap c·tanh(x/c) against math.Tanh
// at lengths around the vector widths, with ±Inf, NaN, zeros, subnormals
// and values either side of the series' cut-off 0.3·c.
func TestVectorCap(t *testing.T) {
	for _, k := range vectorImpls(t) {
		rng := seed.Rand(t, 2)
		const c = 30
		for _, n := range []int{1, 7, 8, 9, 15, 16, 17, 33, 1000} {
			x := make([]float32, n)
			for i := range x {
				switch rng.IntN(6) {
				case 0:
					x[i] = float32(rng.NormFloat64() * 3) // |y| < 0.3 mostly
				case 1:
					x[i] = float32(0.3*c + (rng.Float64()-0.5)*1e-3) // at the cut-off
				default:
					x[i] = float32(rng.NormFloat64() * 100)
				}
			}
			copy(x, []float32{float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), 0, 1e-40, -9, 9, 3e38})
			dst, check := guarded(t, n, 11)
			k.capTo(dst, x, c, 1.0/c)
			check(k.name + " cap")
			for i, v := range x {
				want := c * math.Tanh(float64(v)/c)
				got := float64(dst[i])
				switch {
				case math.IsNaN(want):
					require.True(t, math.IsNaN(got), "%s: cap(%g) = %g, want NaN", k.name, v, got)
				default:
					require.InDelta(t, want, got, 4e-7*math.Abs(want)+1e-43, "%s: cap(%g) (n %d)", k.name, v, n)
				}
			}
		}
	}
}

// TestVectorHalf checks every implementation's conversions against the
// portable ones (which package half's tests check against the formats'
// definitions), bit for bit but for NaN's payload (a NaN must give a NaN
// of its sign; VCVTPH2PS quiets a signalling one, the portable code
// keeps its bits): every 16-bit pattern widened, and float32
// values narrowed (every half value, the midpoints between neighbours and
// either side of them, random bits, NaN, ±Inf, subnormals), at every
// length up to 70 for the tails, with guards either side.
func TestVectorHalf(t *testing.T) {
	rng := seed.Rand(t, 11)
	all := make([]uint16, 1<<16)
	for i := range all {
		all[i] = uint16(i)
	}
	var vals []float32
	for _, v := range []uint32{0, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001, 0xffffffff, 0x00000001, 0x007fffff, 0x7f7fffff, 0x477fefff, 0x477ff000, 0x33000000, 0x33000001} {
		vals = append(vals, math.Float32frombits(v))
	}
	for _, h := range all {
		for _, f := range []float32{fromBF16One(h), fromF16One(h)} {
			vals = append(vals, f, math.Float32frombits(math.Float32bits(f)+0x7fff), math.Float32frombits(math.Float32bits(f)+0x8000),
				math.Float32frombits(math.Float32bits(f)+0x8001), math.Float32frombits(math.Float32bits(f)+0x1000))
		}
	}
	for range 1 << 16 {
		vals = append(vals, math.Float32frombits(rng.Uint32()))
	}
	for _, typ := range []ce.DType{ce.BF16, ce.F16} {
		want := make([]float32, len(all))
		portable.widen(want, all, typ)
		wantH := make([]uint16, len(vals))
		portable.narrow(wantH, vals, 1, typ)
		for _, k := range vectorImpls(t) {
			got := make([]float32, len(all))
			k.widen(got, all, typ)
			for i := range all {
				require.True(t, sameHalfBits(want[i], got[i]), "%s: %v %#04x widened to %#08x, want %#08x", k.name, typ, i, math.Float32bits(got[i]), math.Float32bits(want[i]))
			}
			gotH := make([]uint16, len(vals))
			k.narrow(gotH, vals, 1, typ)
			wide := func(h uint16) float32 { var d [1]float32; portable.widen(d[:], []uint16{h}, typ); return d[0] }
			for i, v := range vals {
				require.True(t, wantH[i] == gotH[i] || sameHalfBits(wide(wantH[i]), wide(gotH[i])), "%s: %v of %#08x (%v): %#04x, want %#04x", k.name, typ, math.Float32bits(v), v, gotH[i], wantH[i])
			}
			// Scaled as narrowed (the fused gradient's last pass): the float32
			// product, then the rounding.
			for _, c := range []float32{0.37, -3.5e-5, 1e30} {
				ws, gs := make([]uint16, len(vals)), make([]uint16, len(vals))
				portable.narrow(ws, vals, c, typ)
				k.narrow(gs, vals, c, typ)
				for i, v := range vals {
					require.True(t, ws[i] == gs[i] || sameHalfBits(wide(ws[i]), wide(gs[i])), "%s: %v of %v·%v: %#04x, want %#04x", k.name, typ, c, v, gs[i], ws[i])
				}
			}
			for n := range 71 {
				off := rng.IntN(len(all) - n)
				dst, check := guarded(t, n, float32(math.NaN()))
				k.widen(dst, all[off:off+n], typ)
				check("widen")
				for j := range n {
					require.True(t, sameHalfBits(want[off+j], dst[j]), "%s: widen n %d, element %d", k.name, n, j)
				}
				buf := make([]uint16, n+80)
				for j := range buf {
					buf[j] = 0xabcd
				}
				k.narrow(buf[40:40+n], vals[off:off+n], 1, typ)
				for j, v := range buf {
					if j < 40 || j >= 40+n {
						require.Equal(t, uint16(0xabcd), v, "%s: narrow n %d wrote guard %d", k.name, n, j)
					} else {
						require.True(t, wantH[off+j-40] == v || sameHalfBits(wide(wantH[off+j-40]), wide(v)), "%s: narrow n %d, element %d", k.name, n, j-40)
					}
				}
			}
		}
	}
}

// sameHalfBits reports whether a and b have the same bits, or are both
// NaN of the same sign.
func sameHalfBits(a, b float32) bool {
	return sameBits(a, b) || a != a && b != b && math.Signbit(float64(a)) == math.Signbit(float64(b))
}

func fromBF16One(h uint16) float32 { var d [1]float32; fromBF16Generic(d[:], []uint16{h}); return d[0] }
func fromF16One(h uint16) float32  { var d [1]float32; fromF16Generic(d[:], []uint16{h}); return d[0] }

// TestVectorChunk16 checks the one-pass forward over half-precision
// elements read as they are (chunk16) against chunk over the same values
// widened, at every length to 300 (whole vectors, blocks and the tail the
// Go side adds), with a max jump past 64 and a NaN.
func TestVectorChunk16(t *testing.T) {
	rng := seed.Rand(t, 12)
	for _, k := range vectorImpls(t) {
		for _, typ := range []ce.DType{ce.BF16, ce.F16} {
			for n := range 301 {
				x := make([]float32, n)
				for i := range x {
					x[i] = typ.Round(float32(rng.NormFloat64() * 3))
				}
				h := make([]uint16, n)
				portable.narrow(h, x, 1, typ)
				buf := make([]float32, n)
				for _, m := range []float32{ninf32(), 2.5, -80} { // the first chunk, a running max, a jump past 64
					r, s, cm, _ := k.chunk16(h, typ, m, nil, buf, k.widen)
					wr, ws, wcm, _ := k.chunk(nil, x, m, nil)
					require.Equal(t, wr, r, "%s %v n %d m %v: reference", k.name, typ, n, m)
					require.Equal(t, wcm, cm, "%s %v n %d m %v: max", k.name, typ, n, m)
					require.InDelta(t, ws, s, 1e-6*ws, "%s %v n %d m %v: sum", k.name, typ, n, m)
				}
				if n > 0 {
					h[rng.IntN(n)] = 0x7fc0 // NaN in either type
					_, s, _, _ := k.chunk16(h, typ, 0, nil, buf, k.widen)
					require.True(t, math.IsNaN(s), "%s %v n %d: a NaN makes the sum NaN", k.name, typ, n)
				}
			}
		}
	}
}

func ninf32() float32 { return float32(math.Inf(-1)) }
