package spec

import (
	"math"
	"math/rand/v2"

	"github.com/xentlab/xent/cpu"
	"github.com/xentlab/xent/internal/gen"
)

var (
	inf  = float32(math.Inf(1))
	ninf = float32(math.Inf(-1))
	nan  = float32(math.NaN())
)

// Case is one entry of the shared table: a problem built fresh (random
// values from a seeded generator) and the options it runs with.
type Case struct {
	Name       string
	Rows, Cols int
	Stride     int // 0: Cols
	Opts       Opts
	// Fill writes the logits (len Rows*Stride) and targets.
	Fill func(rng *rand.Rand, x []float32, t []int32, rows, cols, stride int)
}

// Normal fills x with N(0, sd²) and t with uniform targets, ignoring about
// one row in ignoreEvery (0: none) with ignore.
func Normal(sd float64, ignoreEvery int, ignore int32) func(*rand.Rand, []float32, []int32, int, int, int) {
	return func(rng *rand.Rand, x []float32, t []int32, rows, cols, stride int) {
		for i := range x {
			x[i] = float32(rng.NormFloat64() * sd)
		}
		for i := range t {
			t[i] = int32(rng.IntN(cols))
			if ignoreEvery > 0 && rng.IntN(ignoreEvery) == 0 {
				t[i] = ignore
			}
		}
	}
}

// rowsOf fills fixed rows and targets.
func rowsOf(rows [][]float32, targets []int32) func(*rand.Rand, []float32, []int32, int, int, int) {
	return func(_ *rand.Rand, x []float32, t []int32, _, cols, stride int) {
		for i, r := range rows {
			copy(x[i*stride:i*stride+cols], r)
		}
		copy(t, targets)
	}
}

// Cases returns the shared table.
func Cases() []Case {
	def := Opts{Ignore: -100}
	with := func(f func(*Opts)) Opts { o := def; f(&o); return o }
	weights := func(cols int) []float32 {
		rng := rand.New(rand.NewPCG(uint64(cols), 9))
		w := make([]float32, cols)
		for i := range w {
			w[i] = float32(rng.Float64() * 2)
		}
		w[0] = 0
		return w
	}
	cs := []Case{
		{Name: "textbook", Rows: 4, Cols: 5, Opts: def, Fill: rowsOf(func() [][]float32 {
			x := gen.TextbookLogits()
			return [][]float32{x[0:5], x[5:10], x[10:15], x[15:20]}
		}(), gen.Textbook.Targets)},
		{Name: "normal3/423x507", Rows: 423, Cols: 507, Opts: def, Fill: Normal(3, 10, -100)},
		{Name: "strided/37x100+13", Rows: 37, Cols: 100, Stride: 113, Opts: def, Fill: Normal(3, 5, -100)},
		{Name: "V=1", Rows: 9, Cols: 1, Opts: def, Fill: Normal(3, 4, -100)},
		{Name: "V=1/smoothing", Rows: 3, Cols: 1, Opts: with(func(o *Opts) { o.Smoothing = 0.3 }), Fill: Normal(3, 0, 0)},
		{Name: "V=50257", Rows: 6, Cols: 50257, Opts: def, Fill: Normal(3, 6, -100)},
		{Name: "V=131075", Rows: 3, Cols: 131075, Opts: def, Fill: Normal(3, 0, -100)},
		{Name: "large-logits", Rows: 16, Cols: 333, Opts: def, Fill: Normal(1e4, 0, -100)},
		{Name: "empty", Rows: 0, Cols: 7, Opts: def, Fill: Normal(1, 0, -100)},
		{Name: "all-ignored", Rows: 5, Cols: 11, Opts: def, Fill: Normal(3, 1, -100)},
		{Name: "ignore-index-in-range", Rows: 50, Cols: 10, Opts: with(func(o *Opts) { o.Ignore = 3 }), Fill: Normal(3, 0, -100)},
		{Name: "smoothing", Rows: 61, Cols: 257, Opts: with(func(o *Opts) { o.Smoothing = 0.1 }), Fill: Normal(3, 7, -100)},
		{Name: "smoothing=1", Rows: 13, Cols: 64, Opts: with(func(o *Opts) { o.Smoothing = 1 }), Fill: Normal(3, 7, -100)},
		{Name: "weights", Rows: 77, Cols: 129, Opts: with(func(o *Opts) { o.Weights = weights(129) }), Fill: Normal(3, 9, -100)},
		{Name: "weights+smoothing", Rows: 40, Cols: 65, Opts: with(func(o *Opts) { o.Weights = weights(65); o.Smoothing = 0.2 }), Fill: Normal(3, 9, -100)},
		{Name: "zloss", Rows: 55, Cols: 300, Opts: with(func(o *Opts) { o.ZLoss = 1e-2 }), Fill: Normal(3, 9, -100)},
		{Name: "softcap", Rows: 30, Cols: 1000, Opts: with(func(o *Opts) { o.Softcap = 30 }), Fill: Normal(40, 9, -100)},
		{Name: "everything", Rows: 33, Cols: 517, Opts: with(func(o *Opts) {
			o.Softcap, o.ZLoss, o.Smoothing, o.Weights, o.Ignore = 15, 1e-3, 0.05, weights(517), 7
		}), Fill: Normal(10, 6, 7)},
		// a temperature sharpens (τ < 1) or flattens (τ > 1) the softmax;
		// with a soft cap the cap comes first.
		{Name: "temperature", Rows: 47, Cols: 1001, Opts: with(func(o *Opts) { o.Temperature = 0.7 }), Fill: Normal(3, 8, -100)},
		{Name: "temperature/hot", Rows: 29, Cols: 129, Opts: with(func(o *Opts) {
			o.Temperature, o.Smoothing, o.ZLoss, o.Weights = 3.5, 0.1, 1e-3, weights(129)
		}), Fill: Normal(6, 6, -100)},
		{Name: "everything/temperature", Rows: 33, Cols: 517, Opts: with(func(o *Opts) {
			o.Softcap, o.Temperature, o.ZLoss, o.Smoothing, o.Weights, o.Ignore = 15, 2, 1e-3, 0.05, weights(517), 7
		}), Fill: Normal(10, 6, 7)},
		{Name: "edges", Rows: 9, Cols: 6, Opts: def, Fill: rowsOf([][]float32{
			{1, 2, inf, 0, 0, 0},                 // +Inf: NaN
			{ninf, ninf, ninf, ninf, ninf, ninf}, // all -Inf: NaN
			{ninf, 1, 2, ninf, 3, 0},             // -Inf non-target: fine, gradient 0
			{ninf, 1, 2, 3, 4, 5},                // target logit -Inf: +Inf loss
			{1, nan, 2, 3, 4, 5},                 // NaN stays in its row
			{3e38, -3e38, 3e38, 0, 1, 2},         // extreme finite values
			{-1e30, -1e30, -1e30, -1e30, -1e30, -1e30},
			{5, 5, 5, 5, 5, 5},   // ties: argmax is the first
			{0, 0, 0, 0, 0, 100}, // p_t → 1: no cancellation
		}, []int32{1, 2, 1, 0, 3, 2, 4, 0, 5})},
		{Name: "edges/softcap", Rows: 3, Cols: 4, Opts: with(func(o *Opts) { o.Softcap = 5 }), Fill: rowsOf([][]float32{
			{inf, 1, 2, 3}, {ninf, 1, 2, 3}, {3e38, -3e38, 0, 1},
		}, []int32{0, 1, 2})},
	}
	// The edges divided by τ = 1/2: ±3e38 overflow float32 to ±Inf (a NaN
	// row, as PyTorch's x/τ in float32 gives), the rest as without.
	et := cs[len(cs)-2]
	et.Name, et.Opts = "edges/temperature", with(func(o *Opts) { o.Temperature = 0.5 })
	cs = append(cs, et)
	// Rows read in chunks (the CPU's online pass, cpu.Chunk and longer
	// chunks past cpu.MaxChunks of them): a max rising chunk after chunk, leading
	// chunks of only -Inf, NaN or +Inf in a late chunk, the target at the
	// max in a late chunk after an earlier tie, a max that jumps by more than
	// 64 in a late chunk or is far above the row's first logit, and long
	// rows.
	const ch = cpu.Chunk
	const n = 3*ch + 77
	cs = append(cs,
		Case{Name: "chunks/edges", Rows: 9, Cols: n, Opts: def, Fill: func(rng *rand.Rand, x []float32, t []int32, rows, cols, stride int) {
			Normal(3, 0, -100)(rng, x, t, rows, cols, stride)
			r := func(i int) []float32 { return x[i*stride : i*stride+cols] }
			for j, v := range r(0) { // rising: every chunk raises the max
				r(0)[j] = v + float32(j)/100
			}
			for j := range 2*ch + 5 { // two and a bit chunks of -Inf
				r(1)[j] = ninf
			}
			r(2)[2*ch+9] = nan
			r(3)[3*ch+1] = inf
			r(4)[100], r(4)[2*ch+50] = 40, 40 // a tie: the first is the argmax
			t[4] = 100
			r(5)[2*ch+50] = 40 // the max in a late chunk, and the target
			t[5] = 2*ch + 50
			for j := range r(6) { // falling: the first chunk holds the max
				r(6)[j] = -float32(j) / 100
			}
			t[6] = 0
			r(7)[2*ch+300] = 200 // a jump: 190 above everything before it
			r(8)[0] = -500       // the first logit far below the max
		}},
		Case{Name: "chunks/long", Rows: 2, Cols: cpu.MaxChunks*ch + 4099, Opts: def, Fill: Normal(3, 0, -100)},
	)
	// The same rows with every option but the soft cap, and with it: the
	// smoothing sums are carried from chunk to chunk (relative to the max
	// so far) and capped chunks go through the same driver.
	edges := cs[len(cs)-2]
	for _, o := range []Opts{
		with(func(o *Opts) { o.Smoothing, o.Weights, o.ZLoss = 0.1, weights(n), 1e-3 }),
		with(func(o *Opts) { o.Smoothing, o.Softcap = 0.2, 25 }),
		with(func(o *Opts) { o.Smoothing = 0.1 }), // a -Inf logit: +Inf, not NaN (the compensated sums)
		with(func(o *Opts) { o.Smoothing, o.Temperature = 0.1, 0.8 }),
	} {
		c := edges
		c.Name, c.Opts = "chunks/edges/options", o
		cs = append(cs, c)
	}
	for _, n := range Lengths() {
		cs = append(cs, Case{Name: "len", Rows: 5, Cols: n, Opts: def, Fill: Normal(3, 0, -100)})
	}
	// Confident rows, as a trained model gives: 1 - p_t from 1e-2 down to
	// 1e-7 and p_t = 1 exactly, where lse - max = log(1 + Σ_{j≠t} p_j/p_t)
	// and p_t - 1 cancel unless computed through log1p and expm1. A row
	// longer than a few CPU chunks (the max in a late one, far above the
	// first's), one shorter than an OpenCL work-group, and with weights.
	for _, c := range []struct {
		cols int
		o    Opts
	}{{2*ch + 3, def}, {37, def}, {517, with(func(o *Opts) { o.Weights = weights(517) })}} {
		cs = append(cs, Case{Name: "confident", Rows: len(Confidences), Cols: c.cols, Opts: c.o, Fill: Confident})
	}
	return cs
}

// ConformanceCases is the part of the table a second OpenCL implementation
// runs under an interpreter that checks every access (Oclgrind, in CI):
// every option and edge case, the confident rows, strides, rows shorter
// and longer than a work-group (lengths up to 257), in a few seconds of
// interpreted work each; the long rows and the large matrices are left
// to the native runs.
func ConformanceCases() []Case {
	keep := map[string]bool{"textbook": true, "strided/37x100+13": true, "V=1": true, "V=1/smoothing": true,
		"large-logits": true, "empty": true, "all-ignored": true, "ignore-index-in-range": true, "smoothing=1": true,
		"weights+smoothing": true, "zloss": true, "everything": true, "edges": true, "edges/softcap": true,
		"temperature/hot": true, "everything/temperature": true, "edges/temperature": true}
	var cs []Case
	for _, c := range Cases() {
		if keep[c.Name] || c.Name == "len" && c.Cols <= 257 || c.Name == "confident" && c.Cols < 2048 {
			cs = append(cs, c)
		}
	}
	return cs
}

// Confidences are the 1 - p_t of the rows of the confident cases (0: p_t =
// 1 exactly, every other logit -Inf).
var Confidences = []float64{0.5, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 0}

// Confident fills row k with N(0, 1) logits and a target logit that gives
// 1 - p_t = Confidences[k] (up to the rounding of the logit), the target
// at a column that moves from row to row.
func Confident(rng *rand.Rand, x []float32, t []int32, rows, cols, stride int) {
	for k := range rows {
		r := x[k*stride : k*stride+cols]
		tk := (k*997 + cols/2) % cols
		t[k] = int32(tk)
		q := Confidences[k%len(Confidences)]
		so := 0.0
		for j := range r {
			r[j] = float32(rng.NormFloat64())
			if q == 0 {
				r[j] = ninf
			}
			if j != tk {
				so += math.Exp(float64(r[j]))
			}
		}
		r[tk] = float32(rng.NormFloat64())
		if q > 0 {
			r[tk] = float32(math.Log(so * (1 - q) / q))
		}
	}
}

// Lengths returns the row lengths around every internal block size, from
// 2: 4 (the OpenCL float4 and the portable loops' lanes), 8 and 16 (an
// AVX2 vector and the exp loop's step), 32 (the max loop's step), the
// OpenCL work-group sizes up to 1024 (rows of fewer columns than
// work-items, 4 per item), cpu.Block and cpu.Chunk; each b as b-1, b, b+1.
func Lengths() []int {
	lens := []int{2}
	for _, b := range []int{4, 8, 16, 32, 64, 128, cpu.Block, 512, 1024, cpu.Chunk} {
		if b-1 > lens[len(lens)-1] {
			lens = append(lens, b-1)
		}
		lens = append(lens, b, b+1)
	}
	return lens
}
