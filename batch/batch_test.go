package batch_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/batch"
	"github.com/xentlab/xent/device"
	"github.com/xentlab/xent/internal/bigram"
	"github.com/xentlab/xent/internal/gen"
	"github.com/xentlab/xent/internal/spec"
)

var ctx = context.Background()

func cpuLoss(t *testing.T, opts ...batch.Option) *batch.Loss {
	dev, err := device.Open("cpu")
	require.NoError(t, err)
	l, err := batch.New(dev, opts...)
	require.NoError(t, err)
	return l
}

func TestTextbook(t *testing.T) {
	l := cpuLoss(t, batch.KeepRows())
	r, err := l.Forward(ctx, batch.NewMatrix(gen.TextbookLogits(), 4, 5), gen.Textbook.Targets)
	require.NoError(t, err)
	for i, want := range []float64{1.609, 0.511, 0.916, 0.223} {
		require.InDelta(t, want, r.Losses[i], 5e-4)
	}
	require.InDelta(t, 0.815, r.Loss, 5e-4)
	require.InDelta(t, 2.26, r.Perplexity(), 5e-3)
	require.Equal(t, int64(4), r.Counted)
}

// TestBadInput: each bad input returns the sentinel error with a clear
// message and writes nothing.
func TestBadInput(t *testing.T) {
	x := []float32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	m := batch.NewMatrix(x, 2, 5)
	y := []float32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11} // room for overlaps of the same shape
	h := make([]uint16, 12)                           // bfloat16 logits, and a slice to overlap them
	hb := batch.NewHalfMatrix(h[:10], batch.BF16, 2, 5)
	cases := []struct {
		name string
		opts []batch.Option
		x    batch.Matrix
		t    []int32
		g    batch.Matrix
		up   []float32
		want error
		msg  string
	}{
		{"target high", nil, m, []int32{0, 5}, m, nil, batch.ErrTarget, "batch: target 5 out of bounds [0, 5) at row 1"},
		{"target negative", nil, m, []int32{-1, 0}, m, nil, batch.ErrTarget, "batch: target -1 out of bounds [0, 5) at row 0"},
		{"targets short", nil, m, []int32{0}, m, nil, batch.ErrShape, "batch: expected 2 targets to match 2 rows, got 1"},
		{"data short", nil, batch.Matrix{Data: x, Rows: 3, Cols: 5}, []int32{0, 0, 0}, m, nil, batch.ErrBuffer, "need 15 values, got 10"},
		{"stride", nil, batch.Matrix{Data: x, Rows: 2, Cols: 5, Stride: 4}, []int32{0, 0}, m, nil, batch.ErrShape, "stride 4 is less than cols 5"},
		{"negative rows", nil, batch.Matrix{Data: x, Rows: -1, Cols: 5}, nil, m, nil, batch.ErrShape, "negative shape"},
		{"zero cols", nil, batch.Matrix{Data: x, Rows: 2, Cols: 0}, []int32{0, 0}, m, nil, batch.ErrShape, "2 rows of 0 classes"},
		{"overflow", nil, batch.Matrix{Data: x, Rows: math.MaxInt / 4, Cols: 8}, make([]int32, 0), m, nil, batch.ErrShape, "batch: logits: 2305843009213693951 rows × stride 8 overflows"},
		{"weights length", []batch.Option{batch.Weights([]float32{1, 2})}, m, []int32{0, 0}, m, nil, batch.ErrShape, "expected 5 class weights to match 5 classes, got 2"},
		{"gradient shape", nil, m, []int32{0, 1}, batch.NewMatrix(make([]float32, 10), 5, 2), nil, batch.ErrShape, "gradient is 5 × 2, logits are 2 × 5"},
		{"gradient short", nil, m, []int32{0, 1}, batch.NewMatrix(make([]float32, 9), 2, 5), nil, batch.ErrBuffer, "gradient"},
		{"gradient overlaps", nil, batch.NewMatrix(y[:10], 2, 5), []int32{0, 1}, batch.NewMatrix(y[1:], 2, 5), nil, batch.ErrBuffer, "batch: gradient buffer overlaps the logits without being them"},
		{"gradient overlaps strided", nil, batch.Matrix{Data: y, Rows: 2, Cols: 5, Stride: 6}, []int32{0, 1}, batch.NewMatrix(y[:10], 2, 5), nil, batch.ErrBuffer, "batch: gradient buffer overlaps the logits without being them"},
		{"gradient overlaps shifted", nil, batch.NewMatrix(x[:5], 1, 5), []int32{0}, batch.NewMatrix(x[2:7], 1, 5), nil, batch.ErrBuffer, "overlaps the logits"},
		{"half short", nil, batch.NewHalfMatrix(h[:9], batch.BF16, 2, 5), []int32{0, 0}, m, nil, batch.ErrBuffer, "batch: logits: 2 rows × 5 cols (stride 5) need 10 bfloat16 values in Half, got 9"},
		{"half in Data", nil, batch.Matrix{Data: x, Rows: 2, Cols: 5, Type: batch.F16}, []int32{0, 0}, m, nil, batch.ErrBuffer, "batch: logits: a float16 matrix holds its elements in Half, not Data"},
		{"both slices", nil, batch.Matrix{Data: x, Half: h, Rows: 2, Cols: 5, Type: batch.BF16}, []int32{0, 0}, m, nil, batch.ErrBuffer, "batch: logits: a bfloat16 matrix holds its elements in Half, not Data"},
		{"unknown type", nil, batch.Matrix{Half: h, Rows: 2, Cols: 5, Type: 9}, []int32{0, 0}, m, nil, batch.ErrOption, "batch: logits: element type DType(9) is not one cpu:"},
		{"gradient type", nil, hb, []int32{0, 1}, batch.NewHalfMatrix(make([]uint16, 10), batch.F16, 2, 5), nil, batch.ErrOption, "batch: gradient: float16 for bfloat16 logits; it is written in the logits' type or in float32"},
		{"gradient overlaps half", nil, hb, []int32{0, 1}, batch.NewHalfMatrix(h[1:11], batch.BF16, 2, 5), nil, batch.ErrBuffer, "batch: gradient buffer overlaps the logits without being them"},
		{"upstream per row with mean", nil, m, []int32{0, 1}, batch.NewMatrix(make([]float32, 10), 2, 5), []float32{1, 2}, batch.ErrShape, "expected per-row upstream gradients only with reduction none, one per row (2), got 2 with reduction mean"},
		{"upstream per row too short", []batch.Option{batch.Reduce(batch.None)}, m, []int32{0, 1}, batch.NewMatrix(make([]float32, 10), 2, 5), []float32{1}, batch.ErrShape, "expected per-row upstream gradients only with reduction none, one per row (2), got 1 with reduction none"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			require.NotEmpty(t, c.msg, "every case names its message")
			x0, y0, h0 := append([]float32(nil), x...), append([]float32(nil), y...), append([]uint16(nil), h...)
			l := cpuLoss(t, c.opts...)
			_, err := l.Forward(ctx, c.x, c.t)
			if strings.HasPrefix(c.name, "gradient") || c.up != nil {
				g0, gh0 := append([]float32(nil), c.g.Data...), append([]uint16(nil), c.g.Half...)
				up := batch.One
				if c.up != nil {
					up = batch.PerRow(c.up)
				}
				_, err = l.ForwardBackward(ctx, batch.GradInto(c.g), c.x, c.t, up)
				require.Equal(t, g0, c.g.Data, "nothing written")
				require.Equal(t, gh0, c.g.Half, "nothing written")
			}
			require.Error(t, err)
			require.True(t, errors.Is(err, c.want), "%v is not %v", err, c.want)
			require.Contains(t, err.Error(), c.msg)
			require.Equal(t, x0, x, "nothing written")
			require.Equal(t, y0, y, "nothing written")
			require.Equal(t, h0, h, "nothing written")
			if c.want == batch.ErrTarget {
				var te *batch.TargetError
				require.ErrorAs(t, err, &te)
				require.Contains(t, c.msg, fmt.Sprintf("target %d out of bounds [0, %d) at row %d", te.Target, te.Cols, te.Row))
			}
		})
	}
}

func TestBadOptions(t *testing.T) {
	dev, _ := device.Open("cpu")
	for _, o := range []batch.Option{
		batch.LabelSmoothing(-0.1), batch.LabelSmoothing(1.5), batch.LabelSmoothing(math.NaN()),
		batch.ZLoss(-1), batch.ZLoss(math.Inf(1)), batch.Softcap(-3), batch.Softcap(math.NaN()), batch.Softcap(math.Inf(1)),
		batch.Weights([]float32{1, -1}), batch.Weights([]float32{float32(math.NaN())}), batch.Weights([]float32{float32(math.Inf(1))}),
		batch.Reduce(batch.Reduction(7)),
		batch.Temperature(0), batch.Temperature(-1), batch.Temperature(math.NaN()), batch.Temperature(math.Inf(1)),
		batch.Temperature(1e-40), batch.Temperature(1e-300), batch.Temperature(1e39), // 1/τ or τ not a finite non-zero float32
	} {
		_, err := batch.New(dev, o)
		require.ErrorIs(t, err, batch.ErrOption)
	}
	// c/τ overflows float32, or is 0
	for _, o := range [][]batch.Option{{batch.Softcap(3e38), batch.Temperature(0.01)}, {batch.Softcap(1e-30), batch.Temperature(1e30)}} {
		_, err := batch.New(dev, o...)
		require.ErrorIs(t, err, batch.ErrOption, "%v", err)
	}
	_, err := batch.New(dev, batch.Softcap(30), batch.Temperature(0.01))
	require.NoError(t, err)
	_, err = batch.New(nil)
	require.ErrorIs(t, err, batch.ErrOption)
	_, err = batch.ParseReduction("avg")
	require.ErrorIs(t, err, batch.ErrOption)
	r, err := batch.ParseReduction("sum")
	require.NoError(t, err)
	require.Equal(t, batch.Sum, r)
}

// TestMergeExact: Stats of micro-batches merged give the Stats of the whole
// batch, where a mean of means would not.
func TestMergeExact(t *testing.T) {
	seed := spec.Seed(t)
	rng := rand.New(rand.NewPCG(seed, 1))
	const rows, cols = 300, 97
	x, tg := gen.Logits(rows, cols, seed), gen.Targets(rows, cols, seed)
	w := make([]float32, cols)
	for i := range w {
		w[i] = rng.Float32() * 2
	}
	for i := range tg {
		if i < 200 && rng.IntN(3) == 0 {
			tg[i] = -100
		}
	}
	l := cpuLoss(t, batch.Weights(w), batch.LabelSmoothing(0.1))
	whole, err := l.Forward(ctx, batch.NewMatrix(x, rows, cols), tg)
	require.NoError(t, err)
	var merged batch.Stats
	var means []float64
	for _, cut := range [][2]int{{0, 17}, {17, 200}, {200, 300}} {
		r, err := l.Forward(ctx, batch.NewMatrix(x[cut[0]*cols:cut[1]*cols], cut[1]-cut[0], cols), tg[cut[0]:cut[1]])
		require.NoError(t, err)
		merged.Merge(r.Stats)
		means = append(means, r.Loss)
	}
	require.Equal(t, whole.Counted, merged.Counted)
	require.Equal(t, whole.Correct, merged.Correct)
	require.InDelta(t, whole.Mean(), merged.Mean(), 1e-12)
	meanOfMeans := (means[0] + means[1] + means[2]) / 3
	require.Greater(t, math.Abs(meanOfMeans-whole.Mean()), 1e-4, "the parts differ: a mean of means must differ")
}

func TestEmptyAndIgnored(t *testing.T) {
	for _, red := range []batch.Reduction{batch.Mean, batch.Sum, batch.None} {
		l := cpuLoss(t, batch.Reduce(red))
		r, err := l.Forward(ctx, batch.NewMatrix(nil, 0, 10), nil)
		require.NoError(t, err)
		r2, err := l.Forward(ctx, batch.NewMatrix(make([]float32, 20), 2, 10), []int32{-100, -100})
		require.NoError(t, err)
		switch red {
		case batch.Mean:
			require.True(t, math.IsNaN(r.Loss) && math.IsNaN(r2.Loss))
		case batch.Sum:
			require.Zero(t, r.Loss)
			require.Zero(t, r2.Loss)
		case batch.None:
			require.Empty(t, r.Losses)
			require.Equal(t, []float32{0, 0}, r2.Losses)
		}
		require.Equal(t, int64(2), r2.Ignored())
		require.True(t, math.IsNaN(r2.Accuracy()))
	}
}

func TestCancel(t *testing.T) {
	l := cpuLoss(t)
	c, cancel := context.WithCancel(ctx)
	cancel()
	_, err := l.Forward(c, batch.NewMatrix(make([]float32, 1<<20), 1<<10, 1<<10), make([]int32, 1<<10))
	require.ErrorIs(t, err, context.Canceled)
}

// TestBigram trains a character bigram language model on a page of Alice's
// Adventures in Wonderland with plain SGD through the fused
// forward+backward: the loss must fall from ln V to well below it.
func TestBigram(t *testing.T) {
	text := bigram.Alice
	id := map[byte]int32{}
	for _, c := range text {
		if _, ok := id[c]; !ok {
			id[c] = int32(len(id))
		}
	}
	V := len(id)
	n := len(text) - 1
	prev := make([]int32, n)
	next := make([]int32, n)
	for i := range n {
		prev[i], next[i] = id[text[i]], id[text[i+1]]
	}
	W := make([]float32, V*V) // logits of the next character given the previous one
	logits := make([]float32, n*V)
	dev, err := device.Open("cpu")
	require.NoError(t, err)
	l, err := batch.New(dev)
	require.NoError(t, err)
	var first, last float64
	const lr = 20
	for step := range 300 {
		for i := range n {
			copy(logits[i*V:(i+1)*V], W[int(prev[i])*V:(int(prev[i])+1)*V])
		}
		// Gradient in place over the logits: they are rebuilt each step.
		r, err := l.ForwardBackward(ctx, batch.NewGrad(logits, n, V), batch.NewMatrix(logits, n, V), next, batch.One)
		require.NoError(t, err)
		for i := range n {
			w := W[int(prev[i])*V : (int(prev[i])+1)*V]
			for j, g := range logits[i*V : (i+1)*V] {
				w[j] -= lr * g
			}
		}
		if step == 0 {
			first = r.Loss
		}
		last = r.Loss
		if step%50 == 0 || step == 299 {
			t.Logf("step %3d: loss %.4f nats, perplexity %.2f, accuracy %.3f", step, r.Loss, r.Perplexity(), r.Accuracy())
		}
	}
	t.Logf("V = %d, ln V = %.4f, %d positions: loss %.4f -> %.4f", V, math.Log(float64(V)), n, first, last)
	require.InDelta(t, math.Log(float64(V)), first, 1e-5, "untrained: uniform")
	require.Less(t, last, 0.7*math.Log(float64(V)))
}

// TestShardErrors: the shard API refuses what would give a wrong loss.
func TestShardErrors(t *testing.T) {
	x := batch.NewMatrix(gen.Logits(3, 4, 1), 3, 4)
	tg := []int32{0, 9, -100}
	whole := cpuLoss(t)
	_, err := whole.Finish(batch.NewPartials(3), tg)
	require.ErrorIs(t, err, batch.ErrOption, "Finish needs a Shard's vocabulary")
	sh := cpuLoss(t, batch.Shard(8, 12))
	_, err = sh.Forward(ctx, x, tg)
	require.ErrorIs(t, err, batch.ErrOption, "a shard has no loss of its own")
	_, err = sh.ForwardBackward(ctx, batch.InPlace(x), x, tg, batch.One)
	require.ErrorIs(t, err, batch.ErrOption)
	err = cpuLoss(t, batch.Shard(9, 12)).Partials(ctx, batch.NewPartials(3), x, tg)
	require.ErrorIs(t, err, batch.ErrShape, "columns [9, 13) are not in 12 classes")
	err = sh.Partials(ctx, batch.NewPartials(3), x, []int32{0, 12, 1})
	var te *batch.TargetError
	require.ErrorAs(t, err, &te, "targets are classes of the vocabulary")
	require.Equal(t, batch.TargetError{Row: 1, Target: 12, Cols: 12}, *te)
	part := batch.NewPartials(3)
	require.NoError(t, sh.Partials(ctx, part, x, tg))
	_, err = sh.Finish(part, tg)
	require.ErrorIs(t, err, batch.ErrShape, "row 0's target 0 is in no merged shard")
	require.Contains(t, err.Error(), "row 0: no shard held its target 0")
	err = sh.Partials(ctx, batch.NewPartials(2), x, tg)
	require.ErrorIs(t, err, batch.ErrBuffer)
	_, err = batch.New(whole.Device(), batch.Shard(-1, 5))
	require.ErrorIs(t, err, batch.ErrOption)
}
