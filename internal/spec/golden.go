package spec

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"codeberg.org/sbinet/npyio"
	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/batch"
	"github.com/xentlab/xent/device"
)

// GoldenDir is testdata/golden of the repository: $XENT_TESTDATA/golden
// when set, else found upward from the working directory (tests run in
// their package's directory), else beside this source file.
func GoldenDir() string {
	if d := os.Getenv("XENT_TESTDATA"); d != "" {
		return filepath.Join(d, "golden")
	}
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "testdata", "golden", "cases.json")); err == nil {
				return filepath.Join(d, "testdata", "golden")
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "golden")
}

type goldenCase struct {
	Name    string `json:"name"`
	Options struct {
		IgnoreIndex    *int      `json:"ignore_index"`
		LabelSmoothing float64   `json:"label_smoothing"`
		ZLoss          float64   `json:"z_loss"`
		Softcap        float64   `json:"softcap"`
		Temperature    float64   `json:"temperature"`
		Weights        []float32 `json:"weights"`
	} `json:"options"`
	Sum  *float64 `json:"sum"`  // null: NaN
	Mean *float64 `json:"mean"` // null: NaN
	ECE  *float64 `json:"ece"`  // null: NaN (nothing binned)
	// The rank metrics (NaN: null): top-k accuracy for k = 1, 5, the mean
	// reciprocal rank and entropy.
	TopK    map[string]*float64 `json:"topk"`
	MRR     *float64            `json:"mrr"`
	Entropy *float64            `json:"entropy"`
}

// readJSON reads a JSON file of the golden directory (Python's NaN is
// null).
func readJSON(t *testing.T, name string, ptr any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(GoldenDir(), name))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(nanToNull(b), ptr), name)
}

// opts returns the reference options of a golden case (its class
// weights, when it has them, from the file weights).
func (gc *goldenCase) opts(t *testing.T, weights string) Opts {
	o := Opts{Ignore: DefaultIgnore, Smoothing: gc.Options.LabelSmoothing, ZLoss: gc.Options.ZLoss, Softcap: gc.Options.Softcap,
		Temperature: gc.Options.Temperature}
	if gc.Options.IgnoreIndex != nil {
		o.Ignore = int64(*gc.Options.IgnoreIndex)
	}
	if gc.Options.Weights != nil {
		readNpy(t, weights, &o.Weights)
	}
	return o
}

func readNpy(t *testing.T, name string, ptr any) {
	t.Helper()
	f, err := os.Open(filepath.Join(GoldenDir(), name))
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, npyio.Read(f, ptr), name)
}

// RunGolden checks dev against the PyTorch values written by
// testdata/golden/gen.py: per-row losses, the sum and mean reductions and
// the gradient of the sum, within tol·max(1, |golden|).
func RunGolden(t *testing.T, dev device.Device, tol float64) {
	b, err := os.ReadFile(filepath.Join(GoldenDir(), "cases.json"))
	require.NoError(t, err)
	// Python's json writes NaN and Infinity; the mean of nothing is NaN.
	var doc struct {
		Torch string       `json:"torch"`
		Cases []goldenCase `json:"cases"`
	}
	require.NoError(t, json.Unmarshal(nanToNull(b), &doc))
	require.NotEmpty(t, doc.Cases)
	t.Logf("golden values from torch %s", doc.Torch)
	ctx := context.Background()
	for _, gc := range doc.Cases {
		t.Run(gc.Name, func(t *testing.T) {
			var x []float32
			var tg []int64
			var rows, grad []float64
			readNpy(t, gc.Name+"_logits.npy", &x)
			readNpy(t, gc.Name+"_targets.npy", &tg)
			readNpy(t, gc.Name+"_rows.npy", &rows)
			readNpy(t, gc.Name+"_grad.npy", &grad)
			n := len(tg)
			require.Len(t, rows, n)
			cols := len(x) / n
			targets := make([]int32, n)
			for i, v := range tg {
				targets[i] = int32(v)
			}
			o := gc.opts(t, gc.Name+"_weights.npy")
			c := Case{Opts: o}
			m := batch.NewMatrix(x, n, cols)
			none, err := batch.New(dev, c.LossOptions(batch.None)...)
			require.NoError(t, err)
			r, err := none.Forward(ctx, m, targets)
			require.NoError(t, err)
			for i := range rows {
				require.True(t, Close(r.Losses[i], rows[i], tol), "row %d: %v, torch %v", i, r.Losses[i], rows[i])
			}
			sum, err := batch.New(dev, c.LossOptions(batch.Sum)...)
			require.NoError(t, err)
			g := make([]float32, len(x))
			r, err = sum.ForwardBackward(ctx, batch.NewGrad(g, n, cols), m, targets, batch.One)
			require.NoError(t, err)
			require.True(t, CloseF(r.Loss, orNaN(gc.Sum), tol), "sum %v, torch %v", r.Loss, orNaN(gc.Sum))
			// The reference gives the size of each entry's terms (GradClose);
			// the values compared with are PyTorch's.
			ref := Reference(x, n, cols, cols, targets, o)
			for k := range g {
				i, j := k/cols, k%cols
				if !GradClose(g[k], grad[k], ref.Mag[i][j], tol) {
					require.Failf(t, "gradient", "grad[%d][%d] = %v, torch %v (terms of size %.3g)", i, j, g[k], grad[k], ref.Mag[i][j])
				}
			}
			mean, err := batch.New(dev, c.LossOptions(batch.Mean)...)
			require.NoError(t, err)
			r, err = mean.Forward(ctx, m, targets)
			require.NoError(t, err)
			want := orNaN(gc.Mean)
			require.True(t, CloseF(r.Loss, want, tol), "mean %v, torch %v", r.Loss, want)
			checkGoldenECE(t, gc, dev, m, targets, ref, o, tol)
		})
	}
}

// checkGoldenECE checks the rank metrics (top-k for k = 1, 5, the mean
// reciprocal rank and entropy) and the calibration of the partials of the whole
// vocabulary (a Loss with a Shard of all of it) against torch's ECE, but
// for rows at a bin's edge (the textbook's confidences .4, .6 and .8 are
// 15ths), which may round into either bin, each moving the ECE by at most
// 2/N.
func checkGoldenECE(t *testing.T, gc goldenCase, dev device.Device, m batch.Matrix, targets []int32, ref *Ref, o Opts, tol float64) {
	t.Helper()
	whole, err := batch.New(dev, append(Case{Opts: o}.LossOptions(batch.Sum), batch.Shard(0, m.Cols))...)
	require.NoError(t, err)
	part := batch.NewPartials(m.Rows)
	require.NoError(t, whole.Partials(context.Background(), part, m, targets))
	cal, err := whole.Calibration(part, targets)
	require.NoError(t, err)
	ranks := make([]batch.Rank, m.Rows)
	require.NoError(t, whole.Ranks(context.Background(), ranks, m, targets, part))
	rs, err := whole.RankStats([]int{1, 5}, part, ranks, targets)
	require.NoError(t, err)
	for i, k := range rs.K {
		require.True(t, CloseF(rs.TopKAccuracy(i), orNaN(gc.TopK[fmt.Sprint(k)]), 1e-12), "top-%d accuracy %v, torch %v", k, rs.TopKAccuracy(i), orNaN(gc.TopK[fmt.Sprint(k)]))
	}
	require.True(t, CloseF(rs.MRR(), orNaN(gc.MRR), 1e-12), "MRR %v, torch %v", rs.MRR(), orNaN(gc.MRR))
	require.True(t, CloseF(rs.MeanEntropy(), orNaN(gc.Entropy), tol), "entropy %v, torch %v", rs.MeanEntropy(), orNaN(gc.Entropy))
	want, edge := ref.Calibration(targets, o.Ignore, 1e-6)
	e := orNaN(gc.ECE)
	if math.IsNaN(e) {
		require.True(t, math.IsNaN(cal.ECE()), "ECE %v, torch NaN", cal.ECE())
		return
	}
	require.InDelta(t, e, cal.ECE(), tol+2*float64(edge)/float64(want.Binned()), "ECE (%d rows at a bin's edge), torch %v", edge, e)
}

// nanToNull turns Python's bare NaN into JSON null.
func nanToNull(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if i+3 <= len(b) && string(b[i:i+3]) == "NaN" {
			out = append(out, "null"...)
			i += 2
			continue
		}
		out = append(out, b[i])
	}
	return out
}

func orNaN(v *float64) float64 {
	if v == nil {
		return math.NaN()
	}
	return *v
}
