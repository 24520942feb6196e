package spec

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/batch"
	"github.com/xentlab/xent/internal/gen"
)

// TestGradientFiniteDifference checks the reference's analytic gradient,
// every option included, against central differences of LossOf in float64.
func TestGradientFiniteDifference(t *testing.T) {
	rng := rand.New(rand.NewPCG(Seed(t), 7))
	for _, c := range Cases() {
		if c.Rows == 0 || c.Cols > 600 || strings.HasPrefix(c.Name, "edges") || c.Name == "large-logits" {
			continue
		}
		p := c.Build(rng.Uint64())
		checked := 0
		for i := 0; i < c.Rows && checked < 3; i++ {
			tg := int(p.Targets[i])
			if int64(tg) == c.Opts.Ignore {
				continue
			}
			checked++
			z := make([]float64, c.Cols)
			for j := range z {
				z[j] = float64(p.X[i*p.Stride+j])
			}
			for _, j := range []int{0, tg, c.Cols - 1, rng.IntN(c.Cols)} {
				h := 1e-6 * math.Max(1, math.Abs(z[j]))
				zp := append([]float64(nil), z...)
				zm := append([]float64(nil), z...)
				zp[j] += h
				zm[j] -= h
				fd := (LossOf(zp, tg, c.Opts) - LossOf(zm, tg, c.Opts)) / (2 * h)
				require.InDelta(t, fd, p.Ref.Grad[i][j], 1e-6*math.Max(1, math.Abs(fd)), "%s row %d col %d", c.Name, i, j)
			}
		}
	}
}

// TestTextbook: the worked example of the LM-loss chapter.
func TestTextbook(t *testing.T) {
	x := gen.TextbookLogits()
	r := Reference(x, 4, 5, 5, gen.Textbook.Targets, Opts{Ignore: -100})
	for i, want := range []float64{1.609, 0.511, 0.916, 0.223} {
		require.InDelta(t, want, r.Loss[i], 5e-4)
	}
	require.InDelta(t, 0.815, r.Mean(), 5e-4)
	require.InDelta(t, 2.26, math.Exp(r.Mean()), 5e-3)
}

// klOf is the KL of one row (DistillReference's) as a function of its raw
// logits, in float64: the student's tail summed off the support.
func klOf(z []float64, ids []int32, lp []float32, o Opts) float64 {
	zz := append([]float64(nil), z...)
	o.capRow(zz, false)
	lse := LogSumExp(zz)
	in := map[int]bool{}
	kl, ps := 0.0, 0.0
	for k, id := range ids {
		in[int(id)] = true
		p := math.Exp(float64(lp[k]))
		ps += p
		kl += p * (float64(lp[k]) - (zz[id] - lse))
	}
	Q := 0.0
	for j, v := range zz {
		if !in[j] {
			Q += math.Exp(v - lse)
		}
	}
	if P := max(0, 1-ps); P > 0 {
		kl += P * (math.Log(P) - math.Log(Q))
	}
	return kl
}

// TestDistillFiniteDifference checks DistillReference's gradient against
// central differences of klOf, on rows whose student tail is resolved.
func TestDistillFiniteDifference(t *testing.T) {
	rng := rand.New(rand.NewPCG(Seed(t), 8))
	for _, c := range DistillCases() {
		if c.Cols > 2000 || strings.HasSuffix(c.Name, "edges") {
			continue
		}
		seed := rng.Uint64()
		p := c.Build(seed)
		tc := c.teacherOf(seed, p)
		dr := DistillReference(p.X, c.Rows, c.Cols, p.Stride, p.Targets, c.Opts, tc)
		checked := 0
		for i := 0; i < c.Rows && checked < 3; i++ {
			if int64(p.Targets[i]) == c.Opts.Ignore || !dr.Resolved[i] {
				continue
			}
			checked++
			z := make([]float64, c.Cols)
			for j := range z {
				z[j] = float64(p.X[i*p.Stride+j])
			}
			ids, lp := tc.Row(i)
			for _, j := range []int{0, int(ids[0]), c.Cols - 1, rng.IntN(c.Cols)} {
				h := 1e-6 * math.Max(1, math.Abs(z[j]))
				zp := append([]float64(nil), z...)
				zm := append([]float64(nil), z...)
				zp[j] += h
				zm[j] -= h
				fd := (klOf(zp, ids, lp, c.Opts) - klOf(zm, ids, lp, c.Opts)) / (2 * h)
				require.InDelta(t, fd, dr.Grad[i][j], 1e-6*math.Max(1, math.Abs(fd)), "%s row %d col %d", c.Name, i, j)
			}
		}
		require.NotZero(t, checked, "%s: no row checked", c.Name)
	}
}

// TestUnder checks Ref.Under: only entries whose softmax term is below
// 2^-125 have it, p's coefficient times 2^-126 (a class weight and the
// z-loss in it), and GradCloseIn with it as slack takes such an entry
// off by up to that much where the scale carries it past 2^-126, as the
// CPU's vector exp and a flush to zero give, and nothing more.
func TestUnder(t *testing.T) {
	x := []float32{0, -87.5, -86, -20, -200}
	o := Opts{Ignore: -100, ZLoss: 1e-4, Weights: []float32{3, 1, 1, 1, 1}}
	r := Reference(x, 1, len(x), len(x), []int32{0}, o)
	pc := 3 + 2*1e-4*math.Abs(r.LSE[0])
	for j, v := range x {
		p := math.Exp(float64(v) - r.LSE[0])
		want := 0.0
		if p < 0x1p-125 {
			want = pc * 0x1p-126
		}
		require.InDelta(t, want, r.UnderAt(0, j), 1e-12*want, "x[%d] = %v", j, v)
	}
	require.Zero(t, r.UnderAt(0, 2), "e^-86 is normal")
	require.Positive(t, r.UnderAt(0, 1), "e^-87.5 is subnormal")
	// Column 1 at a scale of -1.5: its float32 exp half its value (as the
	// vector exp's subnormal bits can be), or flushed to 0.
	s := -1.5
	want := s * r.Grad[0][1]
	require.Greater(t, math.Abs(want), float64(minNormal32))
	for _, got := range []float32{float32(want / 2), 0} {
		require.False(t, GradCloseIn(batch.F32, got, want, s*r.Mag[0][1], RowTol, 0), "without Under: %v for %v", got, want)
		require.True(t, GradCloseIn(batch.F32, got, want, s*r.Mag[0][1], RowTol, math.Abs(s)*r.UnderAt(0, 1)), "with Under: %v for %v", got, want)
	}
	require.False(t, GradCloseIn(batch.F32, float32(want*3), want, s*r.Mag[0][1], RowTol, math.Abs(s)*r.UnderAt(0, 1)), "off by more than Under")
}
