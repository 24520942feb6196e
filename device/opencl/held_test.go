package opencl_test

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/ce"
	"github.com/xentlab/xent/cpu"
	"github.com/xentlab/xent/device"
	"github.com/xentlab/xent/internal/spec"
)

// TestGatherOpenCL: a distillation's gathers (device.Gatherer: rows.cl's
// xent_gather and xent_lin_gather) in every element type, on matrices the
// device holds, against the CPU's on the same values: the logits bit for
// bit, the fused linear's (H strided on the host, with a bias and
// without) within the float32 error of their products, D·2⁻²⁴·Σ_d
// |h_d·w_d| (the CPU's are float64 sums rounded once), and with float32
// H and a held half W (xent_widen on the device) the same bits as with H
// of W's type; entries of no column are 0. Host rows, a released buffer and another device's are
// errors that say so. TestConformanceOpenCL's Oclgrind run takes it too.
func TestGatherOpenCL(t *testing.T) {
	d := openTest(t)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(spec.Seed(t), 31))
	host := device.NewCPU(cpu.Default())
	const rows, cols, D, k = 13, 71, 37, 5
	sel := make([]int32, rows*k) // each row's columns, some -1
	for e := range sel {
		sel[e] = int32(r.IntN(cols+3)) - 3
		sel[e] = max(sel[e], -1)
	}
	sel[k-1] = cols - 1 // the last column
	randn := func(n int, sd float64) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64() * sd)
		}
		return v
	}
	for _, typ := range d.Caps().Types {
		t.Run(typ.String(), func(t *testing.T) {
			x := spec.ElemsOf(typ, randn(rows*cols, 4)).Matrix(0, rows, cols, cols)
			buf, err := d.Upload(ctx, x)
			require.NoError(t, err)
			defer buf.Release()
			got, want := make([]float32, rows*k), make([]float32, rows*k)
			for e := range got {
				got[e] = float32(math.NaN()) // every entry written
			}
			require.NoError(t, d.Gather(ctx, got, ce.BufferMatrix(buf), sel, k))
			require.NoError(t, host.Gather(ctx, want, x, sel, k))
			for e := range got {
				require.Equal(t, math.Float32bits(want[e]), math.Float32bits(got[e]), "entry %d (row %d, column %d): %v, want %v", e, e/k, sel[e], got[e], want[e])
			}

			h := spec.ElemsOf(typ, randn(rows*(D+3), 1)).Matrix(0, rows, D, D+3)
			w := spec.ElemsOf(typ, randn(cols*D, 1)).Matrix(0, cols, D, D)
			wb, err := d.Upload(ctx, w)
			require.NoError(t, err)
			defer wb.Release()
			for _, bias := range [][]float32{nil, randn(cols, 2)} {
				lin := &ce.Linear{H: h, W: ce.BufferMatrix(wb), Bias: bias}
				for e := range got {
					got[e] = float32(math.NaN())
				}
				require.NoError(t, d.LinearGather(ctx, got, lin, sel, k))
				require.NoError(t, host.LinearGather(ctx, want, &ce.Linear{H: h, W: w, Bias: bias}, sel, k))
				for e, c := range sel {
					if c < 0 {
						require.Zero(t, math.Float32bits(got[e]), "entry %d of no column", e)
						continue
					}
					mag := 0.0
					for j := range D {
						mag += math.Abs(float64(h.At(e/k, j)) * float64(w.At(int(c), j)))
					}
					if bias != nil {
						mag += math.Abs(float64(bias[c]))
					}
					tol := float64(D+2)*0x1p-24*mag + 0x1p-24*math.Abs(float64(want[e]))
					require.InDelta(t, want[e], got[e], tol, "entry %d (row %d, class %d), bias %v", e, e/k, c, bias != nil)
				}
				if typ == ce.F32 {
					continue
				}
				// float32 H with the held half W (widened on the device):
				// the same products in the same order, the same bits.
				wide := make([]float32, rows*k)
				require.NoError(t, d.LinearGather(ctx, wide, &ce.Linear{H: cpu.Widened(h), W: ce.BufferMatrix(wb), Bias: bias}, sel, k))
				for e := range got {
					require.Equal(t, math.Float32bits(got[e]), math.Float32bits(wide[e]), "entry %d, H widened: %v, want %v", e, wide[e], got[e])
				}
			}
		})
	}

	// What it refuses.
	x := ce.NewDense(rows, cols, ce.F32)
	z := make([]float32, rows*k)
	require.ErrorIs(t, d.Gather(ctx, z, x, sel, k), device.ErrNotImplemented, "host rows are the CPU's")
	require.ErrorIs(t, d.LinearGather(ctx, z, &ce.Linear{H: ce.NewDense(rows, D, ce.F32), W: ce.NewDense(cols, D, ce.F32)}, sel, k), device.ErrNotImplemented)
	other, err := host.Upload(ctx, x)
	require.NoError(t, err)
	defer other.Release()
	require.ErrorIs(t, d.Gather(ctx, z, ce.BufferMatrix(other), sel, k), device.ErrForeign)
	buf, err := d.Upload(ctx, x)
	require.NoError(t, err)
	require.NoError(t, buf.Release())
	require.ErrorIs(t, d.Gather(ctx, z, ce.BufferMatrix(buf), sel, k), device.ErrReleased)
}
