package spec

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/batch"
	"github.com/xentlab/xent/ce"
	"github.com/xentlab/xent/device"
)

// LinearProblem is a fused linear cross-entropy: logits z = H·Wᵀ + Bias
// of H (N × D, row stride SH) and W (V × D, row stride SW).
type LinearProblem struct {
	N, D, V int
	SH, SW  int
	H, W    []float32
	Bias    []float32 // nil: none
	Targets []int32
	Opts    Opts
	// HE and WE hold H and W in the element type In set (F32 by
	// default: nil).
	HE, WE *Elems
}

// In rounds H and W to type t (their values, as the reference sees them)
// and makes HM and WM matrices of that type.
func (p *LinearProblem) In(t batch.DType) *LinearProblem {
	for k := range p.H {
		p.H[k] = t.Round(p.H[k])
	}
	for k := range p.W {
		p.W[k] = t.Round(p.W[k])
	}
	he, we := ElemsOf(t, p.H), ElemsOf(t, p.W)
	p.HE, p.WE = &he, &we
	return p
}

// NewLinearProblem draws H and W with entries N(0, sd²/D) and N(0, 1)
// (logits of about sd), a bias when bias is set, targets (every ignore-th
// row ignored when ignore > 0), and strides of D + pad.
func NewLinearProblem(r *rand.Rand, n, d, v int, sd float64, bias bool, ignore, pad int, o Opts) *LinearProblem {
	p := &LinearProblem{N: n, D: d, V: v, SH: d + pad, SW: d + pad, Opts: o}
	p.H = make([]float32, n*p.SH)
	p.W = make([]float32, v*p.SW)
	for k := range p.H {
		p.H[k] = float32(r.NormFloat64() * sd / math.Sqrt(float64(d)))
	}
	for k := range p.W {
		p.W[k] = float32(r.NormFloat64())
	}
	if bias {
		p.Bias = make([]float32, v)
		for k := range p.Bias {
			p.Bias[k] = float32(r.NormFloat64())
		}
	}
	p.Targets = make([]int32, n)
	for i := range p.Targets {
		p.Targets[i] = int32(r.IntN(v))
		if ignore > 0 && i%ignore == ignore-1 {
			p.Targets[i] = int32(o.Ignore)
		}
	}
	return p
}

// HM and WM are H and W as batch matrices (of the type In set).
func (p *LinearProblem) HM() batch.Matrix {
	if p.HE != nil {
		return p.HE.Matrix(0, p.N, p.D, p.SH)
	}
	return batch.Matrix{Data: p.H, Rows: p.N, Cols: p.D, Stride: p.SH}
}

func (p *LinearProblem) WM() batch.Matrix {
	if p.WE != nil {
		return p.WE.Matrix(0, p.V, p.D, p.SW)
	}
	return batch.Matrix{Data: p.W, Rows: p.V, Cols: p.D, Stride: p.SW}
}

// LinearRef is the float64 reference of a LinearProblem: Ref on the
// float64 logits, and the size of the logits' float32 error.
type LinearRef struct {
	*Ref
	P *LinearProblem
	// ZErr[i] bounds the float32 error of row i's logits: (D+2)·2⁻²⁴·
	// max_j (Σ_d |h_id·w_jd| + |b_j|), the product's rounding.
	ZErr []float64
}

// Reference evaluates p in float64.
func (p *LinearProblem) Reference() *LinearRef {
	lr := &LinearRef{P: p, ZErr: make([]float64, p.N)}
	lr.Ref = reference(p.N, p.V, func(i int, z []float64) {
		zmax := 0.0
		for j := range z {
			s, a := 0.0, 0.0
			if p.Bias != nil {
				s, a = float64(p.Bias[j]), math.Abs(float64(p.Bias[j]))
			}
			for d := range p.D {
				t := float64(p.H[i*p.SH+d]) * float64(p.W[j*p.SW+d])
				s += t
				a += math.Abs(t)
			}
			z[j] = s
			zmax = max(zmax, a)
		}
		lr.ZErr[i] = float64(p.D+2) * 0x1p-24 * zmax
	}, func(i int, zt float64) float64 { return 2*lr.ZErr[i] + 1e-6*max(1, math.Abs(zt)) }, p.Targets, p.Opts)
	return lr
}

// lossTol is the allowance for row i's loss: tol relative, plus what the
// float32 logits' error moves it by (the loss moves by at most twice the
// largest logit error, times the weights, and z-loss's 2λ|lse|).
func (lr *LinearRef) lossTol(i int, tol float64) float64 {
	wmax := 1.0
	for _, w := range lr.P.Opts.Weights {
		wmax = max(wmax, float64(w))
	}
	return tol*math.Max(1, math.Abs(lr.Loss[i])) + 4*lr.ZErr[i]*wmax*(1+2*lr.P.Opts.ZLoss*math.Abs(lr.LSE[i]))
}

// CheckLosses checks per-row losses (ignored rows 0).
func (lr *LinearRef) CheckLosses(t *testing.T, got []float32, tol float64) {
	t.Helper()
	require.Len(t, got, lr.P.N)
	for i, g := range got {
		want := lr.Loss[i]
		if int64(lr.P.Targets[i]) == lr.P.Opts.Ignore {
			require.Zero(t, g, "ignored row %d", i)
			continue
		}
		if math.IsNaN(want) || math.IsInf(want, 0) {
			require.True(t, Close(g, want, tol), "row %d: loss %v, want %v", i, g, want)
			continue
		}
		require.True(t, math.Abs(float64(g)-want) <= lr.lossTol(i, tol), "row %d: loss %v, want %v", i, g, want)
	}
}

// CheckLSE checks per-row log-sum-exps (ignored rows 0): within tol
// relative and twice the logits' error.
func (lr *LinearRef) CheckLSE(t *testing.T, got []float32, tol float64) {
	t.Helper()
	require.Len(t, got, lr.P.N)
	for i, g := range got {
		if int64(lr.P.Targets[i]) == lr.P.Opts.Ignore {
			require.Zero(t, g, "ignored row %d", i)
			continue
		}
		want := lr.LSE[i]
		require.True(t, math.Abs(float64(g)-want) <= tol*math.Max(1, math.Abs(want))+2*lr.ZErr[i], "row %d: lse %v, want %v", i, g, want)
	}
}

// CheckSum checks a sum of row losses (res.Sum).
func (lr *LinearRef) CheckSum(t *testing.T, got float64, tol float64) {
	t.Helper()
	allow := 0.0
	for i := range lr.P.N {
		if int64(lr.P.Targets[i]) != lr.P.Opts.Ignore {
			allow += lr.lossTol(i, tol)
		}
	}
	require.True(t, math.Abs(got-lr.Sum) <= allow+tol*math.Abs(lr.Sum), "sum %v, want %v", got, lr.Sum)
}

// LinearGrads are expected gradients: each entry's value, the size of
// its terms and its allowance factor (see CheckGrads).
type LinearGrads struct {
	DH, DW, DB          []float64 // dense: N × D, V × D, V
	DHMag, DWMag, DBMag []float64
	DHTol               []float64 // per row
	WTol                float64
	// DHSlack, DWSlack and DBSlack, when set, widen each allowance by an
	// absolute amount (gradient filtering's bound).
	DHSlack, DWSlack, DBSlack []float64
}

// slack returns s[k], 0 without s.
func slack(s []float64, k int) float64 {
	if s == nil {
		return 0
	}
	return s[k]
}

// Grads returns the gradients of Σ_i s_i·loss_i: dH, and dW and dBias
// added to w0 and b0 (their values before the call, dense V × D and V).
// An entry is a sum of K terms G_ij·x; its allowance is (tol + 2·ZErr +
// K·2⁻²⁴) of the sum of the terms' sizes (Ref.Mag·|x|).
func (lr *LinearRef) Grads(w0, b0 []float32, s []float64, tol float64) *LinearGrads {
	p := lr.P
	N, D, V := p.N, p.D, p.V
	e := &LinearGrads{DH: make([]float64, N*D), DHMag: make([]float64, N*D), DHTol: make([]float64, N),
		DW: make([]float64, V*D), DWMag: make([]float64, V*D), DB: make([]float64, V), DBMag: make([]float64, V)}
	zerr := 0.0
	for i := range N {
		if int64(p.Targets[i]) == p.Opts.Ignore {
			continue
		}
		zerr = max(zerr, lr.ZErr[i])
		e.DHTol[i] = tol + 2*lr.ZErr[i] + float64(V+2)*0x1p-24
		for j := range V {
			gs, ms := s[i]*lr.Grad[i][j], math.Abs(s[i]*lr.Mag[i][j])
			e.DB[j] += gs
			e.DBMag[j] += ms
			for d := range D {
				h, w := float64(p.H[i*p.SH+d]), float64(p.W[j*p.SW+d])
				e.DH[i*D+d] += gs * w
				e.DHMag[i*D+d] += ms * math.Abs(w)
				e.DW[j*D+d] += gs * h
				e.DWMag[j*D+d] += ms * math.Abs(h)
			}
		}
	}
	for k := range e.DW {
		e.DW[k] += float64(w0[k])
		e.DWMag[k] += math.Abs(float64(w0[k]))
	}
	for j := range e.DB {
		if b0 != nil {
			e.DB[j] += float64(b0[j])
			e.DBMag[j] += math.Abs(float64(b0[j]))
		}
	}
	e.WTol = tol + 2*zerr + float64(N+2)*0x1p-24
	return e
}

// Check checks the gradients g against e (dH, dW and dBias where g has
// them).
func (e *LinearGrads) Check(t *testing.T, g batch.LinearGrads, N, D, V int) {
	t.Helper()
	for i := range N {
		for d := range D {
			got := g.H.Matrix().Data[i*g.H.Matrix().Stride+d]
			if k := i*D + d; g.H.Matrix().Data != nil && !GradClose(got, e.DH[k], e.DHMag[k], e.DHTol[i]) && !(math.Abs(float64(got)-e.DH[k]) <= e.DHTol[i]*e.DHMag[k]+slack(e.DHSlack, k)) {
				require.Failf(t, "dH", "dH[%d][%d] = %v, want %v (terms of size %.3g)", i, d, got, e.DH[k], e.DHMag[k])
			}
		}
	}
	for j := range V {
		for d := range D {
			got := g.W.Matrix().Data[j*g.W.Matrix().Stride+d]
			if k := j*D + d; g.W.Matrix().Data != nil && !GradClose(got, e.DW[k], e.DWMag[k], e.WTol) && !(math.Abs(float64(got)-e.DW[k]) <= e.WTol*e.DWMag[k]+slack(e.DWSlack, k)) {
				require.Failf(t, "dW", "dW[%d][%d] = %v, want %v (terms of size %.3g)", j, d, got, e.DW[k], e.DWMag[k])
			}
		}
		if g.Bias != nil && !GradClose(g.Bias[j], e.DB[j], e.DBMag[j], e.WTol) && !(math.Abs(float64(g.Bias[j])-e.DB[j]) <= e.WTol*e.DBMag[j]+slack(e.DBSlack, j)) {
			require.Failf(t, "db", "db[%d] = %v, want %v (terms of size %.3g)", j, g.Bias[j], e.DB[j], e.DBMag[j])
		}
	}
}

// torch replaces e's gradients by PyTorch's dh, dw and db (nil: none),
// which must agree with them within rel of the sizes of their terms: the
// check then compares with PyTorch within the reference's allowances.
func (e *LinearGrads) torch(t *testing.T, dh, dw, db []float64, rel float64) {
	t.Helper()
	for _, g := range []struct {
		name           string
		ref, torch, mg []float64
	}{{"dH", e.DH, dh, e.DHMag}, {"dW", e.DW, dw, e.DWMag}, {"db", e.DB, db, e.DBMag}} {
		if g.torch == nil {
			continue
		}
		require.Len(t, g.torch, len(g.ref), g.name)
		for k := range g.ref {
			require.InDelta(t, g.torch[k], g.ref[k], rel*g.mg[k]+1e-300, "reference %s[%d]", g.name, k)
		}
		copy(g.ref, g.torch)
	}
}

// dense returns the V × D values of a strided W-shaped matrix.
func dense(m batch.Matrix) []float32 {
	d := make([]float32, 0, m.Rows*m.Cols)
	for i := range m.Rows {
		d = append(d, m.Data[i*m.Stride:i*m.Stride+m.Cols]...)
	}
	return d
}

// LinearOptions returns the batch options of o with reduction r.
func LinearOptions(o Opts, r batch.Reduction, more ...batch.Option) []batch.Option {
	c := Case{Opts: o}
	return append(c.LossOptions(r), more...)
}

// randomGrads returns gradients shaped as p's inputs (strided like them),
// dW and dBias prefilled with random values (to check they are added to),
// and copies of those values.
func randomGrads(r *rand.Rand, p *LinearProblem) (g batch.LinearGrads, w0, b0 []float32) {
	g.H = batch.GradInto(batch.Matrix{Data: make([]float32, len(p.H)), Rows: p.N, Cols: p.D, Stride: p.SH})
	for k := range g.H.Matrix().Data {
		g.H.Matrix().Data[k] = float32(math.NaN()) // every entry must be written
	}
	g.W = batch.GradInto(batch.Matrix{Data: make([]float32, len(p.W)), Rows: p.V, Cols: p.D, Stride: p.SW})
	for k := range g.W.Matrix().Data {
		g.W.Matrix().Data[k] = float32(r.NormFloat64())
	}
	w0 = dense(g.W.Matrix())
	if p.Bias != nil {
		g.Bias = make([]float32, p.V)
		for k := range g.Bias {
			g.Bias[k] = float32(r.NormFloat64())
		}
		b0 = append([]float32(nil), g.Bias...)
	}
	return g, w0, b0
}

// linearCase is one shape and option set of RunLinear.
type linearCase struct {
	name      string
	n, d, v   int
	sd        float64
	bias      bool
	ignore    int
	pad       int
	opts      Opts
	budgetsOK bool // run the small budgets too
}

// classWeights returns v class weights (j mod m + off)/q: a pattern with
// zeros when off is 0.
func classWeights(v, m, off int, q float32) []float32 {
	ws := make([]float32, v)
	for j := range ws {
		ws[j] = float32(j%m+off) / q
	}
	return ws
}

func linearCases() []linearCase {
	ii := Opts{Ignore: DefaultIgnore}
	w := func(v int) []float32 { return classWeights(v, 7, 0, 3) }
	return []linearCase{
		{"1x1x1", 1, 1, 1, 1, true, 0, 0, ii, true},
		{"plain", 37, 1, 5, 2, false, 5, 0, ii, true},
		{"plain", 7, 33, 4099, 3, true, 3, 2, ii, true},
		{"chunks", 130, 8, 1000, 3, true, 7, 1, ii, true},
		{"wide", 150, 8, 2100, 3, true, 9, 1, ii, true},
		{"smoothing+weights", 65, 17, 300, 3, false, 4, 0, Opts{Ignore: DefaultIgnore, Smoothing: 0.1, Weights: w(300)}, true},
		{"zloss", 23, 9, 257, 3, true, 0, 0, Opts{Ignore: DefaultIgnore, ZLoss: 1e-3}, true},
		{"softcap", 29, 12, 301, 12, true, 6, 0, Opts{Ignore: DefaultIgnore, Softcap: 5}, true},
		{"all", 41, 11, 517, 8, true, 3, 3, Opts{Ignore: 5, Smoothing: 0.05, ZLoss: 1e-4, Softcap: 6, Weights: w(517)}, true},
		{"temperature", 31, 10, 257, 5, true, 2, 0, Opts{Ignore: DefaultIgnore, Temperature: 0.6, Smoothing: 0.1}, true},
		{"temperature+softcap", 19, 13, 301, 4, false, 3, 1, Opts{Ignore: DefaultIgnore, Temperature: 1.8, Softcap: 5, ZLoss: 1e-3}, true},
		{"all-ignored", 6, 4, 9, 1, true, 1, 0, ii, true},
	}
}

// RunLinear checks dev's fused linear cross-entropy against the float64
// reference: every case with the default budget (a chunk of rows over the
// whole vocabulary) and budgets small enough for tiles of the vocabulary,
// Forward with every reduction and ForwardBackward with each upstream.
func RunLinear(t *testing.T, dev device.Device, tol float64) {
	seed := Seed(t)
	r := rand.New(rand.NewPCG(seed, 15))
	ctx := context.Background()
	for _, typ := range dev.Caps().Types {
		for _, c := range linearCases() {
			if typ != batch.F32 && c.name != "plain" && c.name != "chunks" && c.name != "all" {
				continue // H and W in the half types: a few cases
			}
			p := NewLinearProblem(r, c.n, c.d, c.v, c.sd, c.bias, c.ignore, c.pad, c.opts).In(typ)
			runLinearCase(t, ctx, dev, r, c, typ, p, tol)
		}
	}
}

// RunLinearSmall is RunLinear on small problems with the default budget
// only, every option in every element type, and on a device that holds
// matrices the rank pass with W held there: an interpreter's (Oclgrind's)
// check of a device's own linear kernels, in seconds. The sizes leave
// partial tiles of rows, classes and D.
func RunLinearSmall(t *testing.T, dev device.Device, tol float64) {
	seed := Seed(t)
	r := rand.New(rand.NewPCG(seed, 16))
	ctx := context.Background()
	w := func(v int) []float32 { return classWeights(v, 7, 0, 3) }
	cases := []linearCase{
		{"plain", 19, 9, 37, 3, true, 3, 2, Opts{Ignore: DefaultIgnore}, false},
		{"all", 21, 11, 45, 8, true, 3, 1, Opts{Ignore: 5, Smoothing: 0.05, ZLoss: 1e-4, Softcap: 6, Weights: w(45)}, false},
		{"temperature+softcap", 9, 13, 40, 4, false, 2, 0, Opts{Ignore: DefaultIgnore, Temperature: 1.8, Softcap: 5, ZLoss: 1e-3}, false},
	}
	for _, typ := range dev.Caps().Types {
		for _, c := range cases {
			p := NewLinearProblem(r, c.n, c.d, c.v, c.sd, c.bias, c.ignore, c.pad, c.opts).In(typ)
			runLinearCase(t, ctx, dev, r, c, typ, p, tol)
			if !dev.Caps().Resident || !dev.Caps().Linear {
				continue
			}
			t.Run(fmt.Sprintf("%v/%s/ranks", typ, c.name), func(t *testing.T) {
				wd, err := batch.Upload(ctx, dev, p.WM())
				require.NoError(t, err)
				defer wd.Release()
				checkLinearRanks(t, dev, p, p.HM(), wd.Matrix(), 0)
			})
		}
	}
}

func runLinearCase(t *testing.T, ctx context.Context, dev device.Device, r *rand.Rand, c linearCase, typ batch.DType, p *LinearProblem, tol float64) {
	ref := p.Reference()
	budgets := []int{0}
	if c.budgetsOK {
		budgets = append(budgets, 4*c.v*3+4)
		// Tiles of one row and 16 classes: a product and a host sync each,
		// thousands a call, on the cases of at most 2^15 logits (the
		// chunks case's 130000 took 52 of the OpenCL suite's 87 s on PoCL,
		// for tiles the other cases have). -short (a GPU's suite within
		// its lease, and the race detector's) samples them on the small
		// vocabularies.
		if (!testing.Short() || c.v <= 5) && c.n*c.v <= 1<<15 {
			budgets = append(budgets, 64)
		}
		// Every row in tiles of half the vocabulary, where a pass without
		// gradients takes tiles that wide (tiles.WidePlanOf).
		if c.v > 1024 {
			budgets = append(budgets, 4*c.n*(c.v/2+1))
		}
	}
	for _, budget := range budgets {
		t.Run(fmt.Sprintf("%v/%s/%dx%dx%d/budget=%d", typ, c.name, c.n, c.d, c.v, budget), func(t *testing.T) {
			up := make([]float32, p.N)
			for i := range up {
				up[i] = float32(r.Float64()*2 - 1)
			}
			for _, red := range []batch.Reduction{batch.None, batch.Sum, batch.Mean} {
				l, err := batch.NewLinear(dev, LinearOptions(c.opts, red, batch.Budget(budget), batch.KeepRows())...)
				require.NoError(t, err)
				res, err := l.Forward(ctx, p.HM(), p.WM(), p.Bias, p.Targets)
				require.NoError(t, err)
				ref.CheckLosses(t, res.Losses, tol)
				ref.CheckLSE(t, res.LSE, tol)
				ref.CheckSum(t, res.Sum, tol)
				require.Equal(t, ref.Counted, res.Counted)
				correct := int64(0)
				for i, ok := range ref.Correct {
					if ok && int64(p.Targets[i]) != p.Opts.Ignore {
						correct++
					}
				}
				// A near tie of the argmax may go either way in float32.
				require.InDelta(t, correct, res.Correct, float64(max(1, p.N/10)), "correct")

				g, w0, b0 := randomGrads(r, p)
				s := make([]float64, p.N)
				var u batch.Upstream
				switch red {
				case batch.None:
					u = batch.PerRow(up)
					for i := range s {
						s[i] = float64(up[i])
					}
				case batch.Sum:
					u = batch.One
					for i := range s {
						s[i] = 1
					}
				case batch.Mean:
					u = batch.Scalar(0.5)
					for i := range s {
						s[i] = 0.5 / ref.Denom
					}
				}
				res2, err := l.ForwardBackward(ctx, g, p.HM(), p.WM(), p.Bias, p.Targets, u)
				require.NoError(t, err)
				// Forward's losses are checked above; ForwardBackward's too,
				// not bit for bit against them: a group's split follows the
				// measured speeds call by call, and a pass without
				// gradients may run in wider tiles (tiles.WidePlanOf: the
				// CPU with OpenBLAS, OpenCL's Tuning.Wide), its products and
				// sums in another order.
				ref.CheckLosses(t, res2.Losses, tol)
				ref.Grads(w0, b0, s, tol).Check(t, g, p.N, p.D, p.V)
			}
		})
	}
}

// RunLinearGolden checks dev against the PyTorch values written by
// testdata/golden/linear/gen.py (F.linear + the loss, float64): per-row
// losses, the sum and the mean, and dH, dW, db of the sum, with the
// default budget and one that makes tiles of the vocabulary. The
// allowances are the reference's (CheckLosses, CheckGrads), around
// PyTorch's values.
func RunLinearGolden(t *testing.T, dev device.Device, tol float64) {
	type lcase struct {
		goldenCase
		N, D, V int
		Bias    bool
	}
	var doc struct {
		Torch string  `json:"torch"`
		Cases []lcase `json:"cases"`
	}
	readJSON(t, "linear/cases.json", &doc)
	require.NotEmpty(t, doc.Cases)
	t.Logf("golden values from torch %s", doc.Torch)
	ctx := context.Background()
	for _, gc := range doc.Cases {
		for _, budget := range []int{0, 4 * 3 * gc.V} {
			t.Run(fmt.Sprintf("%s/budget=%d", gc.Name, budget), func(t *testing.T) {
				file := func(s string) string { return "linear/" + gc.Name + "_" + s + ".npy" }
				p := &LinearProblem{N: gc.N, D: gc.D, V: gc.V, SH: gc.D, SW: gc.D, Opts: gc.opts(t, file("weights"))}
				var tg []int64
				var rows, dh, dw, db []float64
				readNpy(t, file("h"), &p.H)
				readNpy(t, file("w"), &p.W)
				readNpy(t, file("targets"), &tg)
				readNpy(t, file("rows"), &rows)
				readNpy(t, file("dh"), &dh)
				readNpy(t, file("dw"), &dw)
				if gc.Bias {
					readNpy(t, file("b"), &p.Bias)
					readNpy(t, file("db"), &db)
				}
				p.Targets = make([]int32, len(tg))
				for i, v := range tg {
					p.Targets[i] = int32(v)
				}
				ref := p.Reference()
				// The comparison is with PyTorch's values; the reference
				// gives the allowances, and must agree with PyTorch itself.
				for i := range rows {
					require.InDelta(t, rows[i], ref.Loss[i], 1e-9*max(1, math.Abs(rows[i])), "reference row %d", i)
					ref.Loss[i] = rows[i]
				}
				ref.Sum = orNaN(gc.Sum)
				opts := LinearOptions(p.Opts, batch.Sum, batch.Budget(budget), batch.KeepRows())
				l, err := batch.NewLinear(dev, opts...)
				require.NoError(t, err)
				g := batch.LinearGrads{
					H: batch.NewGrad(make([]float32, gc.N*gc.D), gc.N, gc.D),
					W: batch.NewGrad(make([]float32, gc.V*gc.D), gc.V, gc.D),
				}
				if gc.Bias {
					g.Bias = make([]float32, gc.V)
				}
				res, err := l.ForwardBackward(ctx, g, p.HM(), p.WM(), p.Bias, p.Targets, batch.One)
				require.NoError(t, err)
				ref.CheckLosses(t, res.Losses, tol)
				ref.CheckSum(t, res.Sum, tol)
				// The reference's gradients, replaced by PyTorch's: the check
				// then compares with PyTorch within the reference's allowances.
				s := make([]float64, gc.N)
				for i := range s {
					s[i] = 1
				}
				e := ref.Grads(make([]float32, gc.V*gc.D), nil, s, tol)
				e.torch(t, dh, dw, db, 1e-9)
				e.Check(t, g, gc.N, gc.D, gc.V)

				mean, err := batch.NewLinear(dev, LinearOptions(p.Opts, batch.Mean, batch.Budget(budget))...)
				require.NoError(t, err)
				res, err = mean.Forward(ctx, p.HM(), p.WM(), p.Bias, p.Targets)
				require.NoError(t, err)
				want := orNaN(gc.Mean)
				require.True(t, CloseF(res.Loss, want, tol+4*maxOf(ref.ZErr)), "mean %v, torch %v", res.Loss, want)
			})
		}
	}
}

func maxOf(x []float64) float64 {
	m := 0.0
	for _, v := range x {
		m = max(m, v)
	}
	return m
}

// RunLinearShards splits W's classes into 1, 2, 3 and 7 uneven shards, as
// devices or machines holding parts of a classifier would: each shard's
// Partials, merged, give the unsplit loss through Finish, and each
// shard's Backward its rows of dW and dBias and its part of dH, which add
// up to the unsplit gradients (checked against the float64 reference).
func RunLinearShards(t *testing.T, dev device.Device, tol float64) {
	seed := Seed(t)
	r := rand.New(rand.NewPCG(seed, 16))
	ctx := context.Background()
	w := classWeights(611, 5, 1, 4)
	o := Opts{Ignore: DefaultIgnore, Smoothing: 0.1, ZLoss: 1e-4, Softcap: 7, Weights: w}
	p := NewLinearProblem(r, 45, 13, 611, 6, true, 4, 1, o)
	ref := p.Reference()
	for _, k := range []int{1, 2, 3, 7} {
		for _, budget := range []int{0, 4 * 5 * 40} {
			t.Run(fmt.Sprintf("shards=%d/budget=%d", k, budget), func(t *testing.T) {
				cuts := shardCuts(p.V, k)
				part := batch.NewPartials(p.N)
				lins := make([]*batch.Linear, k)
				wOf := func(s int) batch.Matrix {
					m := p.WM()
					m.Data, m.Rows = m.Data[cuts[s]*m.Stride:], cuts[s+1]-cuts[s]
					return m
				}
				for s := range k {
					l, err := batch.NewLinear(dev, LinearOptions(o, batch.Mean, batch.Shard(cuts[s], p.V), batch.Budget(budget))...)
					require.NoError(t, err)
					lins[s] = l
					sp := make([]batch.Partial, p.N)
					require.NoError(t, l.Partials(ctx, sp, p.HM(), wOf(s), p.Bias[cuts[s]:cuts[s+1]], p.Targets))
					for i := range part {
						part[i].Merge(sp[i])
					}
				}
				res, err := lins[0].Finish(part, p.Targets)
				require.NoError(t, err)
				ref.CheckSum(t, res.Sum, tol)
				cal, err := lins[0].Calibration(part, p.Targets)
				require.NoError(t, err)
				CheckCalibration(t, cal, ref.Ref, p.Targets, o.Ignore, 1e-4) // the logits are float32 products
				ranks := make([]batch.Rank, p.N)
				for s := range k {
					rs := make([]batch.Rank, p.N)
					require.NoError(t, lins[s].Ranks(ctx, rs, p.HM(), wOf(s), p.Bias[cuts[s]:cuts[s+1]], p.Targets, part))
					for i := range ranks {
						ranks[i].Merge(rs[i])
					}
				}
				CheckRanks(t, lins[0], part, ranks, ref.Ref, p.Targets, o.Ignore, 1e-4)

				g, w0, b0 := randomGrads(r, p)
				clear(g.H.Matrix().Data) // the shards add their parts
				for s := range k {
					gs := g
					ws := g.W.Matrix()
					ws.Data, ws.Rows = ws.Data[cuts[s]*ws.Stride:], cuts[s+1]-cuts[s]
					gs.W = batch.GradInto(ws)
					gs.Bias = g.Bias[cuts[s]:cuts[s+1]]
					require.NoError(t, lins[s].Backward(ctx, gs, p.HM(), wOf(s), p.Bias[cuts[s]:cuts[s+1]], p.Targets, part, batch.One))
				}
				sc := make([]float64, p.N)
				for i := range sc {
					sc[i] = 1 / ref.Denom
				}
				ref.Grads(w0, b0, sc, tol).Check(t, g, p.N, p.D, p.V)
			})
		}
	}
}

// RunLinearVersus checks dev's fused linear against other's on one
// problem with every option and a bias, at two budgets: the losses within
// lossTol relative, dH, dW and db within gradTol of their largest entry,
// and dev bit-identical to itself when run twice (no order-dependent
// sums; not a group, whose split follows the measured speeds).
func RunLinearVersus(t *testing.T, dev, other device.Device, lossTol, gradTol float64) {
	RunLinearVersusAt(t, dev, other, 150, 1999, 37, lossTol, gradTol)
}

// linearVersus is RunLinearVersusAt's problem of n rows, v classes and d
// hidden features, with every option and a bias, and its options.
func linearVersus(seed uint64, n, v, d int) (*LinearProblem, Opts) {
	r := rand.New(rand.NewPCG(seed, 17))
	o := Opts{Ignore: DefaultIgnore, Smoothing: 0.1, ZLoss: 1e-4, Softcap: 9, Weights: classWeights(v, 3, 1, 2)}
	return NewLinearProblem(r, n, d, v, 6, true, 7, 2, o), o
}

// linearRun is dev's fused forward + backward on p with o at budget, its
// upstream gradients drawn from seed.
func linearRun(dev device.Device, p *LinearProblem, o Opts, seed uint64, budget int) (batch.Result, batch.LinearGrads, error) {
	l, err := batch.NewLinear(dev, LinearOptions(o, batch.Mean, batch.Budget(budget), batch.KeepRows())...)
	if err != nil {
		return batch.Result{}, batch.LinearGrads{}, err
	}
	g, _, _ := randomGrads(rand.New(rand.NewPCG(seed, 18)), p)
	res, err := l.ForwardBackward(context.Background(), g, p.HM(), p.WM(), p.Bias, p.Targets, batch.One)
	return res, g, err
}

// LinearAt runs dev's fused forward + backward once on RunLinearVersusAt's
// problem of n rows, v classes and d hidden features drawn from seed, and
// returns the losses and dW, or the error.
func LinearAt(dev device.Device, seed uint64, n, v, d int) ([]float32, []float32, error) {
	p, o := linearVersus(seed, n, v, d)
	res, g, err := linearRun(dev, p, o, seed, 0)
	if err != nil {
		return nil, nil, err
	}
	return res.Losses, g.W.Matrix().Data, nil
}

// RunLinearVersusAt is RunLinearVersus on a problem of n rows, v classes
// and d hidden features.
func RunLinearVersusAt(t *testing.T, dev, other device.Device, n, v, d int, lossTol, gradTol float64) {
	seed := Seed(t)
	p, o := linearVersus(seed, n, v, d)
	for _, budget := range []int{0, 4 * v * 5} {
		t.Run(fmt.Sprintf("budget=%d", budget), func(t *testing.T) {
			type run struct {
				res batch.Result
				g   batch.LinearGrads
			}
			do := func(d device.Device) run {
				res, g, err := linearRun(d, p, o, seed, budget)
				require.NoError(t, err)
				return run{res, g}
			}
			a, a2, b := do(dev), do(dev), do(other)
			if dev.Info().Kind != "group" { // a group's split follows the measured speeds
				requireSameF32(t, a.res.Losses, a2.res.Losses, "losses, run twice")
				requireSameF32(t, a.g.H.Matrix().Data, a2.g.H.Matrix().Data, "dH, run twice")
				requireSameF32(t, a.g.W.Matrix().Data, a2.g.W.Matrix().Data, "dW, run twice")
				requireSameF32(t, a.g.Bias, a2.g.Bias, "db, run twice")
			}
			for i := range a.res.Losses {
				x, y := float64(a.res.Losses[i]), float64(b.res.Losses[i])
				require.True(t, math.Abs(x-y) <= lossTol*math.Max(1, math.Abs(y)), "row %d: loss %v on %s, %v on %s", i, x, dev.Info().Spec, y, other.Info().Spec)
			}
			for _, m := range []struct {
				name string
				x, y []float32
			}{{"dH", a.g.H.Matrix().Data, b.g.H.Matrix().Data}, {"dW", a.g.W.Matrix().Data, b.g.W.Matrix().Data}, {"db", a.g.Bias, b.g.Bias}} {
				big := 0.0
				for _, v := range m.y {
					if !math.IsNaN(float64(v)) {
						big = max(big, math.Abs(float64(v)))
					}
				}
				for k := range m.x {
					if math.IsNaN(float64(m.y[k])) { // padding of a strided dH
						continue
					}
					require.True(t, math.Abs(float64(m.x[k]-m.y[k])) <= gradTol*big, "%s[%d]: %v on %s, %v on %s (largest %g)", m.name, k, m.x[k], dev.Info().Spec, m.y[k], other.Info().Spec, big)
				}
			}
		})
	}
}

// RunLinearResident keeps W and dW on dev (batch.Upload) across two
// micro-batches, W in each of dev's element types (H of W's type, and
// float32 H with a bfloat16 W): the results must be the host path's, bit
// for bit (the same products on the same values), dW accumulating on the
// device; the rank pass with W on dev is the reference's; a released or
// foreign buffer is an error and nothing is written.
func RunLinearResident(t *testing.T, dev device.Device, other device.Device) {
	seed := Seed(t)
	type pair struct{ h, w batch.DType }
	var pairs []pair
	for _, typ := range dev.Caps().Types {
		pairs = append(pairs, pair{typ, typ})
		if typ == batch.BF16 {
			pairs = append(pairs, pair{batch.F32, typ})
		}
	}
	for _, tp := range pairs {
		t.Run(fmt.Sprintf("H=%v,W=%v", tp.h, tp.w), func(t *testing.T) { runLinearResident(t, dev, other, seed, tp.h, tp.w) })
	}
}

func runLinearResident(t *testing.T, dev device.Device, other device.Device, seed uint64, ht, wt batch.DType) {
	r := rand.New(rand.NewPCG(seed, 19))
	ctx := context.Background()
	o := Opts{Ignore: DefaultIgnore, Smoothing: 0.05, Softcap: 8}
	p := NewLinearProblem(r, 70, 9, 501, 5, true, 6, 0, o).In(wt)
	hm := p.HM()
	if ht != wt { // float32 H: the rounded values, as the reference sees them
		hm = batch.Matrix{Data: p.H, Rows: p.N, Cols: p.D, Stride: p.SH}
	}
	for _, budget := range []int{0, 4 * 501 * 3} {
		t.Run(fmt.Sprintf("budget=%d", budget), func(t *testing.T) {
			l, err := batch.NewLinear(dev, LinearOptions(o, batch.Sum, batch.Budget(budget), batch.KeepRows())...)
			require.NoError(t, err)
			host, _, _ := randomGrads(rand.New(rand.NewPCG(seed, 20)), p)
			res, _, _ := randomGrads(rand.New(rand.NewPCG(seed, 20)), p)
			wd, err := batch.Upload(ctx, dev, p.WM())
			require.NoError(t, err)
			defer wd.Release()
			dwd, err := batch.Upload(ctx, dev, res.W.Matrix())
			require.NoError(t, err)
			defer dwd.Release()
			res.W = dwd.Grad()
			for step := range 2 { // two micro-batches: dW accumulates
				a, err := l.ForwardBackward(ctx, host, hm, p.WM(), p.Bias, p.Targets, batch.One)
				require.NoError(t, err)
				b, err := l.ForwardBackward(ctx, res, hm, wd.Matrix(), p.Bias, p.Targets, batch.One)
				require.NoError(t, err)
				requireSameF32(t, a.Losses, b.Losses, fmt.Sprintf("losses, step %d", step))
				requireSameF32(t, host.H.Matrix().Data, res.H.Matrix().Data, fmt.Sprintf("dH, step %d", step))
				requireSameF32(t, host.Bias, res.Bias, fmt.Sprintf("db, step %d", step))
			}
			dw := make([]float32, len(host.W.Matrix().Data))
			require.NoError(t, dwd.Download(ctx, batch.Matrix{Data: dw, Rows: p.V, Cols: p.D, Stride: p.SW}))
			requireSameF32(t, host.W.Matrix().Data, dw, "dW, accumulated on the device")

			checkLinearRanks(t, dev, p, hm, wd.Matrix(), budget)

			// Foreign and released buffers.
			if other != nil && other.Caps().Resident {
				wo, err := batch.Upload(ctx, other, p.WM())
				require.NoError(t, err)
				_, err = l.Forward(ctx, hm, wo.Matrix(), p.Bias, p.Targets)
				require.ErrorIs(t, err, batch.ErrOption)
				wo.Release()
			}
			for k := range res.H.Matrix().Data {
				res.H.Matrix().Data[k] = 7 // ignored rows' zeros must not be written either
			}
			before := append([]float32(nil), res.H.Matrix().Data...)
			require.NoError(t, wd.Release())
			_, err = l.ForwardBackward(ctx, res, hm, wd.Matrix(), p.Bias, p.Targets, batch.One)
			require.ErrorIs(t, err, device.ErrReleased)
			requireSameF32(t, before, res.H.Matrix().Data, "nothing written with a released W")
		})
	}
}

// checkLinearRanks checks the partials and the rank pass of p with H at h
// and W at w (on dev, or the host's) against the reference.
func checkLinearRanks(t *testing.T, dev device.Device, p *LinearProblem, h, w batch.Matrix, budget int) {
	t.Helper()
	ctx := context.Background()
	ls, err := batch.NewLinear(dev, LinearOptions(p.Opts, batch.Sum, batch.Budget(budget), batch.Shard(0, p.V))...)
	require.NoError(t, err)
	part := batch.NewPartials(p.N)
	require.NoError(t, ls.Partials(ctx, part, h, w, p.Bias, p.Targets))
	ranks := make([]batch.Rank, p.N)
	require.NoError(t, ls.Ranks(ctx, ranks, h, w, p.Bias, p.Targets, part))
	CheckRanks(t, ls, part, ranks, p.Reference().Ref, p.Targets, p.Opts.Ignore, 1e-4) // the logits are float32 products
}

// NewPeakedProblem draws a problem like a trained model's: W's rows
// N(0, 1), H_i = a·W_{t_i}/|W_{t_i}|² + noise, so that z_{i,t_i} ≈ a and
// the other logits are N(0, a²/D): p_t near 1, most probabilities tiny;
// every loose-th row keeps random hidden states (an unsure row), every
// ignore-th row is ignored.
func NewPeakedProblem(r *rand.Rand, n, d, v int, a float64, loose, ignore int, o Opts) *LinearProblem {
	p := NewLinearProblem(r, n, d, v, 1, true, ignore, 0, o)
	for i := range n {
		t := int(p.Targets[i])
		if int64(t) == o.Ignore || loose > 0 && i%loose == 0 {
			continue
		}
		w := p.W[t*p.SW : t*p.SW+d]
		nn := 0.0
		for _, x := range w {
			nn += float64(x) * float64(x)
		}
		for k := range d {
			p.H[i*p.SH+k] = float32(a*float64(w[k])/nn + 0.1*r.NormFloat64()/math.Sqrt(float64(d)))
		}
	}
	for j := range p.Bias {
		p.Bias[j] = 0
	}
	return p
}

// RunLinearFilter checks gradient filtering on peaked rows, and on peaked
// rows with one unsure row in three: the loss as without it, and each
// gradient entry within the reference's allowance plus the filter's bound
// (eps·|s_i|·Σ_j |w_jd| for dH, eps·Σ_i |s_i·h_id| for dW, eps·Σ_i |s_i|
// for db); on the peaked rows it must have skipped something (the
// gradients differ from the unfiltered ones).
func RunLinearFilter(t *testing.T, dev device.Device) { RunLinearFilterSized(t, dev, 97, 64, 3001) }

// RunLinearFilterSized is RunLinearFilter on problems of n rows, d
// features and v classes.
func RunLinearFilterSized(t *testing.T, dev device.Device, n, d, v int) {
	seed := Seed(t)
	r := rand.New(rand.NewPCG(seed, 21))
	const eps = 0x1p-12
	o := Opts{Ignore: DefaultIgnore}
	for _, loose := range []int{0, 3} {
		p := NewPeakedProblem(r, n, d, v, 30, loose, 9, o)
		// With unsure rows in every chunk, every block may be kept: only
		// the all-peaked problem must skip.
		runLinearFilter(t, dev, p, fmt.Sprintf("unsure=1of%d", loose), eps, seed, loose == 0)
	}
}

func runLinearFilter(t *testing.T, dev device.Device, p *LinearProblem, name string, eps float64, seed uint64, mustSkip bool) {
	ctx := context.Background()
	o := p.Opts
	ref := p.Reference()
	for _, budget := range []int{0, 4 * p.V * 5} {
		t.Run(fmt.Sprintf("%s/budget=%d", name, budget), func(t *testing.T) {
			run := func(filter float64) (batch.Result, batch.LinearGrads) {
				l, err := batch.NewLinear(dev, LinearOptions(o, batch.Mean, batch.Budget(budget), batch.KeepRows(), batch.GradFilter(filter))...)
				require.NoError(t, err)
				g, _, _ := randomGrads(rand.New(rand.NewPCG(seed, 22)), p)
				clear(g.W.Matrix().Data)
				clear(g.Bias)
				res, err := l.ForwardBackward(ctx, g, p.HM(), p.WM(), p.Bias, p.Targets, batch.One)
				require.NoError(t, err)
				return res, g
			}
			plain, gp := run(0)
			filt, gf := run(eps)
			require.Equal(t, plain.Losses, filt.Losses, "filtering leaves the loss alone")
			s := make([]float64, p.N)
			for i := range s {
				s[i] = 1 / ref.Denom
			}
			e := ref.Grads(make([]float32, p.V*p.D), make([]float32, p.V), s, 1e-5)
			e.DHSlack, e.DWSlack, e.DBSlack = make([]float64, p.N*p.D), make([]float64, p.V*p.D), make([]float64, p.V)
			for i := range p.N {
				if int64(p.Targets[i]) == o.Ignore {
					continue
				}
				for d := range p.D {
					for j := range p.V {
						e.DHSlack[i*p.D+d] += eps * s[i] * math.Abs(float64(p.W[j*p.SW+d]))
						e.DWSlack[j*p.D+d] += eps * s[i] * math.Abs(float64(p.H[i*p.SH+d]))
					}
				}
				for j := range p.V {
					e.DBSlack[j] += eps * s[i]
				}
			}
			e.Check(t, gf, p.N, p.D, p.V)
			e.DHSlack, e.DWSlack, e.DBSlack = nil, nil, nil
			e.Check(t, gp, p.N, p.D, p.V) // unfiltered: the usual allowance
			differ := 0
			for k := range gf.W.Matrix().Data {
				if gf.W.Matrix().Data[k] != gp.W.Matrix().Data[k] {
					differ++
				}
			}
			t.Logf("filtered dW differs from the unfiltered one in %d of %d entries", differ, len(gf.W.Matrix().Data))
			if mustSkip {
				require.Positive(t, differ, "the filter skipped nothing")
			}
		})
	}
}

// Confident-row targets of the fused linear (RunLinearConfident), where
// the products' own rounding dominates: the loss within LinearLossTol
// relative of the float64 reference, or of the products' rounding where
// that is more (see RunLinearConfident), dH and dW within LinearGradTol
// of their largest entry.
const (
	LinearLossTol = 1e-5
	LinearGradTol = 1e-4
)

// RunLinearConfident checks the fused linear on rows like a trained
// model's (NewPeakedProblem: the target logit about a above the others,
// 1 - p_t from about 1e-3 down to 1e-7), in every type dev takes, with the
// default budget and with tiles of the vocabulary: each loss within
// LinearLossTol relative — however small: about 1 - p_t — and every entry
// of dH and dW within LinearGradTol of the matrix's largest. Forms that
// cancel as p_t → 1 (exp(z_t - lse) - 1, log of a sum that rounds to 1)
// miss both by orders of magnitude.
func RunLinearConfident(t *testing.T, dev device.Device) {
	seed := Seed(t)
	r := rand.New(rand.NewPCG(seed, 26))
	ctx := context.Background()
	o := Opts{Ignore: DefaultIgnore}
	for _, typ := range dev.Caps().Types {
		for _, a := range []float64{18, 26} {
			p := NewPeakedProblem(r, 48, 64, 4099, a, 0, 0, o).In(typ)
			ref := p.Reference()
			s := make([]float64, p.N)
			for i := range s {
				s[i] = 1 / ref.Denom
			}
			e := ref.Grads(make([]float32, p.V*p.D), make([]float32, p.V), s, 0)
			for _, budget := range []int{0, 4 * 4099 * 3} {
				t.Run(fmt.Sprintf("%v/a=%v/budget=%d", typ, a, budget), func(t *testing.T) {
					l, err := batch.NewLinear(dev, LinearOptions(o, batch.Mean, batch.Budget(budget), batch.KeepRows())...)
					require.NoError(t, err)
					g := batch.LinearGrads{H: batch.NewGrad(make([]float32, p.N*p.D), p.N, p.D), W: batch.NewGrad(make([]float32, p.V*p.D), p.V, p.D)}
					res, err := l.ForwardBackward(ctx, g, p.HM(), p.WM(), p.Bias, p.Targets, batch.One)
					require.NoError(t, err)
					// The loss of a confident row is about Σ_j exp(z_j - z_t):
					// its relative error is that of z_j - z_t, which the
					// float32 products round by about u·|z_t|·√D/2 (a sum of
					// D terms rounded at the magnitude of z_t ≈ a, u =
					// 2^-24); 4·u·√D·a is eight times that (5e-5 at a = 26,
					// D = 64: a row's 1.1e-5 was seen on PoCL), still
					// hundreds of times below what a cancelling form misses
					// by.
					tol := max(LinearLossTol, 4*0x1p-24*math.Sqrt(float64(p.D))*a)
					worst := 0.0
					for i, got := range res.Losses {
						want := ref.Loss[i]
						worst = max(worst, math.Abs(float64(got)-want)/want)
						require.True(t, LossCloseIn(float64(got), want, tol), "row %d: loss %v, want %v (1 - p_t ≈ %.2g, tolerance %.2g relative)", i, got, want, want, tol)
					}
					t.Logf("losses from %.2g to %.2g, the worst %.2g relative", minOf(ref.Loss), maxOf(ref.Loss), worst)
					for _, m := range []struct {
						name string
						got  []float32
						want []float64
					}{{"dH", g.H.Matrix().Data, e.DH}, {"dW", g.W.Matrix().Data, e.DW}} {
						big, off := 0.0, 0.0
						for k, w := range m.want {
							big = max(big, math.Abs(w))
							off = max(off, math.Abs(float64(m.got[k])-w))
						}
						t.Logf("%s: off by %.2g of its largest entry %.3g", m.name, off/big, big)
						require.LessOrEqual(t, off, LinearGradTol*big, "%s: off by %.3g of its largest entry %.3g", m.name, off/big, big)
					}
				})
			}
		}
	}
}

// minOf returns the smallest of x.
func minOf(x []float64) float64 {
	m := math.Inf(1)
	for _, v := range x {
		m = min(m, v)
	}
	return m
}

// RunLinearPick checks dev's device.LinearPicker, a distillation's logits
// at the teacher's classes from the partials' own products: the partials
// are LinearPartials' bit for bit; the logit picked at each row's argmax
// class is its raw max (Partial.ArgMax), and without a soft cap or
// temperature the one at its target is its ZT, exactly (the same
// products); every entry is within the float32 products' error of the
// float64 reference (ZErr); a column of -1 and every entry of an ignored
// row are 0. Every element type, a budget that tiles the vocabulary, a
// bias and none; and W's classes a shard of the vocabulary (float32: the
// columns W's, the classes the vocabulary's). On a group, whose split follows the measured speeds call
// by call, a row's max is LinearPartials' within the products' rounding.
func RunLinearPick(t *testing.T, dev device.Device) {
	pk, ok := dev.(device.LinearPicker)
	require.True(t, ok, "%s is no device.LinearPicker", dev.Info().Spec)
	fl := device.LinearOf(dev)
	seed := Seed(t)
	r := rand.New(rand.NewPCG(seed, 33))
	ctx := context.Background()
	const k = 6
	for _, typ := range dev.Caps().Types {
		for _, c := range []struct {
			name string
			bias bool
			o    Opts
			col0 int // W's classes [col0, col0+V) of V+2·col0
		}{
			{"plain", false, Opts{Ignore: DefaultIgnore}, 0},
			{"bias+softcap+temperature", true, Opts{Ignore: DefaultIgnore, Softcap: 6, Temperature: 0.7}, 0},
			{"shard", true, Opts{Ignore: DefaultIgnore}, 40},
		} {
			if c.col0 > 0 && typ != batch.F32 {
				continue
			}
			p := NewLinearProblem(r, 37, 13, 301, 4, c.bias, 5, 2, c.o).In(typ)
			lr, zr := p.Reference(), p.logits()
			prob := &ce.Problem{Softcap: float32(c.o.Softcap), Temperature: float32(c.o.Temperature), WeightSum: float64(p.V)}
			if c.col0 > 0 {
				prob.Col0, prob.Vocab, prob.WeightSum = c.col0, p.V+2*c.col0, float64(p.V+2*c.col0)
			}
			raw := c.o.Softcap == 0 && c.o.Temperature == 0
			targets := make([]int32, p.N)
			for i, tg := range p.Targets {
				targets[i] = max(tg, -1)
				if c.col0 > 0 && tg >= 0 {
					targets[i] = tg + int32(c.col0)
					if i%3 == 0 { // a class of another shard
						targets[i] = int32(p.V + c.col0 + i%c.col0)
					}
				}
			}
			// held reports whether row i's target is of W's classes.
			held := func(i int) bool { return targets[i] >= int32(c.col0) && targets[i] < int32(c.col0+p.V) }
			for _, budget := range []int{0, 4*p.V*3 + 4} {
				t.Run(fmt.Sprintf("%v/%s/budget=%d", typ, c.name, budget), func(t *testing.T) {
					lin := &ce.Linear{H: p.HM(), W: p.WM(), Bias: p.Bias, Budget: budget}
					want := ce.EmptyPartials(p.N)
					require.NoError(t, fl.LinearPartials(ctx, want, lin, targets, prob))
					cols := make([]int32, p.N*k) // the target, the argmax, three others, none
					for i := range p.N {
						c := cols[i*k : (i+1)*k]
						for j := range c {
							c[j] = int32(r.IntN(p.V))
						}
						if targets[i] >= 0 {
							c[1] = int32(want[i].Arg - prob.Col0)
							if held(i) {
								c[0] = targets[i] - int32(prob.Col0)
							}
						}
						c[k-1] = -1
					}
					got, z := ce.EmptyPartials(p.N), make([]float32, p.N*k)
					for e := range z {
						z[e] = float32(math.NaN()) // every entry written
					}
					require.NoError(t, pk.LinearPartialsAt(ctx, got, z, cols, k, lin, targets, prob))
					group := dev.Info().Kind == "group" // its split follows the measured speeds, call by call
					for i := range p.N {
						if !group {
							require.Equal(t, want[i], got[i], "row %d's partial", i)
						} else if targets[i] >= 0 {
							require.InDelta(t, want[i].Max, got[i].Max, 2*lr.ZErr[i]+1e-30, "row %d's max", i)
							require.Equal(t, want[i].HasT, got[i].HasT, "row %d: its target's", i)
						}
						for e := i * k; e < (i+1)*k; e++ {
							c := cols[e]
							if targets[i] < 0 || c < 0 {
								require.Zero(t, z[e], "entry %d (row %d, class %d)", e, i, c)
								continue
							}
							require.InDelta(t, zr[i][c], z[e], lr.ZErr[i]+1e-30, "entry %d (row %d, class %d)", e, i, c)
						}
						if targets[i] < 0 {
							continue
						}
						if got[i].Arg == want[i].Arg { // a group's members may round a near tie apart
							require.Equal(t, got[i].ArgMax, z[i*k+1], "row %d: the logit at its argmax %d, its raw max", i, got[i].Arg)
						}
						require.Equal(t, held(i), got[i].HasT, "row %d: its target %d held", i, targets[i])
						if raw && held(i) {
							require.Equal(t, got[i].ZT, z[i*k], "row %d: the logit at its target, its ZT", i)
						}
					}
				})
			}
		}
	}
}
