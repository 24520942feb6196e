package spec

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/xentlab/xent/batch"
	"github.com/xentlab/xent/device"
)

// DistillRef is the float64 reference of a top-k distillation (see
// batch.Distill) of rows of logits: per row the KL and its gradient with
// respect to the raw logits (unscaled: s_i = 1, the chain factors in),
// with the sizes of their terms and the slack the student's tail needs.
type DistillRef struct {
	KL, KLMag, KLSlack []float64
	Grad, Mag, Slack   [][]float64
	Resolved           []bool // whether the row's student tail is above its rounding (or the teacher's tail is 0)
}

// tailFloor is ce.TailFloor, the device's absolute floor of a student
// tail.
const tailFloor = 0x1p-100

// DistillReference evaluates the distillation of rows × cols logits x
// (row stride stride; capped and divided by the temperature as o says)
// against the teacher tc in float64. The student's tail Q is summed
// directly over the classes off the teacher's support (no cancellation);
// the devices take it as s - Σ_j exp(z_j - m) from the row's float32 sum,
// known to about δQ = 2^-20 of the sums it is the difference of, and
// floor it there (ce.Distill): a tail above 2δQ is resolved, the KL's
// tail term is then off by P·δQ/Q at most (KLSlack) and the gradient's
// tail coefficient P/Q by as much relative; a tail below it is rounding,
// its term allowed whole.
func DistillReference(x []float32, rows, cols, stride int, targets []int32, o Opts, tc *batch.Teacher) *DistillRef {
	return distillReference(rows, cols, func(i int, z []float64) {
		for j := range z {
			z[j] = float64(x[i*stride+j])
		}
	}, nil, targets, o, tc)
}

// distillReference is DistillReference over logits that row sets, row i
// into z, whose float32 values on the device are off by up to zerr[i]
// (nil: exact). The fused linear's are: its sum s comes from the float32
// logits of its products, its teacher's terms from logits computed on
// the host in float64 (batch's linearShard), so their difference Q·s is
// off by up to zerr·(Σ_j exp(z_j - m) + 1) beyond the sums' rounding,
// however small Q is; δQ holds that too.
func distillReference(rows, cols int, row func(i int, z []float64), zerr []float64, targets []int32, o Opts, tc *batch.Teacher) *DistillRef {
	r := &DistillRef{KL: make([]float64, rows), KLMag: make([]float64, rows), KLSlack: make([]float64, rows),
		Grad: make([][]float64, rows), Mag: make([][]float64, rows), Slack: make([][]float64, rows), Resolved: make([]bool, rows)}
	for i := range rows {
		r.Grad[i], r.Mag[i], r.Slack[i] = make([]float64, cols), make([]float64, cols), make([]float64, cols)
		if int64(targets[i]) == o.Ignore {
			continue
		}
		z := make([]float64, cols)
		row(i, z)
		o.capRow(z, true)
		_, _, m, ls := o.rowLoss(z, int(targets[i]))
		ids, lp := tc.Row(i)
		in := make(map[int]int, len(ids))
		for k, id := range ids {
			in[int(id)] = k
		}
		arg := slices.Index(z, m) // the first max
		q := make([]float64, cols)
		rest, Q := 0.0, 0.0
		for j, v := range z {
			q[j] = math.Exp((v - m) - ls)
			if j != arg {
				rest += math.Exp(v - m)
			}
			if _, ok := in[j]; !ok {
				Q += q[j]
			}
		}
		s := 1 + rest
		base, me := 1+rest, 0.0
		if _, ok := in[arg]; ok {
			base = rest
		}
		kl, mag, ps := 0.0, 0.0, 0.0
		for k, id := range ids {
			j := int(id)
			if j != arg {
				me += math.Exp(z[j] - m)
			}
			p := math.Exp(float64(lp[k]))
			if p > 0 {
				ps += p
				lq := (z[j] - m) - ls
				kl += p * (float64(lp[k]) - lq)
				mag += p * (math.Abs(float64(lp[k])) + math.Abs(lq) + 1 + math.Abs(z[j]) + math.Abs(m))
			}
		}
		if _, ok := in[arg]; !ok {
			me += 1
		}
		dQ := 0x1p-20 * (base + me) / s
		if zerr != nil {
			dQ += zerr[i] / o.tau() * (me + 1) / s
		}
		P := max(0, 1-ps)
		resolved := Q >= 2*max(dQ, tailFloor)
		Qe := max(Q, dQ, tailFloor)
		ratio, dense := 0.0, ps
		r.Resolved[i] = resolved || P == 0
		if P > 0 {
			kl += P * (math.Log(P) - math.Log(Qe))
			mag += P * (math.Abs(math.Log(P)) + math.Abs(math.Log(Qe)) + 1)
			if resolved {
				ratio = P / Q
				dense = P + ps - ratio
				r.KLSlack[i] = 2 * P * dQ / Q
			} else {
				r.KLSlack[i] = P * (math.Abs(math.Log(P)) + math.Abs(math.Log(Qe)) + 30)
			}
		}
		if math.IsNaN(ls) {
			kl = math.NaN()
		}
		r.KL[i], r.KLMag[i] = kl, mag
		for j := range z {
			g := dense * q[j]
			gm := (math.Abs(dense) + 2*ratio) * q[j]
			sl := 0.0
			if k, ok := in[j]; ok {
				p := math.Exp(float64(lp[k]))
				g = (dense+ratio)*q[j] - p
				gm = (ps+P)*q[j] + p
			}
			switch {
			case P > 0 && resolved:
				sl = 2 * ratio * q[j] * dQ / Q
			case P > 0:
				sl = P * (q[j]/Qe + q[j])
			}
			if q[j] < underP { // q_j's exp may underflow (see Ref.Under)
				sl += (math.Abs(dense) + ratio) * minNormal32
			}
			if sc := 1 / o.tau(); o.Softcap > 0 {
				u := z[j] / (o.Softcap * sc)
				g *= sc * (1 - u*u)
				gm *= sc * (1 + u*u)
				sl *= sc * (1 + u*u)
			} else {
				g, gm, sl = g*sc, gm*sc, sl*sc
			}
			r.Grad[i][j], r.Mag[i][j], r.Slack[i][j] = g, gm, sl
			if math.IsNaN(ls) {
				r.Grad[i][j] = math.NaN()
			}
		}
	}
	return r
}

// DistillCase is a case of the distillation table: logits, a teacher's
// top-k of each row (from the teacher's generator) and the weight α.
type DistillCase struct {
	Case
	K     int
	Alpha float64
	// Teacher returns row i's K classes and log-probabilities given the
	// student's (rounded) logits z of the row.
	Teacher func(rng *rand.Rand, z []float32, k int) ([]int32, []float32)
}

// NearTeacher returns a teacher whose logits are the student's plus
// N(0, sd²) noise: its top k classes and their log-probabilities, the
// mass scaled by scale (1: a distribution's; above 1, a rounding excess).
func NearTeacher(sd, scale float64) func(*rand.Rand, []float32, int) ([]int32, []float32) {
	return func(rng *rand.Rand, z []float32, k int) ([]int32, []float32) {
		t := make([]float64, len(z))
		for j, v := range z {
			t[j] = float64(v) + rng.NormFloat64()*sd
			if math.IsInf(float64(v), 0) || math.IsNaN(float64(v)) {
				t[j] = rng.NormFloat64() * sd
			}
		}
		lse := LogSumExp(t)
		order := make([]int, len(z))
		for j := range order {
			order[j] = j
		}
		slices.SortFunc(order, func(a, b int) int { return -cmpF(t[a], t[b]) })
		ids, lp := make([]int32, k), make([]float32, k)
		for n := range k {
			ids[n] = int32(order[n])
			lp[n] = float32(t[order[n]] - lse + math.Log(scale))
		}
		rng.Shuffle(k, func(a, b int) { ids[a], ids[b] = ids[b], ids[a]; lp[a], lp[b] = lp[b], lp[a] })
		return ids, lp
	}
}

func cmpF(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// DistillCases returns the distillation table.
func DistillCases() []DistillCase {
	def := Opts{Ignore: DefaultIgnore}
	with := func(f func(*Opts)) Opts { o := def; f(&o); return o }
	near := NearTeacher(1, 1)
	return []DistillCase{
		{Case{Name: "distill/near", Rows: 37, Cols: 301, Opts: def, Fill: Normal(2, 7, DefaultIgnore)}, 8, 0.5, near},
		{Case{Name: "distill/kl-only", Rows: 19, Cols: 64, Opts: def, Fill: Normal(3, 0, DefaultIgnore)}, 5, 1, NearTeacher(2, 1)},
		{Case{Name: "distill/ce-only", Rows: 11, Cols: 50, Opts: def, Fill: Normal(1, 0, DefaultIgnore)}, 3, 0, near},
		{Case{Name: "distill/k=V", Rows: 13, Cols: 17, Opts: def, Fill: Normal(2, 0, DefaultIgnore)}, 17, 0.7, near},
		{Case{Name: "distill/k=1", Rows: 13, Cols: 33, Opts: def, Fill: Normal(2, 0, DefaultIgnore)}, 1, 0.6, near},
		{Case{Name: "distill/excess", Rows: 9, Cols: 40, Opts: def, Fill: Normal(2, 0, DefaultIgnore)}, 40, 0.5, NearTeacher(0.5, 1+1e-4)},
		{Case{Name: "distill/confident", Rows: len(Confidences), Cols: 211, Opts: def, Fill: Confident}, 6, 0.5, NearTeacher(3, 1)},
		{Case{Name: "distill/options", Rows: 23, Cols: 257, Opts: with(func(o *Opts) {
			o.Softcap, o.Temperature, o.Smoothing, o.ZLoss = 15, 0.7, 0.1, 1e-3
		}), Fill: Normal(8, 5, DefaultIgnore)}, 10, 0.3, NearTeacher(1, 1)},
		{Case{Name: "distill/temperature", Rows: 17, Cols: 1031, Opts: with(func(o *Opts) { o.Temperature = 2 }), Fill: Normal(3, 0, DefaultIgnore)}, 20, 0.5, near},
		{Case{Name: "distill/V=50257", Rows: 4, Cols: 50257, Opts: def, Fill: Normal(3, 0, DefaultIgnore)}, 20, 0.5, near},
		{Case{Name: "distill/edges", Rows: 3, Cols: 6, Opts: def, Fill: rowsOf([][]float32{
			{0, ninf, 1, 2, ninf, -1}, // a teacher class at -Inf: KL +Inf
			{1, 2, 3, 4, 5, 6},
			{nan, 0, 0, 0, 0, 0},
		}, []int32{0, 5, 1})}, 2, 0.5, func(_ *rand.Rand, z []float32, k int) ([]int32, []float32) {
			return []int32{1, 3}, []float32{float32(math.Log(0.5)), float32(math.Inf(-1))}
		}},
	}
}

// teacherOf returns the teacher of p's rows from c's generator.
func (c DistillCase) teacherOf(seed uint64, p *Problem) *batch.Teacher {
	rng := rand.New(rand.NewPCG(seed, 77))
	t := &batch.Teacher{K: c.K, IDs: make([]int32, c.Rows*c.K), LogProbs: make([]float32, c.Rows*c.K)}
	for i := range c.Rows {
		ids, lp := c.Teacher(rng, p.X[i*p.Stride:i*p.Stride+c.Cols], c.K)
		copy(t.IDs[i*c.K:], ids)
		copy(t.LogProbs[i*c.K:], lp)
	}
	return t
}

// RunDistill runs the distillation table on dev in every element type it
// takes: the mixed per-row losses, their mean and Stats.KL, and the
// gradient into a separate buffer (sum) and in place (mean, token
// weights), against DistillReference and Reference (for the
// cross-entropy's part), within tol relative to the size of their terms.
func RunDistill(t *testing.T, dev device.Device, tol float64) {
	seed := Seed(t)
	for _, typ := range dev.Caps().Types {
		for _, c := range DistillCases() {
			if Shortened(typ, c.Case) {
				continue
			}
			t.Run(fmt.Sprintf("%v/%s/%dx%d/k=%d", typ, c.Name, c.Rows, c.Cols, c.K), func(t *testing.T) {
				runDistill(t, dev, c, typ, seed, tol)
			})
		}
	}
}

func runDistill(t *testing.T, dev device.Device, c DistillCase, typ batch.DType, seed uint64, tol float64) {
	ctx := context.Background()
	p := c.BuildIn(seed, typ)
	tc := c.teacherOf(seed, p)
	dr := DistillReference(p.X, c.Rows, c.Cols, p.Stride, p.Targets, c.Opts, tc)
	ref := p.Ref
	a := c.Alpha
	ltol := max(c.lossTol(tol), 1e-5)
	m := p.Matrix(c.Case, 0, c.Cols)
	e0 := p.E.Clone()
	tw := make([]float32, c.Rows)
	for i := range tw {
		tw[i] = float32(i%3) * 0.75
	}
	for _, weighted := range []bool{false, true} {
		opts := append(c.LossOptions(batch.Mean), batch.KeepRows(), batch.Distill(*tc, a))
		if weighted {
			opts = append(opts, batch.TokenWeights(tw))
		}
		l, err := batch.New(dev, opts...)
		require.NoError(t, err)
		res, err := l.Forward(ctx, m, p.Targets)
		require.NoError(t, err)
		requireSameBits(t, e0, p.E, "forward must not write the logits")
		var sum, kl, den, kslack, lslack float64
		for i := range c.Rows {
			w := 1.0
			if weighted {
				w = float64(tw[i])
			}
			if int64(p.Targets[i]) == c.Opts.Ignore {
				require.Zero(t, res.Losses[i], "row %d is ignored", i)
				require.Zero(t, res.KLRows[i], "row %d is ignored", i)
				continue
			}
			want := (1-a)*ref.Loss[i] + a*dr.KL[i]
			slack := a*(ltol*dr.KLMag[i]+dr.KLSlack[i]) + (1-a)*ref.Slack[i]
			require.True(t, distillClose(float64(res.Losses[i]), w*want, w*(ltol*math.Abs((1-a)*ref.Loss[i])+slack)),
				"%v row %d: loss %v, want %v = (1-%g)·%v + %g·%v (slack %.3g)", typ, i, res.Losses[i], w*want, a, ref.Loss[i], a, dr.KL[i], slack)
			require.True(t, distillClose(res.KLRows[i], dr.KL[i], ltol*dr.KLMag[i]+dr.KLSlack[i]), "%v row %d: KLRows %v, want %v", typ, i, res.KLRows[i], dr.KL[i])
			sum += w * want
			kl += w * dr.KL[i]
			den += w
			kslack += w * (ltol*dr.KLMag[i] + dr.KLSlack[i])
			lslack += w * (ltol*math.Abs((1-a)*ref.Loss[i]) + slack)
		}
		if !math.IsNaN(kl) && !math.IsInf(kl, 0) {
			require.True(t, distillClose(res.KL, kl, kslack), "%v: Stats.KL %v, want %v (slack %.3g)", typ, res.KL, kl, kslack)
		} else {
			require.True(t, math.IsNaN(kl) == math.IsNaN(res.KL) && (math.IsNaN(kl) || res.KL == kl), "%v: Stats.KL %v, want %v", typ, res.KL, kl)
		}
		if den > 0 {
			require.True(t, distillClose(res.Loss*den, sum, lslack+sumSlack(res, sum)), "%v: mean %v, want %v", typ, res.Loss, sum/den)
		}
	}

	// The KL on the partials' path (Loss.KL), with a Loss of the shard of
	// all of the vocabulary.
	ls, err := batch.New(dev, append(c.LossOptions(batch.Mean), batch.Shard(0, c.Cols))...)
	require.NoError(t, err)
	part := batch.NewPartials(c.Rows)
	require.NoError(t, ls.Partials(ctx, part, m, p.Targets))
	kls := make([]float64, c.Rows)
	require.NoError(t, ls.KL(ctx, kls, m, p.Targets, part, *tc))
	for i := range c.Rows {
		if int64(p.Targets[i]) != c.Opts.Ignore {
			require.True(t, distillClose(kls[i], dr.KL[i], ltol*dr.KLMag[i]+dr.KLSlack[i]), "%v row %d: Loss.KL %v, want %v", typ, i, kls[i], dr.KL[i])
		}
	}

	// The gradient, into a separate buffer (sum, upstream 1) and in place
	// (mean, upstream 2, token weights).
	for _, inPlace := range []bool{false, true} {
		red, up, opts := batch.Sum, batch.One, []batch.Option{batch.Distill(*tc, a)}
		if inPlace {
			red, up = batch.Mean, batch.Scalar(2)
			opts = append(opts, batch.TokenWeights(tw))
		}
		l, err := batch.New(dev, append(c.LossOptions(red), opts...)...)
		require.NoError(t, err)
		p.E.CopyFrom(e0)
		g := NewElems(typ, len(p.X), gradGuard)
		gm := batch.GradInto(g.Matrix(0, c.Rows, c.Cols, p.Stride))
		if inPlace {
			g, gm = p.E, batch.InPlace(m)
		}
		_, err = l.ForwardBackward(ctx, gm, m, p.Targets, up)
		require.NoError(t, err)
		scale := func(int) float64 { return 1 }
		if inPlace {
			den := 0.0
			for i, tg := range p.Targets {
				if int64(tg) != c.Opts.Ignore {
					den += float64(tw[i])
				}
			}
			if den == 0 {
				continue
			}
			scale = func(i int) float64 { return 2 * float64(tw[i]) / den }
		}
		for i := range c.Rows {
			s := scale(i)
			for j := range c.Cols {
				got := g.At(i*p.Stride + j)
				if int64(p.Targets[i]) == c.Opts.Ignore {
					require.Zero(t, got, "%v grad[%d][%d] of an ignored row", typ, i, j)
					continue
				}
				want := s * ((1-a)*ref.Grad[i][j] + a*dr.Grad[i][j])
				mag := math.Abs(s) * ((1-a)*ref.Mag[i][j] + a*dr.Mag[i][j])
				slack := math.Abs(s) * (a*dr.Slack[i][j] + (1-a)*ref.UnderAt(i, j))
				if !GradCloseIn(typ, got, want, mag, max(tol, 1e-5), slack) {
					require.Failf(t, "gradient", "%v grad[%d][%d] = %v, want %v (terms %.3g, slack %.3g, in place %v)", typ, i, j, got, want, mag, slack, inPlace)
				}
			}
		}
	}
}

// RunDistillResident checks the distillation of matrices dev holds
// (batch.Upload; their logits at the teacher's classes gathered on dev)
// against the same calls on host rows, on the same device, bit for bit,
// in every element type: Forward's losses and KL, ForwardBackward's
// gradient in place (mean, upstream 2, token weights), Loss.KL, and two
// shards' Partials, KLPartials (and PartialsWithKL, merged with MergeKL)
// and BackwardKL in place; over the
// distillation table, or the cases named.
func RunDistillResident(t *testing.T, dev device.Device, names ...string) {
	if !dev.Caps().Resident {
		t.Skipf("%s holds no matrices", dev.Info().Spec)
	}
	ctx := context.Background()
	seed := Seed(t)
	for _, typ := range dev.Caps().Types {
		for _, c := range DistillCases() {
			if len(names) > 0 && !slices.Contains(names, c.Name) {
				continue
			}
			if Shortened(typ, c.Case) {
				continue
			}
			t.Run(fmt.Sprintf("%v/%s/%dx%d/k=%d", typ, c.Name, c.Rows, c.Cols, c.K), func(t *testing.T) {
				runDistillResident(t, ctx, dev, c, typ, seed)
			})
		}
	}
}

func runDistillResident(t *testing.T, ctx context.Context, dev device.Device, c DistillCase, typ batch.DType, seed uint64) {
	p := c.BuildIn(seed, typ)
	tc := c.teacherOf(seed, p)
	// dense returns a dense host copy of the logits' columns [lo, hi), and
	// the device's copy of it.
	dense := func(lo, hi int) (Elems, *batch.DeviceMatrix) {
		w := hi - lo
		e := NewElems(typ, c.Rows*w, 0)
		for i := range c.Rows {
			for j := range w {
				e.SetBits(i*w+j, p.E.Bits(i*p.Stride+lo+j))
			}
		}
		dm, err := batch.Upload(ctx, dev, e.Matrix(0, c.Rows, w, w))
		require.NoError(t, err)
		t.Cleanup(func() { dm.Release() })
		return e, dm
	}
	// same checks the device's gradient, in place in dm, against the
	// host's, in place in e.
	same := func(e Elems, dm *batch.DeviceMatrix, msg string) {
		t.Helper()
		g := NewElems(typ, e.Len(), gradGuard)
		w := e.Len() / c.Rows
		require.NoError(t, dm.Download(ctx, g.Matrix(0, c.Rows, w, w)))
		requireSameBits(t, e, g, msg)
	}
	tw := make([]float32, c.Rows)
	for i := range tw {
		tw[i] = float32(i%3) * 0.75
	}
	l, err := batch.New(dev, append(c.LossOptions(batch.Mean), batch.KeepRows(), batch.TokenWeights(tw), batch.Distill(*tc, c.Alpha))...)
	require.NoError(t, err)
	e, dm := dense(0, c.Cols)
	m := e.Matrix(0, c.Rows, c.Cols, c.Cols)
	want, err := l.Forward(ctx, m, p.Targets)
	require.NoError(t, err)
	got, err := l.Forward(ctx, dm.Matrix(), p.Targets)
	require.NoError(t, err)
	requireSameF32(t, want.Losses, got.Losses, "Forward's losses")
	requireSameF32(t, []float32{float32(want.KL), float32(want.Loss)}, []float32{float32(got.KL), float32(got.Loss)}, "Forward's KL and loss")

	// Loss.KL on the partials' path.
	ls, err := batch.New(dev, append(c.LossOptions(batch.Mean), batch.Shard(0, c.Cols))...)
	require.NoError(t, err)
	kls := [2][]float64{make([]float64, c.Rows), make([]float64, c.Rows)}
	for k, x := range []batch.Matrix{m, dm.Matrix()} {
		part := batch.NewPartials(c.Rows)
		require.NoError(t, ls.Partials(ctx, part, x, p.Targets))
		require.NoError(t, ls.KL(ctx, kls[k], x, p.Targets, part, *tc))
	}
	require.Equal(t, fmt.Sprint(kls[0]), fmt.Sprint(kls[1]), "Loss.KL") // %v: NaN equal to NaN

	_, err = l.ForwardBackward(ctx, batch.InPlace(m), m, p.Targets, batch.Scalar(2))
	require.NoError(t, err)
	_, err = l.ForwardBackward(ctx, dm.Grad(), dm.Matrix(), p.Targets, batch.Scalar(2))
	require.NoError(t, err)
	same(e, dm, "ForwardBackward in place")

	// Two shards: partials and KL parts merged, each shard's gradient in
	// place.
	if c.Cols < 2 {
		return
	}
	cut := shardCuts(c.Cols, 2)
	var es [2]Elems
	var dms [2]*batch.DeviceMatrix
	for s := range 2 {
		es[s], dms[s] = dense(cut[s], cut[s+1])
	}
	var kp, kp1 [2][]batch.KLPart
	var parts [2][]batch.Partial
	for k := range 2 { // host rows, then the device's
		shard := func(s int) (*batch.Loss, batch.Matrix) {
			l, err := batch.New(dev, append(c.LossOptions(batch.Sum), batch.Shard(cut[s], c.Cols), batch.Distill(*tc, c.Alpha))...)
			require.NoError(t, err)
			if k == 1 {
				return l, dms[s].Matrix()
			}
			w := cut[s+1] - cut[s]
			return l, es[s].Matrix(0, c.Rows, w, w)
		}
		parts[k], kp[k] = batch.NewPartials(c.Rows), make([]batch.KLPart, c.Rows)
		for s := range 2 {
			l, x := shard(s)
			ps := batch.NewPartials(c.Rows)
			require.NoError(t, l.Partials(ctx, ps, x, p.Targets))
			for i := range ps {
				parts[k][i].Merge(ps[i])
			}
		}
		for s := range 2 {
			l, x := shard(s)
			ks := make([]batch.KLPart, c.Rows)
			require.NoError(t, l.KLPartials(ctx, ks, x, p.Targets, parts[k]))
			for i := range ks {
				kp[k][i].Merge(ks[i])
			}
		}
		_, kp1[k] = oneRound(t, c.Rows, 2, func(s int, ps []batch.Partial, ks []batch.KLPart) error {
			l, x := shard(s)
			return l.PartialsWithKL(ctx, ps, ks, x, p.Targets)
		})
		for s := range 2 {
			l, x := shard(s)
			require.NoError(t, l.BackwardKL(ctx, batch.InPlace(x), x, p.Targets, parts[k], kp[k], batch.One))
		}
	}
	require.Equal(t, fmt.Sprint(kp[0]), fmt.Sprint(kp[1]), "the shards' KL parts")
	require.Equal(t, fmt.Sprint(kp1[0]), fmt.Sprint(kp1[1]), "the shards' KL parts, one round (PartialsWithKL)")
	for s := range 2 {
		same(es[s], dms[s], fmt.Sprintf("shard %d's BackwardKL in place", s))
	}
}

// sumSlack is the mean's slack beyond the per-row losses' relative error:
// the rows' own float32 rounding.
func sumSlack(res batch.Result, sum float64) float64 {
	s := 0.0
	for _, v := range res.Losses {
		s += 2 * ulp32(float64(v))
	}
	return s + 1e-6*math.Abs(sum)
}

// distillClose reports whether got is want within slack, or 2 float32
// ulps of it; NaN must match NaN and infinities exactly.
func distillClose(got, want, slack float64) bool {
	if ok, decided := special(got, want); decided {
		return ok
	}
	return math.Abs(got-want) <= max(slack, 2*ulp32(want))
}

// RunLinearDistill checks the fused linear's distillation on dev, H and W
// in each element type it takes, with the default budget and one that
// tiles the vocabulary: the mixed per-row losses, Stats.KL, and dH, dW,
// db of the sum, against the float64 reference of the logits h·w + b,
// allowing the float32 logits' error (LinearRef.ZErr) on top of tol; and
// a float32 W that dev holds (batch.Upload, its logits at the teacher's
// classes gathered on dev) where it keeps one.
func RunLinearDistill(t *testing.T, dev device.Device, tol float64) {
	seed := Seed(t)
	r := rand.New(rand.NewPCG(seed, 21))
	ctx := context.Background()
	for _, typ := range dev.Caps().Types {
		for _, c := range []struct {
			name    string
			n, d, v int
			k       int
			alpha   float64
			o       Opts
		}{
			{"plain", 29, 16, 211, 7, 0.5, Opts{Ignore: DefaultIgnore}},
			{"kl-only/options", 17, 24, 97, 12, 1, Opts{Ignore: DefaultIgnore, Softcap: 10, Temperature: 0.8, Smoothing: 0.1}},
		} {
			p := NewLinearProblem(r, c.n, c.d, c.v, 4, true, 5, 3, c.o).In(typ)
			lr := p.Reference()
			zr := p.logits()
			rng := rand.New(rand.NewPCG(seed, 23))
			tc := &batch.Teacher{K: c.k}
			for i := range p.N {
				z := make([]float32, p.V) // rounded, for the teacher
				for j, v := range zr[i] {
					z[j] = float32(v)
				}
				ids, lp := NearTeacher(1, 1)(rng, z, c.k)
				tc.IDs, tc.LogProbs = append(tc.IDs, ids...), append(tc.LogProbs, lp...)
			}
			dr, mix := p.distillRefs(lr, zr, tc, c.alpha, tol)
			for _, run := range []struct {
				budget   int
				resident bool
			}{{0, false}, {4*c.v*3 + 4, false}, {0, true}} {
				budget := run.budget
				if run.resident && (typ != batch.F32 || !dev.Caps().Resident || !dev.Caps().Linear) {
					continue
				}
				t.Run(fmt.Sprintf("%v/%s/%dx%dx%d/k=%d/budget=%d/resident=%v", typ, c.name, c.n, c.d, c.v, c.k, budget, run.resident), func(t *testing.T) {
					// wm returns W's classes [lo, hi): host rows, or a copy on dev.
					wm := func(lo, hi int) batch.Matrix {
						m := p.WM()
						if m.Data != nil {
							m.Data = m.Data[lo*m.Stride:]
						} else {
							m.Half = m.Half[lo*m.Stride:]
						}
						m.Rows = hi - lo
						if !run.resident {
							return m
						}
						dm, err := batch.Upload(ctx, dev, m)
						require.NoError(t, err)
						t.Cleanup(func() { dm.Release() })
						return dm.Matrix()
					}
					w := wm(0, p.V)
					l, err := batch.NewLinear(dev, LinearOptions(c.o, batch.Sum, batch.Budget(budget), batch.KeepRows(), batch.Distill(*tc, c.alpha))...)
					require.NoError(t, err)
					g, w0, b0 := randomGrads(r, p)
					s := make([]float64, p.N)
					for i := range s {
						s[i] = 1
					}
					for pass, fb := range []bool{false, true} {
						var res batch.Result
						if fb {
							res, err = l.ForwardBackward(ctx, g, p.HM(), w, p.Bias, p.Targets, batch.One)
						} else {
							res, err = l.Forward(ctx, p.HM(), w, p.Bias, p.Targets)
						}
						require.NoError(t, err)
						kl := 0.0
						for i := range p.N {
							if int64(p.Targets[i]) == p.Opts.Ignore {
								require.Zero(t, res.Losses[i])
								continue
							}
							want := (1-c.alpha)*lr.Loss[i] + c.alpha*dr.KL[i]
							slack := (1-c.alpha)*lr.lossTol(i, tol) + c.alpha*(max(tol, 1e-5)*dr.KLMag[i]+dr.KLSlack[i]+8*lr.ZErr[i])
							require.True(t, distillClose(float64(res.Losses[i]), want, slack), "pass %d row %d: loss %v, want %v (slack %.3g)", pass, i, res.Losses[i], want, slack)
							require.True(t, distillClose(res.KLRows[i], dr.KL[i], max(tol, 1e-5)*dr.KLMag[i]+dr.KLSlack[i]+8*lr.ZErr[i]), "pass %d row %d: KLRows %v, want %v", pass, i, res.KLRows[i], dr.KL[i])
							kl += dr.KL[i]
						}
						require.True(t, distillClose(res.KL, kl, 1e-4*math.Abs(kl)+1e-5), "pass %d: KL %v, want %v", pass, res.KL, kl)
					}
					// Linear.KL, on the partials' path.
					ls, err := batch.NewLinear(dev, LinearOptions(c.o, batch.Sum, batch.Budget(budget), batch.Shard(0, p.V))...)
					require.NoError(t, err)
					part := batch.NewPartials(p.N)
					require.NoError(t, ls.Partials(ctx, part, p.HM(), w, p.Bias, p.Targets))
					kls := make([]float64, p.N)
					require.NoError(t, ls.KL(ctx, kls, p.HM(), w, p.Bias, p.Targets, part, *tc))
					// Linear.PartialsKL: the same partials, the KL in the same pass.
					part2, kls2 := batch.NewPartials(p.N), make([]float64, p.N)
					require.NoError(t, ls.PartialsKL(ctx, part2, kls2, p.HM(), w, p.Bias, p.Targets, *tc))
					if dev.Info().Kind != "group" { // its split follows the measured speeds, call by call
						require.Equal(t, part, part2, "PartialsKL's partials")
					}
					for i := range p.N {
						if int64(p.Targets[i]) != p.Opts.Ignore {
							slack := max(tol, 1e-5)*dr.KLMag[i] + dr.KLSlack[i] + 8*lr.ZErr[i]
							require.True(t, distillClose(kls[i], dr.KL[i], slack), "row %d: Linear.KL %v, want %v", i, kls[i], dr.KL[i])
							require.True(t, distillClose(kls2[i], dr.KL[i], slack), "row %d: Linear.PartialsKL %v, want %v", i, kls2[i], dr.KL[i])
						}
					}
					mix.Grads(w0, b0, s, tol).Check(t, g, p.N, p.D, p.V)

					// Three shards of W's classes: partials and KL parts merged,
					// FinishKL, each shard's BackwardKL adding its part of dH.
					cuts := shardCuts(p.V, 3)
					ws := make([]batch.Matrix, 3)
					for s := range ws {
						ws[s] = wm(cuts[s], cuts[s+1])
					}
					wOf := func(s int) batch.Matrix { return ws[s] }
					lins := make([]*batch.Linear, 3)
					for sh := range lins {
						lins[sh], err = batch.NewLinear(dev, LinearOptions(c.o, batch.Sum, batch.Budget(budget), batch.Shard(cuts[sh], p.V), batch.Distill(*tc, c.alpha))...)
						require.NoError(t, err)
					}
					bias := func(sh int) []float32 { return p.Bias[cuts[sh]:cuts[sh+1]] }
					kl := 0.0
					for i := range p.N {
						if int64(p.Targets[i]) != p.Opts.Ignore {
							kl += dr.KL[i]
						}
					}
					// Each shard's partials and KL parts in one pass, merged
					// pairwise (one all-reduce), or the partials merged first
					// (two).
					for _, one := range []bool{false, true} {
						var merged []batch.Partial
						var kp []batch.KLPart
						if one {
							merged, kp = oneRound(t, p.N, 3, func(sh int, ps []batch.Partial, ks []batch.KLPart) error {
								return lins[sh].PartialsWithKL(ctx, ps, ks, p.HM(), wOf(sh), bias(sh), p.Targets)
							})
						} else {
							merged, kp = twoRounds(t, p.N, 3, func(sh int, ps []batch.Partial) error {
								return lins[sh].Partials(ctx, ps, p.HM(), wOf(sh), bias(sh), p.Targets)
							}, func(sh int, ks []batch.KLPart, merged []batch.Partial) error {
								return lins[sh].KLPartials(ctx, ks, p.HM(), wOf(sh), bias(sh), p.Targets, merged)
							})
						}
						res, err := lins[0].FinishKL(merged, kp, p.Targets)
						require.NoError(t, err)
						require.True(t, distillClose(res.KL, kl, 1e-4*math.Abs(kl)+1e-5), "shards (one round %v): KL %v, want %v", one, res.KL, kl)
						g, w0, b0 = randomGrads(r, p)
						clear(g.H.Matrix().Data) // the shards add their parts
						for sh := range 3 {
							gs := g
							ws := g.W.Matrix()
							ws.Data, ws.Rows = ws.Data[cuts[sh]*ws.Stride:], cuts[sh+1]-cuts[sh]
							gs.W = batch.GradInto(ws)
							gs.Bias = g.Bias[cuts[sh]:cuts[sh+1]]
							require.NoError(t, lins[sh].BackwardKL(ctx, gs, p.HM(), wOf(sh), bias(sh), p.Targets, merged, kp, batch.One))
						}
						mix.Grads(w0, b0, s, tol).Check(t, g, p.N, p.D, p.V)
					}
				})
			}
		}
	}
}

// RunDistillGolden checks dev's distillation against the PyTorch values
// written by testdata/golden/distill/gen.py: the mixed per-row losses
// (reduction none), Stats.KL, the sum and the mean, and the gradient of
// the sum, within tol of the size of their terms (DistillReference's and
// Reference's) plus the student tail's slack.
func RunDistillGolden(t *testing.T, dev device.Device, tol float64) {
	var doc struct {
		Torch string `json:"torch"`
		Cases []struct {
			goldenCase
			K      int     `json:"k"`
			Alpha  float64 `json:"alpha"`
			KL     float64 `json:"kl"`
			Linear bool    `json:"linear"`
		} `json:"cases"`
	}
	readJSON(t, "distill/cases.json", &doc)
	require.NotEmpty(t, doc.Cases)
	t.Logf("golden values from torch %s", doc.Torch)
	ctx := context.Background()
	for _, gc := range doc.Cases {
		if gc.Linear {
			continue // RunLinearDistillGolden's
		}
		t.Run(gc.Name, func(t *testing.T) {
			var x, lp []float32
			var tg, ids64 []int64
			var rows, kls, grad []float64
			for name, ptr := range map[string]any{"logits": &x, "targets": &tg, "ids": &ids64, "logprobs": &lp, "rows": &rows, "kl": &kls, "grad": &grad} {
				readNpy(t, "distill/"+gc.Name+"_"+name+".npy", ptr)
			}
			n := len(tg)
			cols := len(x) / n
			targets := make([]int32, n)
			for i, v := range tg {
				targets[i] = int32(v)
			}
			tc := batch.Teacher{K: gc.K, IDs: make([]int32, len(ids64)), LogProbs: lp}
			for k, v := range ids64 {
				tc.IDs[k] = int32(v)
			}
			o := gc.opts(t, "")
			c := Case{Opts: o}
			a := gc.Alpha
			ref := Reference(x, n, cols, cols, targets, o)
			dr := DistillReference(x, n, cols, cols, targets, o, &tc)
			rowTol := func(i int) float64 {
				return tol*((1-a)*max(1, math.Abs(ref.Loss[i]))+a*dr.KLMag[i]) + a*dr.KLSlack[i] + (1-a)*ref.Slack[i]
			}
			none, err := batch.New(dev, append(c.LossOptions(batch.None), batch.Distill(tc, a))...)
			require.NoError(t, err)
			r, err := none.Forward(ctx, batch.NewMatrix(x, n, cols), targets)
			require.NoError(t, err)
			klTol := 0.0
			for i := range rows {
				require.True(t, distillClose(float64(r.Losses[i]), rows[i], rowTol(i)), "row %d: %v, torch %v", i, r.Losses[i], rows[i])
				klTol += tol*dr.KLMag[i] + dr.KLSlack[i]
			}
			require.True(t, distillClose(r.KL, gc.KL, klTol), "KL %v, torch %v", r.KL, gc.KL)
			sum, err := batch.New(dev, append(c.LossOptions(batch.Sum), batch.Distill(tc, a))...)
			require.NoError(t, err)
			g := make([]float32, len(x))
			r, err = sum.ForwardBackward(ctx, batch.NewGrad(g, n, cols), batch.NewMatrix(x, n, cols), targets, batch.One)
			require.NoError(t, err)
			require.True(t, distillClose(r.Loss, *gc.Sum, tol*math.Abs(*gc.Sum)+klTol), "sum %v, torch %v", r.Loss, *gc.Sum)
			for k := range g {
				i, j := k/cols, k%cols
				mag := (1-a)*ref.Mag[i][j] + a*dr.Mag[i][j]
				if !GradClose(g[k], grad[k], mag, tol) && !(math.Abs(float64(g[k])-grad[k]) <= tol*mag+a*dr.Slack[i][j]) {
					require.Failf(t, "gradient", "grad[%d][%d] = %v, torch %v (terms of size %.3g)", i, j, g[k], grad[k], mag)
				}
			}
			mean, err := batch.New(dev, append(c.LossOptions(batch.Mean), batch.Distill(tc, a))...)
			require.NoError(t, err)
			r, err = mean.Forward(ctx, batch.NewMatrix(x, n, cols), targets)
			require.NoError(t, err)
			require.True(t, distillClose(r.Loss, orNaN(gc.Mean), tol*math.Abs(orNaN(gc.Mean))+klTol/max(1, float64(r.Counted))), "mean %v, torch %v", r.Loss, orNaN(gc.Mean))
		})
	}
}

// RunDistillShards checks a distillation split over vocabulary shards on
// dev (every element type, 2 and 3 shards, merged out of order): each
// shard's Partials, merged, then its KLPartials, merged, give FinishKL's
// mixed losses and KL, and each shard's BackwardKL its columns of the
// gradient, as DistillReference says.
func RunDistillShards(t *testing.T, dev device.Device, tol float64) {
	ctx := context.Background()
	seed := Seed(t)
	for _, typ := range dev.Caps().Types {
		for _, c := range DistillCases() {
			if Shortened(typ, c.Case) {
				continue
			}
			for _, k := range []int{2, 3} {
				if k > c.Cols {
					continue
				}
				t.Run(fmt.Sprintf("%v/%s/%dx%d/k=%d/shards=%d", typ, c.Name, c.Rows, c.Cols, c.K, k), func(t *testing.T) {
					runDistillShards(t, ctx, dev, c, typ, k, seed, tol)
				})
			}
		}
	}
}

func runDistillShards(t *testing.T, ctx context.Context, dev device.Device, c DistillCase, typ batch.DType, k int, seed uint64, tol float64) {
	p := c.BuildIn(seed, typ)
	tc := c.teacherOf(seed, p)
	dr := DistillReference(p.X, c.Rows, c.Cols, p.Stride, p.Targets, c.Opts, tc)
	ref, a := p.Ref, c.Alpha
	ltol := max(c.lossTol(tol), 1e-5)
	cut := shardCuts(c.Cols, k)
	shard := func(s int) (*batch.Loss, batch.Matrix) {
		l, err := batch.New(dev, append(c.LossOptions(batch.None), batch.Shard(cut[s], c.Cols), batch.Distill(*tc, a))...)
		require.NoError(t, err)
		return l, p.Matrix(c.Case, cut[s], cut[s+1]-cut[s])
	}
	for _, one := range []bool{false, true} {
		var part []batch.Partial
		var kp []batch.KLPart
		if one {
			part, kp = oneRound(t, c.Rows, k, func(s int, ps []batch.Partial, ks []batch.KLPart) error {
				l, m := shard(s)
				return l.PartialsWithKL(ctx, ps, ks, m, p.Targets)
			})
		} else {
			part, kp = twoRounds(t, c.Rows, k, func(s int, ps []batch.Partial) error {
				l, m := shard(s)
				return l.Partials(ctx, ps, m, p.Targets)
			}, func(s int, ks []batch.KLPart, part []batch.Partial) error {
				l, m := shard(s)
				return l.KLPartials(ctx, ks, m, p.Targets, part)
			})
		}
		l0, _ := shard(0)
		res, err := l0.FinishKL(part, kp, p.Targets)
		require.NoError(t, err)
		for i := range c.Rows {
			if int64(p.Targets[i]) == c.Opts.Ignore {
				continue
			}
			want := (1-a)*ref.Loss[i] + a*dr.KL[i]
			slack := ltol*math.Abs((1-a)*ref.Loss[i]) + a*(ltol*dr.KLMag[i]+dr.KLSlack[i]) + (1-a)*ref.Slack[i]
			require.True(t, distillClose(float64(res.Losses[i]), want, slack), "%v row %d (one round %v): loss %v, want %v (slack %.3g)", typ, i, one, res.Losses[i], want, slack)
		}
		g := NewElems(typ, len(p.X), gradGuard)
		for s := range k {
			l, m := shard(s)
			require.NoError(t, l.BackwardKL(ctx, batch.GradInto(g.Matrix(cut[s], c.Rows, cut[s+1]-cut[s], p.Stride)), m, p.Targets, part, kp, batch.One))
		}
		for i := range c.Rows {
			for j := range c.Cols {
				got := g.At(i*p.Stride + j)
				if int64(p.Targets[i]) == c.Opts.Ignore {
					require.Zero(t, got, "%v grad[%d][%d] of an ignored row", typ, i, j)
					continue
				}
				want := (1-a)*ref.Grad[i][j] + a*dr.Grad[i][j]
				mag := (1-a)*ref.Mag[i][j] + a*dr.Mag[i][j]
				if !GradCloseIn(typ, got, want, mag, max(tol, 1e-5), a*dr.Slack[i][j]+(1-a)*ref.UnderAt(i, j)) {
					require.Failf(t, "gradient", "%v grad[%d][%d] = %v, want %v (terms %.3g, %d shards, one round %v)", typ, i, j, got, want, mag, k, one)
				}
			}
		}
	}
}

// twoRounds returns the partials of rows rows over k shards, each
// shard's from partials(s, dst), merged, then their KL parts, each from
// klParts(s, dst, merged), merged, the shards in a scrambled order each
// round: a distillation's two all-reduces.
func twoRounds(t *testing.T, rows, k int, partials func(s int, dst []batch.Partial) error, klParts func(s int, dst []batch.KLPart, merged []batch.Partial) error) ([]batch.Partial, []batch.KLPart) {
	t.Helper()
	part := batch.NewPartials(rows)
	for _, s := range scramble(k) {
		ps := batch.NewPartials(rows)
		require.NoError(t, partials(s, ps))
		for i := range part {
			part[i].Merge(ps[i])
		}
	}
	kp := make([]batch.KLPart, rows)
	for _, s := range scramble(k) {
		ks := make([]batch.KLPart, rows)
		require.NoError(t, klParts(s, ks, part))
		for i := range kp {
			kp[i].Merge(ks[i])
		}
	}
	return part, kp
}

// oneRound returns the partials and KL parts of rows rows over k shards,
// each shard's pair from both(s, dst, kdst) (PartialsWithKL), merged with
// MergeKL from the right in a scrambled order (each shard into the union
// of the ones after it): a distillation's one all-reduce.
func oneRound(t *testing.T, rows, k int, both func(s int, dst []batch.Partial, kdst []batch.KLPart) error) ([]batch.Partial, []batch.KLPart) {
	t.Helper()
	part, kp := batch.NewPartials(rows), make([]batch.KLPart, rows)
	order := scramble(k)
	for n := k - 1; n >= 0; n-- {
		ps, ks := batch.NewPartials(rows), make([]batch.KLPart, rows)
		require.NoError(t, both(order[n], ps, ks))
		for i := range rows {
			batch.MergeKL(&ps[i], &ks[i], part[i], kp[i])
		}
		part, kp = ps, ks
	}
	return part, kp
}

// RunLinearDistillGolden checks dev's fused linear distillation against
// the PyTorch values of testdata/golden/distill/gen.py's linear cases
// (z = F.linear(h, w, b) in float64), with the default budget and one
// that tiles the vocabulary: the mixed per-row losses, Stats.KL, and dH,
// dW, db of the sum, within the float64 reference's allowances (the
// float32 logits' error, LinearRef.ZErr, and the student tail's slack)
// around PyTorch's values.
func RunLinearDistillGolden(t *testing.T, dev device.Device, tol float64) {
	var doc struct {
		Torch string `json:"torch"`
		Cases []struct {
			goldenCase
			N, D, V, K int
			Alpha      float64 `json:"alpha"`
			KL         float64 `json:"kl"`
			Linear     bool    `json:"linear"`
		} `json:"cases"`
	}
	readJSON(t, "distill/cases.json", &doc)
	ctx := context.Background()
	n := 0
	for _, gc := range doc.Cases {
		if !gc.Linear {
			continue
		}
		n++
		for _, budget := range []int{0, 4 * 3 * gc.V} {
			t.Run(fmt.Sprintf("%s/budget=%d", gc.Name, budget), func(t *testing.T) {
				file := func(s string) string { return "distill/" + gc.Name + "_" + s + ".npy" }
				p := &LinearProblem{N: gc.N, D: gc.D, V: gc.V, SH: gc.D, SW: gc.D, Opts: gc.opts(t, "")}
				var tg, ids64 []int64
				var lp []float32
				var rows, kls, dh, dw, db []float64
				for name, ptr := range map[string]any{"h": &p.H, "w": &p.W, "b": &p.Bias, "targets": &tg, "ids": &ids64, "logprobs": &lp,
					"rows": &rows, "kl": &kls, "dh": &dh, "dw": &dw, "db": &db} {
					readNpy(t, file(name), ptr)
				}
				p.Targets = make([]int32, len(tg))
				for i, v := range tg {
					p.Targets[i] = int32(v)
				}
				tc := batch.Teacher{K: gc.K, IDs: make([]int32, len(ids64)), LogProbs: lp}
				for k, v := range ids64 {
					tc.IDs[k] = int32(v)
				}
				lr := p.Reference()
				a := gc.Alpha
				dr, mix := p.distillRefs(lr, p.logits(), &tc, a, tol)
				l, err := batch.NewLinear(dev, LinearOptions(p.Opts, batch.Sum, batch.Budget(budget), batch.KeepRows(), batch.Distill(tc, a))...)
				require.NoError(t, err)
				g := batch.LinearGrads{H: batch.NewGrad(make([]float32, gc.N*gc.D), gc.N, gc.D),
					W: batch.NewGrad(make([]float32, gc.V*gc.D), gc.V, gc.D), Bias: make([]float32, gc.V)}
				res, err := l.ForwardBackward(ctx, g, p.HM(), p.WM(), p.Bias, p.Targets, batch.One)
				require.NoError(t, err)
				klTol := 0.0
				for i := range rows {
					if int64(p.Targets[i]) == p.Opts.Ignore {
						require.Zero(t, res.Losses[i])
						continue
					}
					slack := (1-a)*lr.lossTol(i, tol) + a*(max(tol, 1e-5)*dr.KLMag[i]+dr.KLSlack[i]+8*lr.ZErr[i])
					require.True(t, distillClose(float64(res.Losses[i]), rows[i], slack), "row %d: %v, torch %v (slack %.3g)", i, res.Losses[i], rows[i], slack)
					klTol += max(tol, 1e-5)*dr.KLMag[i] + dr.KLSlack[i] + 8*lr.ZErr[i]
				}
				require.True(t, distillClose(res.KL, gc.KL, klTol), "KL %v, torch %v", res.KL, gc.KL)
				s := make([]float64, gc.N)
				for i := range s {
					s[i] = 1
				}
				e := mix.Grads(make([]float32, gc.V*gc.D), make([]float32, gc.V), s, tol)
				e.torch(t, dh, dw, db, 1e-7)
				e.Check(t, g, gc.N, gc.D, gc.V)
			})
		}
	}
	require.NotZero(t, n, "no linear case in distill/cases.json")
}

// logits returns p's logits h·w + b in float64.
func (p *LinearProblem) logits() [][]float64 {
	zr := make([][]float64, p.N)
	for i := range p.N {
		zr[i] = make([]float64, p.V)
		for j := range p.V {
			v := 0.0
			if p.Bias != nil {
				v = float64(p.Bias[j])
			}
			for d := range p.D {
				v += float64(p.H[i*p.SH+d]) * float64(p.W[j*p.SW+d])
			}
			zr[i][j] = v
		}
	}
	return zr
}

// distillRefs returns the distillation reference of p's logits zr against
// tc, and the mixed reference of (1-α)·CE + α·KL: lr's with the gradient
// and the sizes of its terms mixed, the KL's tail slack in the sizes
// (relative to tol).
func (p *LinearProblem) distillRefs(lr *LinearRef, zr [][]float64, tc *batch.Teacher, a, tol float64) (*DistillRef, *LinearRef) {
	dr := distillReference(p.N, p.V, func(i int, row []float64) { copy(row, zr[i]) }, lr.ZErr, p.Targets, p.Opts, tc)
	mix := *lr
	mref := *lr.Ref
	mix.Ref = &mref
	mref.Grad, mref.Mag = make([][]float64, p.N), make([][]float64, p.N)
	for i := range p.N {
		mref.Grad[i], mref.Mag[i] = make([]float64, p.V), make([]float64, p.V)
		for j := range p.V {
			mref.Grad[i][j] = (1-a)*lr.Grad[i][j] + a*dr.Grad[i][j]
			mref.Mag[i][j] = (1-a)*lr.Mag[i][j] + a*(dr.Mag[i][j]+dr.Slack[i][j]/tol)
		}
	}
	return dr, &mix
}
