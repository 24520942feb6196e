package cpu_test

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/xentlab/xent/ce"
	"github.com/xentlab/xent/cpu"
	"github.com/xentlab/xent/internal/spec"
)

// FuzzCrossEntropy runs the kernels of every implementation on arbitrary
// float32 rows (NaN, ±Inf, subnormals, ±3e38 and anything else the bytes
// spell), arbitrary targets and options (class weights from the bytes,
// zeros included, when bit 2 of capB is set), against the float64
// reference: losses and every gradient entry (spec.GradClose, within 1e-4
// of the size of its terms, and an exp that underflows into float32's
// subnormals within Ref.Under: the vector exp is off by up to 2^-126
// there, which a coefficient above 1 carries past the normal range).
func FuzzCrossEntropy(f *testing.F) {
	f.Add([]byte{0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64}, uint8(3), uint16(1), uint8(0), uint8(0), uint8(0))
	f.Add([]byte{0, 0, 128, 127, 0, 0, 128, 255, 0, 0, 192, 127, 1, 0, 0, 0}, uint8(2), uint16(0), uint8(1), uint8(1), uint8(1))
	f.Add([]byte{255, 255, 127, 127, 255, 255, 127, 255, 0, 0, 0, 0}, uint8(1), uint16(2), uint8(9), uint8(4), uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, colsB uint8, tgt uint16, epsB, zB, capB uint8) {
		cols := 1 + int(colsB)%64
		n := len(data) / 4
		rows := n / cols
		if rows == 0 || rows > 64 {
			return
		}
		x := make([]float32, rows*cols)
		for i := range x {
			x[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
		}
		targets := make([]int32, rows)
		for i := range targets {
			targets[i] = int32((int(tgt) + 7*i) % (cols + 1))
			if int(targets[i]) == cols {
				targets[i] = -1 // ignored
			}
		}
		o := spec.Opts{Ignore: -1, Smoothing: float64(epsB%11) / 10, ZLoss: float64(zB%4) * 1e-3}
		if capB%3 == 1 {
			o.Softcap = 30
		}
		W := float64(cols)
		if capB&4 != 0 { // class weights in [0, 4), from the bytes
			o.Weights, W = make([]float32, cols), 0
			for j := range o.Weights {
				o.Weights[j] = float32(data[(5*j)%len(data)]) / 64
				W += float64(o.Weights[j])
			}
		}
		ref := spec.Reference(x, rows, cols, cols, targets, o)
		scale := make([]float32, rows)
		for i := range scale {
			scale[i] = 1
		}
		for _, impl := range cpu.Impls() {
			if impl == nil {
				continue
			}
			loss, lse := make([]float32, rows), make([]float32, rows)
			g := make([]float32, len(x))
			m := ce.Matrix{Data: x, Rows: rows, Cols: cols, Stride: cols}
			p := &ce.Problem{Smoothing: float32(o.Smoothing), ZLoss: float32(o.ZLoss), Softcap: float32(o.Softcap), Weights: o.Weights, WeightSum: W}
			impl.CrossEntropy(ce.Out{Loss: loss, LSE: lse}, &ce.Grad{Data: g, Stride: cols, Scale: scale}, m, targets, p)
			fwd := make([]float32, rows) // the forward pass alone (one pass, no gradient)
			impl.CrossEntropy(ce.Out{Loss: fwd}, nil, m, targets, p)
			for i := range rows {
				if !fuzzClose(loss[i], ref.Loss[i]) {
					t.Fatalf("%s: row %d of %v (target %d, %+v): loss %v, reference %v", impl.Name(), i, x[i*cols:(i+1)*cols], targets[i], o, loss[i], ref.Loss[i])
				}
				if !sameBits(fwd[i], loss[i]) {
					t.Fatalf("%s: row %d of %v: forward loss %v, fused %v", impl.Name(), i, x[i*cols:(i+1)*cols], fwd[i], loss[i])
				}
				for j := range cols {
					got, want, mag := g[i*cols+j], ref.Grad[i][j], ref.Mag[i][j]
					if !spec.GradCloseIn(ce.F32, got, want, mag, 1e-4, ref.UnderAt(i, j)) {
						t.Fatalf("%s: row %d of %v (target %d, %+v): grad[%d] = %v, reference %v (terms of size %.3g)", impl.Name(), i, x[i*cols:(i+1)*cols], targets[i], o, j, got, want, mag)
					}
				}
			}
		}
	})
}

// fuzzClose compares a float32 result with the float64 reference on
// arbitrary inputs: NaN with NaN, values beyond float32 with ±Inf, and
// finite values within 1e-4·max(1, |ref|) (inputs near 3e38 lose digits
// that float64 keeps).
func fuzzClose(got float32, want float64) bool {
	g := float64(got)
	switch {
	case math.IsNaN(want):
		return math.IsNaN(g)
	case math.Abs(want) > math.MaxFloat32:
		return math.IsInf(g, 0) && (g > 0) == (want > 0) || math.Abs(g-want) <= 1e-4*math.Abs(want)
	case math.IsNaN(g):
		return false
	}
	return math.Abs(g-want) <= 1e-4*math.Max(1, math.Abs(want))
}
