package spec

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/batch"
	"github.com/xentlab/xent/device"
	"github.com/xentlab/xent/internal/seed"
)

// guard fills the padding of strided logits and the slack after them, and
// gradGuard that of separate gradient buffers (another value, so that a
// device that copies the logits' padding into the gradient's is seen);
// kernels must leave both as they are.
const (
	guard     = float32(-7.25e11)
	gradGuard = float32(3.5e11)
)

// Close reports whether got is within tol·max(1, |want|) of want; NaN must
// match NaN and infinities must match exactly.
func Close(got float32, want, tol float64) bool {
	g := float64(got)
	if ok, decided := special(g, want); decided {
		return ok
	}
	return math.Abs(g-want) <= tol*math.Max(1, math.Abs(want))
}

// special decides a comparison where want is NaN or infinite (got must be
// the same) or got is and want is not (a mismatch).
func special(got, want float64) (ok, decided bool) {
	switch {
	case math.IsNaN(want):
		return math.IsNaN(got), true
	case math.IsInf(want, 0):
		return got == want, true
	case math.IsNaN(got) || math.IsInf(got, 0):
		return false, true
	}
	return false, false
}

// LossTol is the relative tolerance of a loss computed from exact inputs
// (float32 logits, or half-precision ones against the reference of their
// values): 1e-6, which nothing but a cancelling form misses, however small
// the loss (a row with p_t → 1 has a loss of about 1 - p_t), but for the
// rounding of the differences z - m, which Ref.Slack adds per row.
const LossTol = 1e-6

// lossTol is the relative tolerance of c's losses: LossTol, or with a soft
// cap or a temperature tol (the logits are computed, c·tanh(x/c)/τ, and
// OpenCL's tanh may be 5 ulp off, and its x·(1/τ) may be contracted into
// what follows: an absolute error of ulps in every logit).
func (c Case) lossTol(tol float64) float64 {
	if c.Opts.Computed() {
		return max(tol, LossTol)
	}
	return LossTol
}

// LossCloseIn reports whether a loss got (a row's, or a sum of rows')
// matches want within rel relative, or 2 float32 ulps of want; below the
// smallest normal float32 every value below it matches. NaN must match
// NaN and infinities must match exactly. Ref.LossClose adds a row's Slack.
func LossCloseIn(got, want, rel float64) bool { return lossClose(got, want, rel, 0) }

// lossClose is LossCloseIn with slack added to the tolerance.
func lossClose(got, want, rel, slack float64) bool {
	if ok, decided := special(got, want); decided {
		return ok
	}
	if math.Abs(want) < minNormal32 && math.Abs(got) < minNormal32 {
		return true
	}
	return math.Abs(got-want) <= max(rel*math.Abs(want), 2*ulp32(want))+slack
}

// CloseF is Close for float64 results.
func CloseF(got, want, tol float64) bool {
	if math.IsNaN(want) || math.IsInf(want, 0) {
		return Close(float32(got), want, tol)
	}
	return math.Abs(got-want) <= tol*math.Max(1, math.Abs(want))
}

// GradClose reports whether a float32 gradient entry got matches the
// float64 want, whose terms have size mag (Ref.Mag, scaled as want is):
// within tol·mag, or within 2 float32 ulps of want (where tol·mag is below
// them). Below the smallest normal float32 every value below it matches
// (devices may flush subnormals to zero). NaN must match NaN and
// infinities must match exactly. Where nothing cancels, mag is |want|:
// the comparison is relative, however small the entry.
func GradClose(got float32, want, mag, tol float64) bool {
	g := float64(got)
	if ok, decided := special(g, want); decided {
		return ok
	}
	if math.Abs(want) < minNormal32 && math.Abs(g) < minNormal32 {
		return true
	}
	return math.Abs(g-want) <= max(tol*math.Abs(mag), 2*ulp32(want))
}

// RowTol is how far a gradient entry computed from exact float32 inputs
// may be from the reference, relative to its row's largest entry: 1e-5.
// With a soft cap the logits the exps see are computed (c·tanh(x/c), off
// by an ulp of c), so such rows are held to GradClose's yardstick only.
// Where p_t → 1 the row's largest is p_t - 1 itself, so a form that
// cancels (exp(z_t - lse) - 1) misses it by orders of magnitude.
const RowTol = 1e-5

// RowTolIn is RowTol for a gradient of element type t: the rounding of a
// half-precision gradient (2^-8 for bfloat16, 2^-11 for float16) where it
// is larger.
func RowTolIn(t batch.DType) float64 {
	rel, _ := roundRel(t)
	return max(RowTol, rel)
}

// RowMax returns the largest |g_j| of a reference gradient row (NaN and
// infinite entries left out).
func RowMax(g []float64) float64 {
	m := 0.0
	for _, v := range g {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			m = max(m, math.Abs(v))
		}
	}
	return m
}

// RowClose reports whether a gradient entry got of type t is within
// RowTolIn(t) of big, its row's largest entry (RowMax, scaled), of want,
// or within 2 float32 ulps of it; below the smallest normal float32
// every value below it matches, and NaN and infinities are GradClose's.
func RowClose(t batch.DType, got float32, want, big float64) bool {
	g := float64(got)
	if ok, decided := special(g, want); decided {
		return ok
	}
	if math.Abs(want) < minNormal32 && math.Abs(g) < minNormal32 {
		return true
	}
	_, floor := roundRel(t)
	return math.Abs(g-want) <= max(RowTolIn(t)*big, 2*ulp32(want), floor)
}

// minNormal32 is the smallest normal float32, 2^-126.
const minNormal32 = 0x1p-126

// ulp32 returns the spacing of the float32 values around |v| (v finite and
// within the float32 range), that of the subnormals below minNormal32.
func ulp32(v float64) float64 {
	a := math.Abs(v)
	if a < minNormal32 {
		return 0x1p-149
	}
	_, e := math.Frexp(a) // a = f·2^e, f in [0.5, 1)
	return math.Ldexp(1, e-24)
}

// Seed returns the seed of a test's random inputs (see package seed):
// $XENT_SEED when it is set, else a fresh one, logged either way.
func Seed(t testing.TB) uint64 {
	t.Helper()
	return seed.New(t)
}

// Problem is a filled case.
type Problem struct {
	X       []float32 // Rows*Stride + slack, padding and slack hold guard
	Targets []int32
	Stride  int
	Ref     *Ref
	// E holds X in the case's element type: X itself for F32, else X's
	// values (rounded to the type, as the reference sees them) as bits.
	E Elems
}

// Matrix returns the logits in E from column off: the whole matrix at 0,
// a shard of cols columns at its first column.
func (p *Problem) Matrix(c Case, off, cols int) batch.Matrix {
	return p.E.Matrix(off, c.Rows, cols, p.Stride)
}

// Build fills c with a generator seeded from seed and evaluates the reference.
func (c Case) Build(seed uint64) *Problem { return c.BuildIn(seed, batch.F32) }

// BuildIn is Build with the logits in element type t: the values are
// rounded to t before the reference sees them.
func (c Case) BuildIn(seed uint64, typ batch.DType) *Problem {
	stride := c.Stride
	if stride == 0 {
		stride = c.Cols
	}
	rng := rand.New(rand.NewPCG(seed, uint64(c.Rows*7919+c.Cols)))
	x := make([]float32, c.Rows*stride+5)
	t := make([]int32, c.Rows)
	c.Fill(rng, x, t, c.Rows, c.Cols, stride)
	for i := range x {
		if i >= c.Rows*stride || i%stride >= c.Cols {
			x[i] = guard
		}
		x[i] = typ.Round(x[i])
	}
	return &Problem{X: x, Targets: t, Stride: stride, Ref: Reference(x, c.Rows, c.Cols, stride, t, c.Opts), E: ElemsOf(typ, x)}
}

// LossOptions returns the batch options of the case.
func (c Case) LossOptions(r batch.Reduction) []batch.Option {
	o := []batch.Option{batch.Reduce(r), batch.IgnoreIndex(int(c.Opts.Ignore)),
		batch.LabelSmoothing(c.Opts.Smoothing), batch.ZLoss(c.Opts.ZLoss), batch.Softcap(c.Opts.Softcap)}
	if c.Opts.Temperature != 0 {
		o = append(o, batch.Temperature(c.Opts.Temperature))
	}
	if c.Opts.Weights != nil {
		o = append(o, batch.Weights(c.Opts.Weights))
	}
	return o
}

// Run runs every case of the table on dev, in every element type it
// takes, and checks it against the float64 reference (of the values
// rounded to the type) within tol (relative to max(1, |ref|)) for losses
// and gradients.
func Run(t *testing.T, dev device.Device, tol float64) {
	t.Helper()
	RunTable(t, dev, Cases(), tol)
}

// RunTable is Run over the cases given (Cases, ConformanceCases).
func RunTable(t *testing.T, dev device.Device, cases []Case, tol float64) {
	t.Helper()
	seed := Seed(t)
	t.Logf("on %s (%s)", dev.Info().Name, dev.Info().Kernel)
	for _, typ := range dev.Caps().Types {
		for _, c := range cases {
			if Shortened(typ, c) {
				continue
			}
			t.Run(fmt.Sprintf("%v/%s/%dx%d", typ, c.Name, c.Rows, c.Cols), func(t *testing.T) {
				RunCaseIn(t, dev, c, typ, seed, tol)
			})
		}
	}
}

// Shortened reports whether a case is left out of a -short run (the race
// detector's, in CI) in type typ: the long rows (past 2048 columns) in
// the half-precision types, which the full run takes.
func Shortened(typ batch.DType, c Case) bool {
	return testing.Short() && typ != batch.F32 && c.Cols > 2048
}

// RunCase checks one case on dev with float32 logits (RunCaseIn).
func RunCase(t *testing.T, dev device.Device, c Case, seed uint64, tol float64) {
	RunCaseIn(t, dev, c, batch.F32, seed, tol)
}

// RunCaseIn checks one case on dev with logits of type typ: forward with
// every reduction, then the gradient into a separate buffer of typ
// (sum), in place (mean) and, with per-row upstream values (none), into
// a separate float32 buffer.
func RunCaseIn(t *testing.T, dev device.Device, c Case, typ batch.DType, seed uint64, tol float64) {
	ctx := context.Background()
	p := c.BuildIn(seed, typ)
	ref := p.Ref
	e0 := p.E.Clone()
	m := p.Matrix(c, 0, c.Cols)

	for _, red := range []batch.Reduction{batch.None, batch.Sum, batch.Mean} {
		opts := c.LossOptions(red)
		if red == batch.Sum {
			opts = append(opts, batch.KeepRows()) // each row's Correct too
		}
		l, err := batch.New(dev, opts...)
		require.NoError(t, err)
		res, err := l.Forward(ctx, m, p.Targets)
		require.NoError(t, err)
		requireSameBits(t, e0, p.E, "forward must not write the logits")
		checkStats(t, res, ref, c.lossTol(tol), tol)
		switch red {
		case batch.None:
			require.Len(t, res.Losses, c.Rows)
			for i := range res.Losses {
				require.True(t, ref.LossClose(i, float64(res.Losses[i]), c.lossTol(tol)), "row %d: loss %v, want %v", i, res.Losses[i], ref.Loss[i])
			}
			require.True(t, math.IsNaN(res.Loss))
		case batch.Sum:
			require.True(t, ref.SumClose(res.Loss, c.lossTol(tol), false), "sum %v, want %v", res.Loss, ref.Sum)
		case batch.Mean:
			require.True(t, ref.SumClose(res.Loss, c.lossTol(tol), true), "mean %v, want %v", res.Loss, ref.Mean())
		}
	}

	// LogSumExp of the raw logits (no options apply).
	if c.Rows > 0 {
		l, err := batch.New(dev)
		require.NoError(t, err)
		lse := make([]float32, c.Rows)
		require.NoError(t, l.LogSumExp(ctx, lse, m))
		requireSameBits(t, e0, p.E, "LogSumExp must not write the logits")
		checkLSE(t, lse, p, c, tol)
	}

	// Sum: gradient into a separate buffer of the logits' type with guard padding.
	l, err := batch.New(dev, c.LossOptions(batch.Sum)...)
	require.NoError(t, err)
	g := NewElems(typ, len(p.X), gradGuard)
	res, err := l.ForwardBackward(ctx, batch.GradInto(g.Matrix(0, c.Rows, c.Cols, p.Stride)), m, p.Targets, batch.One)
	require.NoError(t, err)
	requireSameBits(t, e0, p.E, "a separate gradient must not write the logits")
	checkStats(t, res, ref, c.lossTol(tol), tol)
	checkGrad(t, g, p, c, func(int) float64 { return 1 }, tol)

	// Mean, in place: every row scaled by 1/denominator.
	l, err = batch.New(dev, c.LossOptions(batch.Mean)...)
	require.NoError(t, err)
	res, err = l.ForwardBackward(ctx, batch.InPlace(m), m, p.Targets, batch.Scalar(2))
	require.NoError(t, err)
	checkStats(t, res, ref, c.lossTol(tol), tol)
	if ref.Denom != 0 && !math.IsInf(2/ref.Denom, 0) {
		checkGrad(t, p.E, p, c, func(int) float64 { return 2 / ref.Denom }, tol)
	}

	// None with per-row upstream values, into float32 whatever the logits' type.
	p.E.CopyFrom(e0)
	up := make([]float32, c.Rows)
	for i := range up {
		up[i] = float32(i%5) - 1.5
	}
	l, err = batch.New(dev, c.LossOptions(batch.None)...)
	require.NoError(t, err)
	g32 := NewElems(batch.F32, len(p.X), gradGuard)
	res, err = l.ForwardBackward(ctx, batch.GradInto(g32.Matrix(0, c.Rows, c.Cols, p.Stride)), m, p.Targets, batch.PerRow(up))
	require.NoError(t, err)
	requireSameBits(t, e0, p.E, "a separate gradient must not write the logits")
	checkStats(t, res, ref, c.lossTol(tol), tol)
	checkGrad(t, g32, p, c, func(i int) float64 { return float64(up[i]) }, tol)
}

// checkLSE checks lse, the log-sum-exp of p's raw rows (no options).
func checkLSE(t *testing.T, lse []float32, p *Problem, c Case, tol float64) {
	t.Helper()
	for i := range lse {
		z := make([]float64, c.Cols)
		for j := range z {
			z[j] = float64(p.X[i*p.Stride+j])
		}
		want := LogSumExp(z)
		require.True(t, Close(lse[i], want, tol), "row %d: lse %v, want %v", i, lse[i], want)
	}
}

func checkStats(t *testing.T, res batch.Result, ref *Ref, lossTol, tol float64) {
	t.Helper()
	require.Equal(t, int64(len(ref.Loss)), res.Stats.Rows)
	require.Equal(t, ref.Counted, res.Counted)
	require.InDelta(t, ref.Denom, res.Denom, 1e-9*math.Max(1, ref.Denom))
	require.True(t, ref.SumClose(res.Sum, lossTol, false), "sum %v, want %v", res.Sum, ref.Sum)
	require.True(t, CloseF(res.ZLoss, ref.ZLoss, tol), "z-loss %v, want %v", res.ZLoss, ref.ZLoss)
	var correct int64
	for i, ok := range ref.Correct {
		ok = ok && !math.IsNaN(ref.Loss[i])
		if ok {
			correct++
		}
		if res.CorrectRows != nil { // KeepRows: each row's
			require.Equal(t, ok, res.CorrectRows[i], "row %d: argmax == target", i)
		}
	}
	require.Equal(t, correct, res.Stats.Correct, "correct rows")
}

// checkGrad checks the gradient g of p's rows, each scaled by scale(i),
// element by element against the reference (GradCloseIn, for g's type),
// that the padding and the slack after the matrix hold their guards, and
// that each row sums as softmax gradients do (see checkRowSum).
func checkGrad(t *testing.T, g Elems, p *Problem, c Case, scale func(int) float64, tol float64) {
	pad := g.Type.Round(gradGuard)
	if g.base() == p.E.base() { // in place: the logits' padding
		pad = g.Type.Round(guard)
	}
	t.Helper()
	row := make([]float32, c.Cols)
	for i := range c.Rows {
		s := scale(i)
		big := RowMax(p.Ref.Grad[i]) * math.Abs(s)
		for j := range c.Cols {
			want, mag := s*p.Ref.Grad[i][j], s*p.Ref.Mag[i][j]
			got := g.At(i*p.Stride + j)
			row[j] = got
			if !GradCloseIn(g.Type, got, want, mag, tol, math.Abs(s)*p.Ref.UnderAt(i, j)) {
				require.Failf(t, "gradient", "%v grad[%d][%d] = %v, want %v (terms of size %.3g, scale %v, tol %g)", g.Type, i, j, got, want, mag, s, tol)
			}
			if !c.Opts.Computed() && !RowClose(g.Type, got, want, big) { // capped logits are computed, not exact inputs: GradClose's yardstick holds them
				require.Failf(t, "gradient", "%v grad[%d][%d] = %v, want %v: off by %.3g of the row's largest entry %.3g (allowed %g)", g.Type, i, j, got, want, math.Abs(float64(got)-want)/big, big, RowTolIn(g.Type))
			}
		}
		for j := c.Cols; j < p.Stride && i*p.Stride+j < g.Len(); j++ {
			require.Equal(t, pad, g.At(i*p.Stride+j), "padding of row %d written", i)
		}
		checkRowSum(t, row, g.Type, p, c, i, s, tol)
	}
	for k := c.Rows * p.Stride; k < g.Len(); k++ {
		require.Equal(t, pad, g.At(k), "slack after the matrix written")
	}
}

// checkRowSum checks a property of gradient row i that holds whatever the
// reference says: Σ_j dz_j = s·2λ·lse (0 without z-loss), because the
// softmax sums to 1 and the smoothing weights cancel (Σ_j (W·p_j - w_j) =
// 0); within tol times the size of the terms (Σ_j Ref.Mag). Ignored rows must be exactly zero. Rows with
// a soft cap (whose chain factor breaks the identity) and rows that are
// not finite are not checked.
func checkRowSum(t *testing.T, g []float32, typ batch.DType, p *Problem, c Case, i int, s, tol float64) {
	t.Helper()
	if int64(p.Targets[i]) == c.Opts.Ignore {
		for j, v := range g {
			if v != 0 {
				require.Failf(t, "ignored row", "row %d is ignored, its gradient at %d is %v, want 0", i, j, v)
			}
		}
		return
	}
	if c.Opts.Softcap > 0 || math.IsNaN(p.Ref.Loss[i]) || math.IsInf(p.Ref.Loss[i], 0) {
		return
	}
	var sum, mag float64
	for j, v := range g {
		sum += float64(v)
		mag += math.Abs(s) * p.Ref.Mag[i][j]
	}
	want := s * c.Opts.TempScale() * 2 * c.Opts.ZLoss * p.Ref.LSE[i]
	if math.IsInf(mag, 0) || math.IsNaN(mag) {
		return
	}
	rel, floor := roundRel(typ) // each entry rounded to the gradient's type
	require.LessOrEqual(t, math.Abs(sum-want), (tol+rel)*max(mag, math.Abs(want))+floor*float64(len(g)), "row %d: gradient sums to %v, want %v (terms of size %v)", i, sum, want, mag)
}

// requireSameF32 is requireSameBits for float32 slices.
func requireSameF32(t *testing.T, want, got []float32, msg string) {
	t.Helper()
	requireSameBits(t, Elems{F: want}, Elems{F: got}, msg)
}

// requireSameBits checks that two buffers hold the same bits (NaN included).
func requireSameBits(t *testing.T, want, got Elems, msg string) {
	t.Helper()
	require.Equal(t, want.Type, got.Type, msg)
	require.Equal(t, want.Len(), got.Len(), msg)
	for i := range want.Len() {
		if want.Bits(i) != got.Bits(i) {
			require.Failf(t, msg, "element %d: %v, was %v", i, got.At(i), want.At(i))
		}
	}
}

// RunResident checks the device-resident path of dev (batch.Upload) on a
// few cases: forward, the rank pass, fused forward+backward in place on
// the device, and the download of the gradient, twice in a row as a
// training loop does.
func RunResident(t *testing.T, dev device.Device, tol float64) {
	var cases []Case
	for _, c := range Cases() {
		if c.Name == "normal3/423x507" || c.Name == "everything" || c.Name == "edges" || c.Name == "V=50257" {
			cases = append(cases, c)
		}
	}
	RunResidentOf(t, dev, cases, tol)
}

// RunResidentOf is RunResident over the dense cases given.
func RunResidentOf(t *testing.T, dev device.Device, cases []Case, tol float64) {
	ctx := context.Background()
	seed := Seed(t)
	for _, typ := range dev.Caps().Types {
		for _, c := range cases {
			if c.Rows == 0 || c.Stride != 0 || Shortened(typ, c) {
				continue
			}
			t.Run(fmt.Sprintf("%v/%s", typ, c.Name), func(t *testing.T) { runResident(t, ctx, dev, c, typ, seed, tol) })
		}
	}
}

func runResident(t *testing.T, ctx context.Context, dev device.Device, c Case, typ batch.DType, seed uint64, tol float64) {
	p := c.BuildIn(seed, typ)
	dm, err := batch.Upload(ctx, dev, p.Matrix(c, 0, c.Cols))
	require.NoError(t, err)
	defer dm.Release()
	l, err := batch.New(dev, c.LossOptions(batch.Sum)...)
	require.NoError(t, err)
	for range 2 {
		res, err := l.Forward(ctx, dm.Matrix(), p.Targets)
		require.NoError(t, err)
		checkStats(t, res, p.Ref, c.lossTol(tol), tol)
	}
	lse := make([]float32, c.Rows)
	require.NoError(t, l.LogSumExp(ctx, lse, dm.Matrix()))
	checkLSE(t, lse, p, c, tol)
	// The rank pass of the matrix where it is, from its partials.
	ls, err := batch.New(dev, append(c.LossOptions(batch.Sum), batch.Shard(0, c.Cols))...)
	require.NoError(t, err)
	part := batch.NewPartials(c.Rows)
	require.NoError(t, ls.Partials(ctx, part, dm.Matrix(), p.Targets))
	ranks := make([]batch.Rank, c.Rows)
	require.NoError(t, ls.Ranks(ctx, ranks, dm.Matrix(), p.Targets, part))
	CheckRanks(t, ls, part, ranks, p.Ref, p.Targets, c.Opts.Ignore, c.lossTol(tol))
	res, err := l.ForwardBackward(ctx, dm.Grad(), dm.Matrix(), p.Targets, batch.One)
	require.NoError(t, err)
	checkStats(t, res, p.Ref, c.lossTol(tol), tol)
	g := NewElems(typ, len(p.X), gradGuard)
	gm := g.Matrix(0, c.Rows, c.Cols, p.Stride)
	require.NoError(t, dm.Download(ctx, gm))
	checkGrad(t, g, p, c, func(int) float64 { return 1 }, tol)
	_, err = l.ForwardBackward(ctx, batch.GradInto(gm), dm.Matrix(), p.Targets, batch.One)
	require.ErrorIs(t, err, batch.ErrBuffer, "a device matrix's gradient stays on the device")
	if typ != batch.F32 {
		g32 := NewElems(batch.F32, len(p.X), gradGuard)
		err = dm.Download(ctx, g32.Matrix(0, c.Rows, c.Cols, p.Stride))
		require.ErrorIs(t, err, batch.ErrOption, "a download is in the buffer's type")
	}

	// After Release: an error, never a panic, and nothing written.
	require.NoError(t, dm.Release())
	require.NoError(t, dm.Release(), "Release twice is fine")
	g0 := g.Clone()
	_, err = l.Forward(ctx, dm.Matrix(), p.Targets)
	require.ErrorIs(t, err, device.ErrReleased)
	_, err = l.ForwardBackward(ctx, dm.Grad(), dm.Matrix(), p.Targets, batch.One)
	require.ErrorIs(t, err, device.ErrReleased)
	require.ErrorIs(t, l.LogSumExp(ctx, make([]float32, c.Rows), dm.Matrix()), device.ErrReleased)
	require.ErrorIs(t, dm.Download(ctx, gm), device.ErrReleased)
	requireSameBits(t, g0, g, "a released matrix downloads nothing")
}

// RunShards splits the vocabulary of every case of the table into k
// shards of uneven widths (k = 1, 2, 3, 7, as the case's columns allow)
// and checks, on dev, that the shards' partials merged in a scrambled
// order give the reference's losses, lse and argmax under every
// reduction, and that each shard's Backward gives the reference gradient
// of its columns (into a separate buffer, and in place).
func RunShards(t *testing.T, dev device.Device, tol float64) { RunShardsOf(t, dev, Cases(), tol) }

// RunShardsOf is RunShards over the cases given.
func RunShardsOf(t *testing.T, dev device.Device, cases []Case, tol float64) {
	ctx := context.Background()
	seed := Seed(t)
	for _, typ := range dev.Caps().Types {
		for _, c := range cases {
			if c.Rows == 0 || Shortened(typ, c) {
				continue
			}
			for _, k := range []int{1, 2, 3, 7} {
				if k > c.Cols || typ != batch.F32 && k != 3 && k != 1 { // the half types: a whole shard and three
					continue
				}
				t.Run(fmt.Sprintf("%v/%s/%dx%d/shards=%d", typ, c.Name, c.Rows, c.Cols, k), func(t *testing.T) {
					runShards(t, ctx, dev, c, typ, k, seed, tol)
				})
			}
		}
	}
}

func runShards(t *testing.T, ctx context.Context, dev device.Device, c Case, typ batch.DType, k int, seed uint64, tol float64) {
	p := c.BuildIn(seed, typ)
	cut := shardCuts(c.Cols, k)
	shard := func(s int, red batch.Reduction) (*batch.Loss, batch.Matrix) {
		l, err := batch.New(dev, append(c.LossOptions(red), batch.Shard(cut[s], c.Cols))...)
		require.NoError(t, err)
		return l, p.Matrix(c, cut[s], cut[s+1]-cut[s])
	}
	part := batch.NewPartials(c.Rows)
	for _, s := range scramble(k) {
		l, m := shard(s, batch.Sum)
		ps := batch.NewPartials(c.Rows)
		require.NoError(t, l.Partials(ctx, ps, m, p.Targets))
		for i := range part {
			part[i].Merge(ps[i])
		}
	}
	l0, _ := shard(0, batch.Sum)
	cal, err := l0.Calibration(part, p.Targets)
	require.NoError(t, err)
	CheckCalibration(t, cal, p.Ref, p.Targets, c.Opts.Ignore, tol)
	ranks := make([]batch.Rank, c.Rows)
	for _, s := range scramble(k) {
		l, m := shard(s, batch.Sum)
		rs := make([]batch.Rank, c.Rows)
		require.NoError(t, l.Ranks(ctx, rs, m, p.Targets, part))
		for i := range ranks {
			ranks[i].Merge(rs[i])
		}
	}
	CheckRanks(t, l0, part, ranks, p.Ref, p.Targets, c.Opts.Ignore, c.lossTol(tol))
	for _, red := range []batch.Reduction{batch.None, batch.Sum, batch.Mean} {
		l, _ := shard(0, red)
		if red == batch.Sum { // each row's Correct too
			var err error
			l, err = batch.New(dev, append(c.LossOptions(red), batch.Shard(cut[0], c.Cols), batch.KeepRows())...)
			require.NoError(t, err)
		}
		res, err := l.Finish(part, p.Targets)
		require.NoError(t, err)
		checkStats(t, res, p.Ref, c.lossTol(tol), tol)
		if red == batch.None {
			for i := range res.Losses {
				require.True(t, p.Ref.LossClose(i, float64(res.Losses[i]), c.lossTol(tol)), "row %d: loss %v, want %v", i, res.Losses[i], p.Ref.Loss[i])
			}
		}
	}
	e0 := p.E.Clone()
	gts := []batch.DType{typ} // the logits' type, and float32 for half logits
	if typ != batch.F32 {
		gts = append(gts, batch.F32)
	}
	for _, gt := range gts {
		g := NewElems(gt, len(p.X), gradGuard)
		for s := range k {
			l, m := shard(s, batch.Sum)
			require.NoError(t, l.Backward(ctx, batch.GradInto(g.Matrix(cut[s], c.Rows, cut[s+1]-cut[s], p.Stride)), m, p.Targets, part, batch.One))
		}
		requireSameBits(t, e0, p.E, "Backward into a separate buffer must not write the logits")
		checkGrad(t, g, p, c, func(int) float64 { return 1 }, tol)
	}
	for s := range k { // in place, each shard over its own columns
		l, m := shard(s, batch.Sum)
		require.NoError(t, l.Backward(ctx, batch.InPlace(m), m, p.Targets, part, batch.One))
	}
	checkGrad(t, p.E, p, c, func(int) float64 { return 1 }, tol)
}

// shardCuts returns k+1 boundaries of uneven shards of n columns, each at
// least one column wide: shard s is about (s+1)/Σ of the whole.
func shardCuts(n, k int) []int {
	cut := make([]int, k+1)
	total := k * (k + 1) / 2
	acc := 0
	for s := range k {
		acc += s + 1
		cut[s+1] = max(cut[s]+1, n*acc/total)
	}
	cut[k] = n // n ≥ k keeps cut[k-1] < n
	return cut
}

// scramble returns 0..k-1 in an order that is not the columns' (the merge
// must not depend on it).
func scramble(k int) []int {
	order := make([]int, k)
	for i := range order {
		order[i] = (i*3 + 1) % k
	}
	if k > 1 && (3%k == 0) { // 3 does not generate Z_k: reversed instead
		for i := range order {
			order[i] = k - 1 - i
		}
	}
	return order
}

// CheckCalibration checks a device's calibration bins against the
// reference's: the same rows without a confidence, and in each bin the
// same rows and correct rows, their confidences' sum within tol relative
// (a confidence is 1/Σ exp, computed to a few ulps); a row within 1e-5 of
// a bin's edge may lie in the bin beside it, moving its row, its
// confidence and its correct count there, and the ECE by at most 2/N per
// such row.
func CheckCalibration(t *testing.T, got batch.Calibration, ref *Ref, targets []int32, ignore int64, tol float64) {
	t.Helper()
	want, edge := ref.Calibration(targets, ignore, 1e-5)
	require.Equal(t, want.NaN, got.NaN, "rows without a confidence")
	require.Equal(t, want.Binned(), got.Binned(), "rows binned")
	if edge == 0 {
		require.Equal(t, want.Rows, got.Rows, "rows in each bin")
		require.Equal(t, want.Correct, got.Correct, "correct rows in each bin")
		for k := range want.Conf {
			require.InDelta(t, want.Conf[k], got.Conf[k], tol*max(1, want.Conf[k]), "bin %d's confidence", k)
		}
	}
	n := float64(max(want.Binned(), 1))
	e, g := want.ECE(), got.ECE()
	if math.IsNaN(e) {
		require.True(t, math.IsNaN(g), "ECE %v, want NaN", g)
		return
	}
	require.InDelta(t, e, g, tol+2*float64(edge)/n, "ECE (%d rows at a bin's edge)", edge)
}

// CheckRanks checks the ranks of rows (merged over every shard) against
// the reference: each row's count of greater logits (within the
// reference's Near where the logits are computed) and entropy (within
// tol relative, or 1e-12 of log C, whichever is more), and the RankStats
// l sums them into.
func CheckRanks(t *testing.T, l interface {
	RankStats(ks []int, part []batch.Partial, ranks []batch.Rank, targets []int32) (batch.RankStats, error)
}, part []batch.Partial, ranks []batch.Rank, ref *Ref, targets []int32, ignore int64, tol float64) {
	t.Helper()
	ks := []int{1, 2, 5}
	want, _ := batch.NewRankStats(ks)
	for i, r := range ranks {
		if int64(targets[i]) == ignore {
			continue
		}
		want.Counted++
		nan := math.IsNaN(ref.Loss[i])
		g := ref.Greater[i]
		if !nan {
			require.LessOrEqual(t, math.Abs(float64(r.Greater-g)), float64(ref.Near[i]), "row %d: %d logits greater than the target's, want %d (%d near it)", i, r.Greater, g, ref.Near[i])
			h, wh := r.Entropy(&part[i]), ref.Entropy[i]
			require.True(t, math.Abs(h-wh) <= max(tol*math.Abs(wh), 1e-12*math.Log(float64(len(ref.Grad[i])))+1e-300), "row %d: entropy %v, want %v", i, h, wh)
			for j, k := range ks {
				if g < int64(k) {
					want.TopK[j]++
				}
			}
			want.RR += 1 / float64(1+g)
			want.Entropy += wh
		} else {
			want.Entropy = math.NaN()
		}
	}
	got, err := l.RankStats(ks, part, ranks, targets)
	require.NoError(t, err)
	require.Equal(t, want.Counted, got.Counted)
	near := int64(0)
	for i := range ranks {
		if int64(targets[i]) != ignore {
			near += ref.Near[i]
		}
	}
	for j := range ks {
		require.LessOrEqual(t, math.Abs(float64(got.TopK[j]-want.TopK[j])), float64(near), "top-%d rows", ks[j])
	}
	if near == 0 {
		require.InDelta(t, want.RR, got.RR, 1e-12*max(1, want.RR), "Σ reciprocal rank")
	}
	if math.IsNaN(want.Entropy) {
		require.True(t, math.IsNaN(got.Entropy), "Σ entropy %v, want NaN (a NaN row)", got.Entropy)
	} else {
		require.InDelta(t, want.Entropy, got.Entropy, tol*max(1, math.Abs(want.Entropy)), "Σ entropy")
	}
}
