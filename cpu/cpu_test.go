package cpu_test

import (
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/ce"
	"github.com/xentlab/xent/cpu"
	"github.com/xentlab/xent/internal/seed"
	"github.com/xentlab/xent/internal/spec"
)

func normal(rng *rand.Rand, n int, sd float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64() * sd)
	}
	return x
}

func targets(rng *rand.Rand, rows, cols int) []int32 {
	t := make([]int32, rows)
	for i := range t {
		t[i] = int32(rng.IntN(cols))
	}
	return t
}

// crossEntropy runs k.CrossEntropy without options on the rows × cols of x (row i
// at x[i*stride:]), writing out and, when grad is not nil, the gradient
// (row i at grad[i*gstride:], scaled by scale[i]).
func crossEntropy(k *cpu.Impl, x []float32, t []int32, rows, cols, stride int, out ce.Out, grad []float32, gstride int, scale []float32) {
	var g *ce.Grad
	if grad != nil {
		g = &ce.Grad{Data: grad, Stride: gstride, Scale: scale}
	}
	k.CrossEntropy(out, g, ce.Matrix{Data: x, Rows: rows, Cols: cols, Stride: stride}, t, &ce.Problem{WeightSum: float64(cols)})
}

// logSumExp runs k.LogSumExp on the rows × cols of x (stride).
func logSumExp(k *cpu.Impl, dst, x []float32, rows, cols, stride int) {
	k.LogSumExp(dst, ce.Matrix{Data: x, Rows: rows, Cols: cols, Stride: stride})
}

// sameBits reports whether a and b are the same float32 bit for bit, any
// NaN matching any NaN.
func sameBits(a, b float32) bool {
	return math.Float32bits(a) == math.Float32bits(b) || a != a && b != b
}

func ones(n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = 1
	}
	return s
}

// TestAccuracy is the accuracy bar on fresh N(0, 3²) logits: per-row loss
// within 1e-5·max(1, |ref|) and every gradient entry of the sum within
// 1e-5 relative (spec.GradClose), against the float64 reference.
func TestAccuracy(t *testing.T) {
	rng := seed.Rand(t, 1)
	for _, impl := range impls() {
		for _, sz := range []struct{ rows, cols int }{{64, 50257}, {423, 507}, {7, 131101}} {
			x := normal(rng, sz.rows*sz.cols, 3)
			tg := targets(rng, sz.rows, sz.cols)
			ref := spec.Reference(x, sz.rows, sz.cols, sz.cols, tg, spec.Opts{Ignore: -100})
			loss := make([]float32, sz.rows)
			g := make([]float32, len(x))
			crossEntropy(impl, x, tg, sz.rows, sz.cols, sz.cols, ce.Out{Loss: loss}, g, sz.cols, ones(sz.rows))
			worstL, worstG := 0.0, 0.0
			for i := range sz.rows {
				worstL = max(worstL, math.Abs(float64(loss[i])-ref.Loss[i])/math.Max(1, math.Abs(ref.Loss[i])))
				for j := range sz.cols {
					got, want := g[i*sz.cols+j], ref.Grad[i][j]
					worstG = max(worstG, math.Abs(float64(got)-want)/ref.Mag[i][j])
					require.True(t, spec.GradClose(got, want, ref.Mag[i][j], 1e-5), "%s %dx%d: grad[%d][%d] = %v, want %v", impl.Name(), sz.rows, sz.cols, i, j, got, want)
				}
			}
			t.Logf("%s %dx%d: worst loss error %.2g, worst gradient error %.2g (both relative)", impl.Name(), sz.rows, sz.cols, worstL, worstG)
			require.LessOrEqual(t, worstL, 1e-5)
		}
	}
}

// TestMeanAccuracy: the mean over 100 000 rows × 256 within 1e-6 relative.
func TestMeanAccuracy(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: 100 000 rows")
	}
	rng := seed.Rand(t, 2)
	const rows, cols = 100_000, 256
	x := normal(rng, rows*cols, 3)
	tg := targets(rng, rows, cols)
	ref := spec.Reference(x, rows, cols, cols, tg, spec.Opts{Ignore: -100})
	for _, impl := range impls() {
		loss := make([]float32, rows)
		crossEntropy(impl, x, tg, rows, cols, cols, ce.Out{Loss: loss}, nil, 0, nil)
		sum := 0.0
		for _, l := range loss {
			sum += float64(l)
		}
		rel := math.Abs(sum/rows-ref.Mean()) / ref.Mean()
		t.Logf("%s: mean %.9f, reference %.9f, relative error %.2g", impl.Name(), sum/rows, ref.Mean(), rel)
		require.LessOrEqual(t, rel, 1e-6)
	}
}

// TestThreadsBitIdentical: results do not depend on GOMAXPROCS.
func TestThreadsBitIdentical(t *testing.T) {
	rng := seed.Rand(t, 3)
	const rows, cols = 97, 3001
	x := normal(rng, rows*cols, 3)
	tg := targets(rng, rows, cols)
	for _, impl := range impls() {
		var first []float32
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
		for _, procs := range []int{1, 2, 3, 7} {
			runtime.GOMAXPROCS(procs)
			loss, lse := make([]float32, rows), make([]float32, rows)
			g := make([]float32, len(x))
			crossEntropy(impl, x, tg, rows, cols, cols, ce.Out{Loss: loss, LSE: lse}, g, cols, ones(rows))
			all := append(append(loss, lse...), g...)
			if first == nil {
				first = all
				continue
			}
			for k := range all {
				require.Equal(t, math.Float32bits(first[k]), math.Float32bits(all[k]), "%s, GOMAXPROCS=%d, element %d", impl.Name(), procs, k)
			}
		}
	}
}

// TestRowsAlone: every row of a problem, in place or not, must come out
// bit for bit as it does alone, whatever rows come before it (the row
// driver prefetches the next row, and the rows are split between
// goroutines). Some rows are ignored, hold NaN or +Inf, or only -Inf.
func TestRowsAlone(t *testing.T) {
	rng := seed.Rand(t, 6)
	ninf, inf, nan := float32(math.Inf(-1)), float32(math.Inf(1)), float32(math.NaN())
	for _, cols := range []int{1, 17, cpu.Chunk, 3*cpu.Chunk + 17, cpu.MaxChunks*cpu.Chunk + 4099} {
		const rows = 9
		x := normal(rng, rows*cols, 3)
		tg := targets(rng, rows, cols)
		scale := normal(rng, rows, 1)
		tg[2] = -1                          // ignored
		x[3*cols+cols/2] = nan              // NaN mid-row
		x[5*cols+cols-1] = inf              // +Inf in the last chunk
		for j := range x[6*cols : 7*cols] { // only -Inf
			x[6*cols+j] = ninf
		}
		for _, impl := range impls() {
			for _, inPlace := range []bool{false, true} {
				loss, lse := make([]float32, rows), make([]float32, rows)
				g := make([]float32, len(x))
				src := x
				if inPlace { // on a copy: x stays for the rows alone
					copy(g, x)
					src = g
				}
				crossEntropy(impl, src, tg, rows, cols, cols, ce.Out{Loss: loss, LSE: lse}, g, cols, scale)
				for i := range rows {
					row := x[i*cols : (i+1)*cols]
					l1, e1, g1 := make([]float32, 1), make([]float32, 1), make([]float32, cols)
					crossEntropy(impl, row, tg[i:i+1], 1, cols, cols, ce.Out{Loss: l1, LSE: e1}, g1, cols, scale[i:i+1])
					got := append([]float32{loss[i], lse[i]}, g[i*cols:(i+1)*cols]...)
					want := append([]float32{l1[0], e1[0]}, g1...)
					for j := range want {
						if !sameBits(got[j], want[j]) {
							t.Fatalf("%s, cols %d, in place %v, row %d, element %d: %v, alone %v", impl.Name(), cols, inPlace, i, j, got[j], want[j])
						}
					}
				}
			}
		}
	}
}

// TestProperties: shift invariance, bounds of lse, gradient rows summing
// to 0, and ignored rows that do not matter.
func TestProperties(t *testing.T) {
	rng := seed.Rand(t, 4)
	for _, impl := range impls() {
		// lse(x + c) = lse(x) + c on uniform rows, |c| up to 1e8.
		for _, c := range []float32{0, 1, -1, 1e3, -1e3, 1e6, -1e6, 1e8, -1e8} {
			for _, cols := range []int{1, 5, 50257} {
				v := float32(rng.NormFloat64()) + c
				x := make([]float32, cols)
				for j := range x {
					x[j] = v
				}
				dst := make([]float32, 1)
				logSumExp(impl, dst, x, 1, cols, cols)
				want := float64(v) + math.Log(float64(cols))
				require.InDelta(t, want, float64(dst[0]), 2e-7*math.Max(1, math.Abs(want)), "c=%g cols=%d", c, cols)
			}
		}
		// max ≤ lse ≤ max + log V on random rows of every scale.
		for _, sd := range []float64{1e-3, 1, 30, 1e4} {
			const rows, cols = 20, 777
			x := normal(rng, rows*cols, sd)
			dst := make([]float32, rows)
			logSumExp(impl, dst, x, rows, cols, cols)
			for i := range rows {
				m := float32(math.Inf(-1))
				for _, v := range x[i*cols : (i+1)*cols] {
					m = max(m, v)
				}
				require.GreaterOrEqual(t, dst[i], m)
				require.LessOrEqual(t, float64(dst[i]), float64(m)+math.Log(cols)+1e-6*math.Max(1, math.Abs(float64(m))))
			}
		}
		// Gradient rows sum to ~0 (sum reduction, no options).
		const rows, cols = 31, 4099
		x := normal(rng, rows*cols, 3)
		tg := targets(rng, rows, cols)
		g := make([]float32, len(x))
		crossEntropy(impl, x, tg, rows, cols, cols, ce.Out{}, g, cols, ones(rows))
		for i := range rows {
			s, abs := 0.0, 0.0
			for _, v := range g[i*cols : (i+1)*cols] {
				s += float64(v)
				abs += math.Abs(float64(v))
			}
			require.LessOrEqual(t, math.Abs(s), 1e-5*abs, "row %d sums to %v, Σ|g| = %v", i, s, abs)
		}
		// Changing an ignored row changes nothing in the other rows.
		tg[3], tg[17] = -1, -1
		loss1 := make([]float32, rows)
		crossEntropy(impl, x, tg, rows, cols, cols, ce.Out{Loss: loss1}, g, cols, ones(rows))
		g1 := append([]float32(nil), g...)
		for j := range cols {
			x[3*cols+j] = float32(rng.NormFloat64() * 100)
			x[17*cols+j] = float32(math.NaN())
		}
		loss2 := make([]float32, rows)
		crossEntropy(impl, x, tg, rows, cols, cols, ce.Out{Loss: loss2}, g, cols, ones(rows))
		require.Equal(t, loss1, loss2)
		require.Equal(t, g1, g)
		require.Zero(t, loss1[3])
		for _, v := range g[3*cols : 4*cols] {
			require.Zero(t, v)
		}
	}
}

// TestCrossCheck compares every implementation with the portable one at
// lengths around every block size (4 and 8 lanes, Block, vector widths).
func TestCrossCheck(t *testing.T) {
	if cpu.SIMD() == nil {
		t.Logf("no vector implementation to compare: %s", cpu.SIMDUnavailable())
	}
	rng := seed.Rand(t, 5)
	lengths := append(append([]int{1}, spec.Lengths()...), 2*cpu.Chunk+1)
	for _, cols := range lengths {
		const rows = 6
		x := normal(rng, rows*cols+3, 3)
		tg := targets(rng, rows, cols)
		ref := spec.Reference(x, rows, cols, cols, tg, spec.Opts{Ignore: spec.DefaultIgnore})
		impls := cpu.Impls()
		out := make([][]float32, len(impls))
		for k, impl := range impls {
			loss, lse := make([]float32, rows), make([]float32, rows)
			corr := make([]bool, rows)
			g := make([]float32, rows*cols)
			crossEntropy(impl, x, tg, rows, cols, cols, ce.Out{Loss: loss, LSE: lse, Correct: corr}, g, cols, ones(rows))
			lse2 := make([]float32, rows)
			logSumExp(impl, lse2, x, rows, cols, cols)
			require.Equal(t, lse, lse2, "%s: LogSumExp and CrossEntropy disagree", impl.Name())
			out[k] = append(append(loss, lse...), g...)
		}
		for o, impl := range impls[1:] {
			got := out[o+1]
			for k := range 2 * rows { // losses and lses
				require.InDelta(t, out[0][k], got[k], 2e-6*math.Max(1, math.Abs(float64(out[0][k]))), "%s: cols %d, element %d", impl.Name(), cols, k)
			}
			for k, v := range got[2*rows:] { // the gradients, relative to their terms
				i, j := k/cols, k%cols
				require.True(t, spec.GradClose(v, float64(out[0][2*rows+k]), ref.Mag[i][j], 4e-6),
					"%s: cols %d: grad[%d][%d] = %v, portable %v", impl.Name(), cols, i, j, v, out[0][2*rows+k])
			}
		}
	}
}

// TestGuards pads the logits and the gradient with guard values and checks
// that no kernel writes past a row (the SIMD stores go through unsafe
// pointers), out of place and in place.
func TestGuards(t *testing.T) {
	rng := seed.Rand(t, 7)
	const guard = float32(-12345.5)
	for _, impl := range impls() {
		for _, cols := range []int{1, 7, 8, 9, cpu.Block - 1, cpu.Block, cpu.Block + 1, cpu.Chunk - 1, cpu.Chunk, cpu.Chunk + 1, 2*cpu.Chunk + 1} {
			const rows = 3
			stride := cols + 5 // guards between rows too
			x := make([]float32, rows*stride+16)
			for i := range x {
				x[i] = guard
			}
			for i := range rows {
				copy(x[i*stride:i*stride+cols], normal(rng, cols, 3))
			}
			tg := targets(rng, rows, cols)
			g := make([]float32, len(x))
			for i := range g {
				g[i] = guard
			}
			for _, grad := range [][]float32{g, x} { // out of place, then in place
				crossEntropy(impl, x, tg, rows, cols, stride, ce.Out{Loss: make([]float32, rows)}, grad, stride, ones(rows))
				for i := range rows {
					for j := i*stride + cols; j < min((i+1)*stride, len(grad)); j++ {
						require.Equal(t, guard, grad[j], "%s: cols %d, row %d, element %d written", impl.Name(), cols, i, j-i*stride)
					}
				}
				for j := rows * stride; j < len(grad); j++ {
					require.Equal(t, guard, grad[j], "%s: cols %d: written past the end", impl.Name(), cols)
				}
			}
		}
	}
}

// TestConfident runs the confident rows of the shared table (1 - p_t from
// 0.5 down to 1e-7, and p_t = 1) through every implementation this build
// and CPU run — NEON among them under QEMU in CI, which runs this package
// alone — in float32 and the half types, forward and fused in place: each
// loss within spec.LossTol relative, each gradient entry within spec's
// row tolerance of its row's largest (spec.RowClose).
// TestConfidentLong: the forward pass alone of confident rows past
// Chunk·MaxChunks columns, whose chunks are longer than Chunk: the
// scratch for the max's chunk (rest) was Chunk long, and such a row
// panicked there (slice bounds out of range [:2096] with capacity 2048).
func TestConfidentLong(t *testing.T) {
	rng := seed.Rand(t, 28)
	cols := cpu.Chunk*cpu.MaxChunks + 4099
	rows := len(spec.Confidences)
	x := make([]float32, rows*cols)
	tg := make([]int32, rows)
	spec.Confident(rng, x, tg, rows, cols, cols)
	ref := spec.Reference(x, rows, cols, cols, tg, spec.Opts{Ignore: spec.DefaultIgnore})
	m := ce.Matrix{Data: x, Rows: rows, Cols: cols, Stride: cols, Type: ce.F32}
	for _, impl := range impls() {
		loss := make([]float32, rows)
		impl.CrossEntropy(ce.Out{Loss: loss}, nil, m, tg, &ce.Problem{WeightSum: float64(cols)})
		for i := range rows {
			require.True(t, ref.LossClose(i, float64(loss[i]), spec.LossTol), "%s row %d (1 - p_t %g): loss %v, want %v",
				impl.Name(), i, spec.Confidences[i], loss[i], ref.Loss[i])
		}
	}
}

func TestConfident(t *testing.T) {
	rng := seed.Rand(t, 27)
	for _, impl := range impls() {
		for _, cols := range []int{3*cpu.Chunk + 5, 37} {
			for _, typ := range []ce.DType{ce.F32, ce.BF16, ce.F16} {
				rows := len(spec.Confidences)
				x := make([]float32, rows*cols)
				tg := make([]int32, rows)
				spec.Confident(rng, x, tg, rows, cols, cols)
				for k := range x {
					x[k] = typ.Round(x[k])
				}
				ref := spec.Reference(x, rows, cols, cols, tg, spec.Opts{Ignore: spec.DefaultIgnore})
				m := ce.Matrix{Data: x, Rows: rows, Cols: cols, Stride: cols, Type: typ}
				g := &ce.Grad{Data: x, Stride: cols, Scale: ones(rows), Type: typ}
				if typ != ce.F32 {
					h := make([]uint16, len(x))
					cpu.Narrow(h, x, typ)
					m = ce.Matrix{Half: h, Rows: rows, Cols: cols, Stride: cols, Type: typ}
					g = &ce.Grad{Half: h, Stride: cols, Scale: ones(rows), Type: typ}
				}
				loss := make([]float32, rows)
				impl.CrossEntropy(ce.Out{Loss: loss}, nil, m, tg, &ce.Problem{WeightSum: float64(cols)}) // the forward alone
				for i := range rows {
					require.True(t, ref.LossClose(i, float64(loss[i]), spec.LossTol), "%s %v cols %d row %d (1 - p_t %g), forward: loss %v, want %v",
						impl.Name(), typ, cols, i, spec.Confidences[i], loss[i], ref.Loss[i])
				}
				impl.CrossEntropy(ce.Out{Loss: loss}, g, m, tg, &ce.Problem{WeightSum: float64(cols)})
				grad := x
				if typ != ce.F32 {
					grad = make([]float32, len(x))
					cpu.Widen(grad, m.Half, typ)
				}
				for i := range rows {
					require.True(t, ref.LossClose(i, float64(loss[i]), spec.LossTol), "%s %v cols %d row %d (1 - p_t %g): loss %v, want %v",
						impl.Name(), typ, cols, i, spec.Confidences[i], loss[i], ref.Loss[i])
					big := spec.RowMax(ref.Grad[i])
					for j := range cols {
						got := grad[i*cols+j]
						require.True(t, spec.RowClose(typ, got, ref.Grad[i][j], big), "%s %v cols %d row %d col %d: gradient %v, want %v (row's largest %g)",
							impl.Name(), typ, cols, i, j, got, ref.Grad[i][j], big)
					}
				}
			}
		}
	}
}
