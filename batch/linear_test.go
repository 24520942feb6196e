package batch_test

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/batch"
	"github.com/xentlab/xent/device"
	"github.com/xentlab/xent/internal/bigram"
	"github.com/xentlab/xent/internal/gen"
)

func cpuLinear(t testing.TB, opts ...batch.Option) *batch.Linear {
	dev, err := device.Open("cpu")
	require.NoError(t, err)
	l, err := batch.NewLinear(dev, opts...)
	require.NoError(t, err)
	return l
}

// TestLinearBadInput: each bad input of the fused linear returns its
// sentinel error with a message naming the problem, and writes nothing.
func TestLinearBadInput(t *testing.T) {
	const n, d, v = 3, 4, 5
	r := rand.New(rand.NewPCG(1, 2))
	fill := func(k int) []float32 {
		x := make([]float32, k)
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		return x
	}
	h, w, b := batch.NewMatrix(fill(n*d), n, d), batch.NewMatrix(fill(v*d), v, d), fill(v)
	tg := []int32{0, 4, -100}
	buf := fill(100)
	type grads = batch.LinearGrads
	good := func() grads {
		return grads{H: batch.NewGrad(make([]float32, n*d), n, d), W: batch.NewGrad(make([]float32, v*d), v, d), Bias: make([]float32, v)}
	}
	dev, err := device.Open("cpu")
	require.NoError(t, err)
	halfW := batch.NewHalfMatrix(make([]uint16, v*d), batch.BF16, v, d)
	heldW, err := batch.Upload(ctx, dev, halfW) // a bfloat16 W held by the device: allowed
	require.NoError(t, err)
	defer heldW.Release()
	heldDW, err := batch.Upload(ctx, dev, halfW)
	require.NoError(t, err)
	defer heldDW.Release()
	mislabelled := heldW.Matrix()
	mislabelled.Type = batch.F32
	cases := []struct {
		name    string
		opts    []batch.Option
		h, w    batch.Matrix
		bias    []float32
		targets []int32
		g       func() grads
		want    error
		msg     string
	}{
		{"features differ", nil, h, batch.NewMatrix(w.Data[:v*3], v, 3), b, tg, good, batch.ErrShape, "batch: hidden states have 4 features, the weight's rows 3 (W is classes × features, nn.Linear's layout)"},
		{"target high", nil, h, w, b, []int32{0, 5, 1}, good, batch.ErrTarget, "batch: target 5 out of bounds [0, 5) at row 1"},
		{"targets short", nil, h, w, b, tg[:2], good, batch.ErrShape, "batch: expected 3 targets to match 3 rows, got 2"},
		{"half gradient", nil, h, w, b, tg, func() grads {
			g := good()
			g.H = batch.NewHalfGrad(make([]uint16, n*d), batch.BF16, n, d)
			return g
		}, batch.ErrOption, "batch: hidden-state gradient: element type bfloat16 (the gradients are float32)"},
		{"held half gradient", nil, h, heldW.Matrix(), b, tg, func() grads { g := good(); g.W = heldDW.Grad(); return g }, batch.ErrOption, "batch: weight gradient: element type bfloat16 (the gradients are float32)"},
		{"held weight mislabelled", nil, h, mislabelled, b, tg, good, batch.ErrOption, "batch: weight: element type float32, its buffer's bfloat16"},
		{"half weight short", nil, h, batch.NewHalfMatrix(make([]uint16, v*d-1), batch.F16, v, d), b, tg, good, batch.ErrBuffer, "batch: weight: 5 rows × 4 cols (stride 4) need 20 float16 values in Half, got 19"},
		{"hidden short", nil, batch.Matrix{Data: h.Data[:11], Rows: n, Cols: d}, w, b, tg, good, batch.ErrBuffer, "batch: hidden states: 3 rows × 4 cols (stride 4) need 12 values, got 11"},
		{"weight short", nil, h, batch.Matrix{Data: w.Data[:19], Rows: v, Cols: d}, b, tg, good, batch.ErrBuffer, "batch: weight: 5 rows × 4 cols (stride 4) need 20 values, got 19"},
		{"no features", nil, batch.Matrix{Rows: n}, w, b, tg, good, batch.ErrShape, "batch: hidden states: rows of 0 features"},
		{"bias short", nil, h, w, b[:4], tg, good, batch.ErrShape, "batch: expected 5 bias values to match 5 classes, got 4"},
		{"dH overlaps H", nil, h, w, b, tg, func() grads { g := good(); g.H = batch.GradInto(h); return g }, batch.ErrBuffer, "batch: hidden-state gradient overlaps an input or another gradient"},
		{"dW overlaps dH", nil, h, w, b, tg, func() grads {
			g := good()
			g.H, g.W = batch.NewGrad(buf[:n*d], n, d), batch.NewGrad(buf[n*d-1:n*d-1+v*d], v, d)
			return g
		}, batch.ErrBuffer, "batch: weight gradient overlaps an input or another gradient"},
		{"dW shape", nil, h, w, b, tg, func() grads { g := good(); g.W = batch.NewGrad(g.W.Matrix().Data, 4, d); return g }, batch.ErrShape, "batch: weight gradient is 4 × 4, expected 5 × 4"},
		{"db short", nil, h, w, b, tg, func() grads { g := good(); g.Bias = g.Bias[:3]; return g }, batch.ErrShape, "batch: expected 5 bias gradients to match 5 classes, got 3"},
		{"db is bias", nil, h, w, b, tg, func() grads { g := good(); g.Bias = b; return g }, batch.ErrBuffer, "batch: bias gradient overlaps an input or another gradient"},
		{"budget", []batch.Option{batch.Budget(-1)}, h, w, b, tg, good, batch.ErrOption, "batch: budget -1 bytes must be ≥ 0 (0: the default)"},
		{"shard past vocab", []batch.Option{batch.Shard(3, 7)}, h, w, b, []int32{0, 1, 2}, good, batch.ErrShape, "batch: the shard's classes [3, 8) are not within the vocabulary of 7 classes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l, err := batch.NewLinear(dev, c.opts...)
			if err != nil {
				require.ErrorIs(t, err, c.want)
				require.EqualError(t, err, c.msg)
				return
			}
			g := c.g()
			before := [][]float32{slices.Clone(g.H.Matrix().Data), slices.Clone(g.W.Matrix().Data), slices.Clone(g.Bias), slices.Clone(buf)}
			var cerr error
			if c.name == "shard past vocab" {
				cerr = l.Partials(ctx, batch.NewPartials(n), c.h, c.w, c.bias, c.targets)
			} else {
				_, cerr = l.ForwardBackward(ctx, g, c.h, c.w, c.bias, c.targets, batch.One)
			}
			require.ErrorIs(t, cerr, c.want)
			require.EqualError(t, cerr, c.msg)
			var te *batch.TargetError
			if errors.Is(cerr, batch.ErrTarget) {
				require.ErrorAs(t, cerr, &te)
			}
			after := [][]float32{g.H.Matrix().Data, g.W.Matrix().Data, g.Bias, buf}
			for k := range before {
				require.Equal(t, before[k], after[k], "nothing is written")
			}
		})
	}
	// A device without the operation runs it on the CPU, on host matrices.
	nl, err := batch.NewLinear(noLinear{dev})
	require.NoError(t, err)
	_, err = nl.Forward(ctx, h, w, b, tg)
	require.NoError(t, err)
}

// noLinear is a device without the fused linear (as OpenCL without
// CLBlast).
type noLinear struct{ device.Device }

func (d noLinear) Caps() device.Caps {
	c := d.Device.Caps()
	c.Linear = false
	return c
}

// TestLinearMemory: at N 4096, V 128256, D 64 the logits would take 2.1
// GB; the fused forward + backward allocates at most the budget plus
// O(N) (the caller holds H, W and their gradients, O(N·D + V·D)), every
// allocation counted (ownAllocs). OpenBLAS's own buffers are C memory of
// a fixed size, outside Go's heap; gonum's Sgemm (the BLAS where OpenBLAS
// is not installed) starts a goroutine for each 64 × 64 block of a
// product, a closure on the heap that is garbage once the block is done:
// its allocations are logged and not counted (97 MB of them here).
func TestLinearMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("202 GFLOP: the README's test command (go test ./...) runs it")
	}
	const n, d, v = 4096, 64, 128256
	const budget = 16 << 20
	hd, wd, tg := gen.Linear(rand.New(rand.NewPCG(3, 4)), n, d, v, 0.3, 0.3)
	h, w := batch.NewMatrix(hd, n, d), batch.NewMatrix(wd, v, d)
	g := batch.LinearGrads{H: batch.NewGrad(make([]float32, n*d), n, d), W: batch.NewGrad(make([]float32, v*d), v, d)}
	l := cpuLinear(t, batch.Budget(budget))
	var res batch.Result
	var err error
	own, gonum := ownAllocs(func() { res, err = l.ForwardBackward(ctx, g, h, w, nil, tg, batch.One) })
	require.NoError(t, err)
	limit := uint64(budget + 64*n + 1<<20)
	t.Logf("loss %.4f; allocated %.1f MB during the call (budget %d MB, limit %.1f MB; the logits would be %.0f MB), and %.1f MB in gonum's Sgemm; BLAS %s",
		res.Loss, float64(own)/1e6, budget>>20, float64(limit)/1e6, float64(n)*v*4/1e6, float64(gonum)/1e6, l.Device().Info().BLAS)
	require.LessOrEqual(t, own, limit)
	require.InDelta(t, math.Log(v), res.Loss, 1, "random logits of about 0.3·√64·0.3: loss near ln V")
}

// ownAllocs returns the bytes of heap allocated while f runs, every
// allocation recorded (runtime.MemProfileRate 1), the collector off (a
// sync.Pool keeps what it holds): those in gonum's BLAS (a frame of
// gonum.org/v1/gonum/blas on its stack) apart.
func ownAllocs(f func()) (own, gonum uint64) {
	defer func(old int) { runtime.MemProfileRate = old }(runtime.MemProfileRate)
	runtime.MemProfileRate = 1
	before := allocsByStack()
	gc := debug.SetGCPercent(-1)
	f()
	debug.SetGCPercent(gc)
	for stk, b := range allocsByStack() {
		b -= before[stk]
		frames := runtime.CallersFrames(slices.DeleteFunc(stk[:], func(pc uintptr) bool { return pc == 0 }))
		in := false
		for fr, more := frames.Next(); ; fr, more = frames.Next() {
			in = in || strings.HasPrefix(fr.Function, "gonum.org/v1/gonum/blas")
			if !more {
				break
			}
		}
		if in {
			gonum += uint64(b)
		} else {
			own += uint64(b)
		}
	}
	return own, gonum
}

// allocsByStack returns the bytes allocated so far by each stack of the
// memory profile, after the collections that bring it up to date (it
// lags by up to two).
func allocsByStack() map[[32]uintptr]int64 {
	for range 3 {
		runtime.GC()
	}
	var p []runtime.MemProfileRecord
	for n := 256; ; n *= 2 {
		p = make([]runtime.MemProfileRecord, n)
		if k, ok := runtime.MemProfile(p, true); ok {
			p = p[:k]
			break
		}
	}
	m := make(map[[32]uintptr]int64, len(p))
	for _, r := range p {
		m[r.Stack0] += r.AllocBytes
	}
	return m
}

// TestLinearLearns trains a bigram model of the Alice page through the
// fused path (internal/bigram: embedding D 16, classifier V 256 with a
// bias, SGD from dH, dW and db): the loss must fall from ln 256 below 2.7,
// steadily.
func TestLinearLearns(t *testing.T) {
	l := cpuLinear(t)
	const d = 16
	step := func(ctx context.Context, dH, dW, db, H, W, b []float32, tg []int32) (float64, error) {
		g := batch.LinearGrads{H: batch.NewGrad(dH, len(tg), d), W: batch.NewGrad(dW, bigram.V, d), Bias: db}
		res, err := l.ForwardBackward(ctx, g, batch.NewMatrix(H, len(tg), d), batch.NewMatrix(W, bigram.V, d), b, tg, batch.One)
		return res.Loss, err
	}
	losses, _, err := bigram.Train(ctx, step, bigram.Alice, d, 60, 4)
	require.NoError(t, err)
	t.Logf("loss by epoch: %.3f", losses)
	require.InDelta(t, math.Log(256), losses[0], 0.1)
	require.Less(t, losses[len(losses)-1], 2.7)
	for k := 10; k < len(losses); k += 10 {
		require.Less(t, losses[k], losses[k-10], "epoch %d", k)
	}
}
