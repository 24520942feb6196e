package batch_test

import (
	"cmp"
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/batch"
	"github.com/xentlab/xent/ce"
	"github.com/xentlab/xent/cpu"
	"github.com/xentlab/xent/device"
)

// distillInputs is a 3 × 5 problem with a teacher's top-2 of each row;
// row 1 is ignored, and its teacher entries are junk that must not be
// read.
func distillInputs() ([]float32, []int32, batch.Teacher) {
	x := []float32{1, 2, 3, 4, 5, 0, -1, 2, 0.5, 1, 3, 3, -2, 0, 1}
	tg := []int32{4, -100, 0}
	l := func(p float64) float32 { return float32(math.Log(p)) }
	tc := batch.Teacher{K: 2, IDs: []int32{4, 3, -7, 99, 1, 0}, LogProbs: []float32{l(0.6), l(0.3), float32(math.NaN()), 5, l(0.5), l(0.5)}}
	return x, tg, tc
}

// TestDistillErrors: bad teacher data and options that do not combine
// with distillation are clear errors, naming the row and the entry, with
// nothing written.
func TestDistillErrors(t *testing.T) {
	ctx := context.Background()
	dev := device.NewCPU(cpu.Default())
	x, tg, good := distillInputs()
	m := batch.NewMatrix(x, 3, 5)
	bad := func(f func(*batch.Teacher)) batch.Teacher {
		c := good
		c.IDs, c.LogProbs = slices.Clone(good.IDs), slices.Clone(good.LogProbs)
		f(&c)
		return c
	}
	for _, c := range []struct {
		name     string
		tc       batch.Teacher
		row, pos int
		msg      string
	}{
		{"out of range", bad(func(c *batch.Teacher) { c.IDs[5] = 5 }), 2, 1, "class 5 is out of bounds [0, 5)"},
		{"negative", bad(func(c *batch.Teacher) { c.IDs[0] = -1 }), 0, 0, "class -1 is out of bounds"},
		{"repeated", bad(func(c *batch.Teacher) { c.IDs[5] = 1 }), 2, 1, "class 1 appears twice (entries 0 and 1)"},
		{"NaN", bad(func(c *batch.Teacher) { c.LogProbs[1] = float32(math.NaN()) }), 0, 1, "log-probability NaN"},
		{"+Inf", bad(func(c *batch.Teacher) { c.LogProbs[4] = float32(math.Inf(1)) }), 2, 0, "log-probability +Inf"},
		{"mass", bad(func(c *batch.Teacher) { c.LogProbs[0] = 0 }), 0, -1, "sum to 1.3"},
	} {
		t.Run(c.name, func(t *testing.T) {
			l, err := batch.New(dev, batch.Distill(c.tc, 0.5))
			require.NoError(t, err)
			g := make([]float32, len(x))
			for k := range g {
				g[k] = 7
			}
			_, err = l.ForwardBackward(ctx, batch.NewGrad(g, 3, 5), m, tg, batch.One)
			require.ErrorIs(t, err, batch.ErrTeacher)
			var te *batch.TeacherError
			require.True(t, errors.As(err, &te))
			require.Equal(t, c.row, te.Row)
			require.Equal(t, c.pos, te.Pos)
			require.Contains(t, err.Error(), c.msg)
			for _, v := range g {
				require.Equal(t, float32(7), v, "nothing written")
			}
			_, err = l.Forward(ctx, m, tg)
			require.ErrorIs(t, err, batch.ErrTeacher)
		})
	}
	// A mass above 1 by rounding is a distribution's; the tail is 0.
	l, err := batch.New(dev, batch.Distill(bad(func(c *batch.Teacher) { c.LogProbs[4] += 1e-4 }), 0.5))
	require.NoError(t, err)
	_, err = l.Forward(ctx, m, tg)
	require.NoError(t, err)

	for _, c := range []struct {
		name string
		opts []batch.Option
		want error
	}{
		{"alpha", []batch.Option{batch.Distill(good, 1.5)}, batch.ErrOption},
		{"alpha NaN", []batch.Option{batch.Distill(good, math.NaN())}, batch.ErrOption},
		{"k", []batch.Option{batch.Distill(batch.Teacher{K: 0}, 0.5)}, batch.ErrOption},
		{"ragged", []batch.Option{batch.Distill(batch.Teacher{K: 2, IDs: []int32{1, 2, 3}, LogProbs: []float32{0, 0, 0}}, 0.5)}, batch.ErrShape},
		{"class weights", []batch.Option{batch.Distill(good, 0.5), batch.Weights([]float32{1, 1, 1, 1, 1})}, batch.ErrOption},
	} {
		_, err := batch.New(dev, c.opts...)
		require.ErrorIs(t, err, c.want, c.name)
	}
	// A shard's distillation takes its steps: not Forward, not the
	// cross-entropy's Finish and Backward (they would leave the KL out).
	sl, err := batch.New(dev, batch.Distill(good, 0.5), batch.Shard(0, 5))
	require.NoError(t, err)
	_, err = sl.Forward(ctx, m, tg)
	require.ErrorIs(t, err, batch.ErrOption)
	part := batch.NewPartials(3)
	require.NoError(t, sl.Partials(ctx, part, m, tg))
	_, err = sl.Finish(part, tg)
	require.ErrorContains(t, err, "FinishKL")
	require.ErrorContains(t, sl.Backward(ctx, batch.InPlace(m), m, tg, part, batch.One), "BackwardKL")
	require.ErrorIs(t, sl.KLPartials(ctx, make([]batch.KLPart, 2), m, tg, part), batch.ErrBuffer)
	plain, err := batch.New(dev, batch.Shard(0, 5))
	require.NoError(t, err)
	require.ErrorContains(t, plain.KLPartials(ctx, make([]batch.KLPart, 3), m, tg, part), "without a teacher")
	_, err = plain.FinishKL(part, make([]batch.KLPart, 3), tg)
	require.ErrorIs(t, err, batch.ErrOption)

	// A teacher of another batch's rows.
	l, err = batch.New(dev, batch.Distill(batch.Teacher{K: 1, IDs: []int32{0, 1}, LogProbs: []float32{0, 0}}, 0.5))
	require.NoError(t, err)
	_, err = l.Forward(ctx, m, tg)
	require.ErrorIs(t, err, batch.ErrShape)
	require.ErrorContains(t, err, "teacher's 3 rows")

	// A device matrix: its logits at the teacher's classes are gathered on
	// its device (the same values as the host's); another device's is
	// refused, and a released one.
	l, err = batch.New(dev, batch.Distill(good, 0.5))
	require.NoError(t, err)
	dm, err := batch.Upload(ctx, dev, m)
	require.NoError(t, err)
	want, err := l.Forward(ctx, m, tg)
	require.NoError(t, err)
	got, err := l.Forward(ctx, dm.Matrix(), tg)
	require.NoError(t, err)
	require.Equal(t, want.Losses, got.Losses)
	require.Equal(t, want.KL, got.KL)
	other, err := batch.New(device.NewCPU(cpu.Default()), batch.Distill(good, 0.5))
	require.NoError(t, err)
	_, err = other.Forward(ctx, dm.Matrix(), tg)
	require.ErrorIs(t, err, batch.ErrOption)
	require.NoError(t, dm.Release())
	_, err = l.Forward(ctx, dm.Matrix(), tg)
	require.ErrorIs(t, err, device.ErrReleased)
}

// TestDistillCopies: the teacher's slices are copied by Distill; the
// caller may reuse them.
func TestDistillCopies(t *testing.T) {
	ctx := context.Background()
	dev := device.NewCPU(cpu.Default())
	x, tg, tc := distillInputs()
	l, err := batch.New(dev, batch.Distill(tc, 1))
	require.NoError(t, err)
	before, err := l.Forward(ctx, batch.NewMatrix(x, 3, 5), tg)
	require.NoError(t, err)
	tc.IDs[0], tc.LogProbs[0] = 2, -9
	after, err := l.Forward(ctx, batch.NewMatrix(x, 3, 5), tg)
	require.NoError(t, err)
	require.Equal(t, before.Loss, after.Loss)
	require.InEpsilon(t, before.KL, after.Loss*before.Denom, 1e-6, "α = 1: the loss is the KL")
}

// BenchmarkDistill times the distillation beside the plain cross-entropy
// in one run, at GPT-2's vocabulary (1024 × 50257 logits, a teacher's
// top-64), on the CPU: the forward (one pass, then the gather) and the
// forward + backward (the partials' pass, then the backward's, where the
// cross-entropy fuses both in one):
//
//	go test -run XXX -bench Distill ./batch
func BenchmarkDistill(b *testing.B) {
	const rows, cols, k = 1024, 50257, 64
	r := rand.New(rand.NewPCG(1, 2))
	x := make([]float32, rows*cols)
	for i := range x {
		x[i] = float32(r.NormFloat64() * 2)
	}
	tg := make([]int32, rows)
	tc := batch.Teacher{K: k, IDs: make([]int32, rows*k), LogProbs: make([]float32, rows*k)}
	for i := range rows {
		tg[i] = int32(r.IntN(cols))
		for j, c := range r.Perm(cols)[:k] {
			tc.IDs[i*k+j], tc.LogProbs[i*k+j] = int32(c), float32(-5-r.Float64())
		}
	}
	dev := device.NewCPU(cpu.Default())
	m := batch.NewMatrix(x, rows, cols)
	g := batch.NewGrad(make([]float32, rows*cols), rows, cols)
	for _, c := range []struct {
		name string
		opts []batch.Option
	}{{"ce", nil}, {"distill", []batch.Option{batch.Distill(tc, 0.5)}}} {
		l, err := batch.New(dev, c.opts...)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("forward/"+c.name, func(b *testing.B) {
			b.SetBytes(4 * rows * cols)
			for b.Loop() {
				if _, err := l.Forward(context.Background(), m, tg); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("forward+backward/"+c.name, func(b *testing.B) {
			b.SetBytes(4 * rows * cols)
			for b.Loop() {
				if _, err := l.ForwardBackward(context.Background(), g, m, tg, batch.One); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	// The fused linear, 512 rows × 32000 classes × 512 features: the
	// cross-entropy takes the vocabulary in one chunk's pass, products and
	// gradients together; the distillation makes the products twice (its
	// partials, then its backward) and each row's K·D products on the host.
	const n, v, d = 512, 32000, 512
	h, w := make([]float32, n*d), make([]float32, v*d)
	for i := range h {
		h[i] = float32(r.NormFloat64())
	}
	for i := range w {
		w[i] = float32(r.NormFloat64() / 16)
	}
	lg := batch.LinearGrads{H: batch.NewGrad(make([]float32, n*d), n, d), W: batch.NewGrad(make([]float32, v*d), v, d)}
	ltc := batch.Teacher{K: k, IDs: make([]int32, n*k), LogProbs: tc.LogProbs[:n*k]}
	ltg := make([]int32, n)
	for i := range n {
		ltg[i] = int32(r.IntN(v))
		for j, c := range r.Perm(v)[:k] {
			ltc.IDs[i*k+j] = int32(c)
		}
	}
	for _, c := range []struct {
		name string
		opts []batch.Option
	}{{"ce", nil}, {"distill", []batch.Option{batch.Distill(ltc, 0.5)}}} {
		l, err := batch.NewLinear(dev, c.opts...)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("linear/forward+backward/"+c.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := l.ForwardBackward(context.Background(), lg, batch.NewMatrix(h, n, d), batch.NewMatrix(w, v, d), nil, ltg, batch.One); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// picking is the CPU device counting its LinearPartialsAt calls
// (device.LinearPicker), or refusing them as a device whose path has no
// pick does.
type picking struct {
	*device.CPUDevice
	picks  int
	refuse bool
}

func (d *picking) LinearPartialsAt(ctx context.Context, dst []batch.Partial, z []float32, cols []int32, k int, lin *ce.Linear, targets []int32, p *ce.Problem) error {
	d.picks++
	if d.refuse {
		return device.ErrNotImplemented
	}
	return d.CPUDevice.LinearPartialsAt(ctx, dst, z, cols, k, lin, targets, p)
}

// TestDistillLinearPicks: a fused linear's distillation takes the
// student's logits at the teacher's classes from its partials' pass where
// the device picks them (one LinearPartialsAt a call), and computes them
// apart where it refuses, to the same results within the products'
// rounding.
func TestDistillLinearPicks(t *testing.T) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(5, 6))
	const n, d, v = 4, 3, 7
	hd, wd := make([]float32, n*d), make([]float32, v*d)
	for _, x := range [][]float32{hd, wd} {
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
	}
	h, w := batch.NewMatrix(hd, n, d), batch.NewMatrix(wd, v, d)
	tg := []int32{1, -100, 6, 0}
	tc := batch.Teacher{K: 2, IDs: []int32{1, 3, 0, 0, 6, 2, 5, 0}, LogProbs: []float32{-0.2, -2, 0, 0, -0.5, -1.5, -0.1, -3}}
	var results [2][]float32
	for k, refuse := range []bool{false, true} {
		dev := &picking{CPUDevice: device.NewCPU(cpu.Default()), refuse: refuse}
		l, err := batch.NewLinear(dev, batch.Distill(tc, 0.5), batch.KeepRows())
		require.NoError(t, err)
		res, err := l.Forward(ctx, h, w, nil, tg)
		require.NoError(t, err)
		require.Equal(t, 1, dev.picks, "a call, a pick")
		g := batch.LinearGrads{H: batch.NewGrad(make([]float32, n*d), n, d)}
		_, err = l.ForwardBackward(ctx, g, h, w, nil, tg, batch.One)
		require.NoError(t, err)
		require.Equal(t, 2, dev.picks)
		results[k] = res.Losses
	}
	require.InDeltaSlice(t, results[0], results[1], 1e-5, "picked and apart")
}

// TestDistillLinearTail: on confident rows, like a trained model's (H_i =
// 20·W_t/|W_t|² plus noise: a student's tail of about 1e-5 beyond a
// teacher's top-32), the fused linear's KL is within 1e-3 of a float64
// reference, relative, row by row: the logits at the teacher's classes
// are the partials' own (device.LinearPicker), so the tail, the row's sum
// less their terms, has no error of its own. So it is over three shards
// of the vocabulary, each shard's KL parts from its own pass
// (PartialsWithKL) merged pairwise (MergeKL). Computed apart (a device
// that refuses the pick, or a shard's KLPartials) it is off by up to 18×
// here; logged.
func TestDistillLinearTail(t *testing.T) {
	const n, d, v, K = 32, 1024, 2000, 32
	r := rand.New(rand.NewPCG(7, 8))
	hd, wd := make([]float32, n*d), make([]float32, v*d)
	for i := range wd {
		wd[i] = float32(r.NormFloat64())
	}
	tg := make([]int32, n)
	for i := range n {
		tg[i] = int32(r.IntN(v))
		wt := wd[int(tg[i])*d : int(tg[i]+1)*d]
		nn := 0.0
		for _, x := range wt {
			nn += float64(x) * float64(x)
		}
		for j, x := range wt {
			hd[i*d+j] = float32(20*float64(x)/nn + r.NormFloat64()/math.Sqrt(d))
		}
	}
	tc := batch.Teacher{K: K}
	want := make([]float64, n)
	for i := range n {
		z := make([]float64, v) // float64 logits
		for c := range v {
			for j := range d {
				z[c] += float64(hd[i*d+j]) * float64(wd[c*d+j])
			}
		}
		zt := make([]float64, v) // the teacher's: the student's plus noise
		idx := make([]int, v)
		for c := range v {
			zt[c], idx[c] = z[c]+0.3*r.NormFloat64(), c
		}
		slices.SortFunc(idx, func(a, b int) int { return cmp.Compare(zt[b], zt[a]) })
		lse := func(x []float64) float64 {
			m := slices.Max(x)
			s := 0.0
			for _, y := range x {
				s += math.Exp(y - m)
			}
			return m + math.Log(s)
		}
		lt, ls := lse(zt), lse(z)
		pt, ps := 0.0, 0.0
		for _, c := range idx[:K] {
			lp := float32(zt[c] - lt)
			tc.IDs, tc.LogProbs = append(tc.IDs, int32(c)), append(tc.LogProbs, lp)
			want[i] += math.Exp(float64(lp)) * (float64(lp) - (z[c] - ls))
			pt, ps = pt+math.Exp(float64(lp)), ps+math.Exp(z[c]-ls)
		}
		if P := 1 - pt; P > 0 {
			want[i] += P * math.Log(P/(1-ps))
		}
	}
	h, w := batch.NewMatrix(hd, n, d), batch.NewMatrix(wd, v, d)
	for _, refuse := range []bool{false, true} {
		l, err := batch.NewLinear(&picking{CPUDevice: device.NewCPU(cpu.Default()), refuse: refuse}, batch.Distill(tc, 1), batch.KeepRows())
		require.NoError(t, err)
		res, err := l.Forward(context.Background(), h, w, nil, tg)
		require.NoError(t, err)
		worst := 0.0
		for i := range n {
			rel := math.Abs(float64(res.Losses[i])-want[i]) / want[i]
			worst = max(worst, rel)
			if !refuse {
				require.Less(t, rel, 1e-3, "row %d: KL %v, want %v", i, res.Losses[i], want[i])
			}
		}
		t.Logf("picked %v: the KL's worst relative error %.3g", !refuse, worst)
	}
	// Three shards of W's classes: each one's partials and KL parts in one
	// pass (PartialsWithKL, the logits picked), merged pairwise; or the
	// partials merged first and the KL parts computed apart (KLPartials).
	ctx, cuts := context.Background(), []int{0, 700, 1333, v}
	for _, one := range []bool{true, false} {
		part, kp := batch.NewPartials(n), make([]batch.KLPart, n)
		lins := make([]*batch.Linear, 3)
		shard := func(s int) batch.Matrix { return batch.NewMatrix(wd[cuts[s]*d:cuts[s+1]*d], cuts[s+1]-cuts[s], d) }
		for s := range lins {
			dev := &picking{CPUDevice: device.NewCPU(cpu.Default())}
			l, err := batch.NewLinear(dev, batch.Shard(cuts[s], v), batch.Distill(tc, 1), batch.KeepRows())
			require.NoError(t, err)
			lins[s] = l
			ps, ks := batch.NewPartials(n), make([]batch.KLPart, n)
			if one {
				require.NoError(t, l.PartialsWithKL(ctx, ps, ks, h, shard(s), nil, tg))
				require.Equal(t, 1, dev.picks, "shard %d: one LinearPartialsAt", s)
				for i := range n {
					batch.MergeKL(&part[i], &kp[i], ps[i], ks[i])
				}
				continue
			}
			require.NoError(t, l.Partials(ctx, ps, h, shard(s), nil, tg))
			for i := range n {
				part[i].Merge(ps[i])
			}
		}
		if !one {
			for s, l := range lins {
				ks := make([]batch.KLPart, n)
				require.NoError(t, l.KLPartials(ctx, ks, h, shard(s), nil, tg, part))
				for i := range n {
					kp[i].Merge(ks[i])
				}
			}
		}
		res, err := lins[0].FinishKL(part, kp, tg)
		require.NoError(t, err)
		worst := 0.0
		for i := range n {
			rel := math.Abs(float64(res.Losses[i])-want[i]) / want[i]
			worst = max(worst, rel)
			if one {
				require.Less(t, rel, 1e-3, "shards, row %d: KL %v, want %v", i, res.Losses[i], want[i])
			}
		}
		t.Logf("3 shards, one round %v: the KL's worst relative error %.3g", one, worst)
	}
}

// TestPartialsKLErrors: Linear.PartialsKL's bad inputs are errors that
// say what is wrong, with nothing written: outputs of the wrong length, a
// Linear of a shard of the vocabulary, a bad teacher row.
func TestPartialsKLErrors(t *testing.T) {
	ctx := context.Background()
	dev := device.NewCPU(cpu.Default())
	const n, d, v = 3, 2, 5
	h, w := batch.NewMatrix(make([]float32, n*d), n, d), batch.NewMatrix(make([]float32, v*d), v, d)
	tg := []int32{1, -100, 4}
	tc := batch.Teacher{K: 2, IDs: []int32{1, 3, 0, 0, 4, 2}, LogProbs: []float32{-0.2, -2, 0, 0, -0.5, -1.5}}
	sentinel := batch.Partial{Max: 42}
	for _, c := range []struct {
		name string
		opts []batch.Option
		kl   int
		tc   batch.Teacher
		want error
		msg  string
	}{
		{"kl short", nil, n - 1, tc, batch.ErrBuffer, "batch: expected 3 partials and KLs to match 3 rows, got 3 and 2"},
		{"shard", []batch.Option{batch.Shard(0, v+2)}, n, tc, batch.ErrOption, "the KL of a shard of the vocabulary"},
		{"ragged teacher", nil, n, batch.Teacher{K: 4, IDs: tc.IDs, LogProbs: tc.LogProbs}, batch.ErrShape, "not rows of k = 4 each"},
		{"class out of range", nil, n, batch.Teacher{K: 2, IDs: []int32{1, 3, 0, 0, 5, 2}, LogProbs: tc.LogProbs}, batch.ErrTeacher, "class 5 is out of bounds [0, 5)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			l, err := batch.NewLinear(dev, c.opts...)
			require.NoError(t, err)
			part, kl := []batch.Partial{sentinel, sentinel, sentinel}, make([]float64, c.kl)
			err = l.PartialsKL(ctx, part, kl, h, w, nil, tg, c.tc)
			require.ErrorIs(t, err, c.want)
			require.ErrorContains(t, err, c.msg)
			require.Equal(t, []batch.Partial{sentinel, sentinel, sentinel}, part, "nothing written")
		})
	}
}

// TestPartialsWithKLErrors: bad inputs to Loss's and Linear's
// PartialsWithKL are errors that say what is wrong, with nothing written:
// a Loss without a teacher, outputs of the wrong length, a teacher's
// class outside the vocabulary; one of another shard is none.
func TestPartialsWithKLErrors(t *testing.T) {
	ctx := context.Background()
	dev := device.NewCPU(cpu.Default())
	const n, d, v = 3, 2, 5
	h, w := batch.NewMatrix(make([]float32, n*d), n, d), batch.NewMatrix(make([]float32, v*d), v, d)
	x := batch.NewMatrix(make([]float32, n*v), n, v)
	tg := []int32{1, -100, 4}
	tc := batch.Teacher{K: 2, IDs: []int32{1, 3, 0, 0, 4, 2}, LogProbs: []float32{-0.2, -2, 0, 0, -0.5, -1.5}}
	far := batch.Teacher{K: 2, IDs: []int32{1, 3, 0, 0, 5, 2}, LogProbs: tc.LogProbs}
	sentinel, ksentinel := batch.Partial{Max: 42}, batch.KLPart{Cross: 42}
	for _, c := range []struct {
		name   string
		opts   []batch.Option
		np, nk int
		want   error
		msg    string
	}{
		{"no teacher", nil, n, n, batch.ErrOption, "a distillation's step without a teacher (Distill)"},
		{"kl parts short", []batch.Option{batch.Distill(tc, 0.5)}, n, n - 1, batch.ErrBuffer, "batch: expected 3 partials and KL parts to match 3 rows, got 3 and 2"},
		{"partials long", []batch.Option{batch.Distill(tc, 0.5)}, n + 1, n, batch.ErrBuffer, "got 4 and 3"},
		{"class of another shard", []batch.Option{batch.Shard(0, 6), batch.Distill(far, 0.5)}, n, n, nil, ""},
		{"class past the vocabulary", []batch.Option{batch.Shard(0, 6), batch.Distill(batch.Teacher{K: 2, IDs: []int32{1, 3, 0, 0, 7, 2}, LogProbs: tc.LogProbs}, 0.5)}, n, n, batch.ErrTeacher, "class 7 is out of bounds [0, 6)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, linear := range []bool{false, true} {
				part, kp := slices.Repeat([]batch.Partial{sentinel}, c.np), slices.Repeat([]batch.KLPart{ksentinel}, c.nk)
				var err error
				if linear {
					l, lerr := batch.NewLinear(dev, c.opts...)
					require.NoError(t, lerr)
					err = l.PartialsWithKL(ctx, part, kp, h, w, nil, tg)
				} else {
					l, lerr := batch.New(dev, c.opts...)
					require.NoError(t, lerr)
					err = l.PartialsWithKL(ctx, part, kp, x, tg)
				}
				if c.want == nil { // a class of another shard: not an error
					require.NoError(t, err, "linear %v", linear)
					continue
				}
				require.ErrorIs(t, err, c.want, "linear %v", linear)
				require.ErrorContains(t, err, c.msg)
				require.Equal(t, slices.Repeat([]batch.Partial{sentinel}, c.np), part, "nothing written")
				require.Equal(t, slices.Repeat([]batch.KLPart{ksentinel}, c.nk), kp, "nothing written")
			}
		})
	}
}
