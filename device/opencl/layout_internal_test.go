package opencl

import (
	"testing"

	"github.com/xentlab/xent/device/opencl/internal/cl"
	"github.com/xentlab/xent/kernels"
)

// TestProbLayout passes a probArg with a distinct value in every field to
// a kernel that reads xent.cl's prob_t and writes each field back: if the
// two structs' layouts differ (a field added on one side, another order,
// padding), the values come back wrong.
func TestProbLayout(t *testing.T) {
	hs := handles(t)
	const echo = `
__kernel void prob_echo(prob_t p, __global ulong *u, __global int *i, __global float *f) {
    u[0] = p.base_off; u[1] = p.stride; u[2] = p.row_base;
    i[0] = p.cols; i[1] = p.prow0; i[2] = p.flags; i[3] = p.grad; i[4] = p.col0; i[5] = p.vocab; i[6] = p.rows; i[7] = p.pad;
    f[0] = p.eps; f[1] = p.zl; f[2] = p.cap; f[3] = p.W; f[4] = p.ic; f[5] = p.ts;
}`
	ctx, q, k := kernelOn(t, hs[0], kernels.Source+echo, buildOptions(Tuning{WG: 1, Unroll: 1, UnrollHalf: 1}, handle{}), "prob_echo")
	var mems []cl.Mem
	for _, n := range []int{3 * 8, 8 * 4, 6 * 4} {
		m, err := cl.CreateBuffer(ctx, cl.MemReadWrite, n)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Release()
		mems = append(mems, m)
	}
	in := probArg{BaseOff: 1 << 40, Stride: 3<<33 + 1, RowBase: 5, Cols: 7, Prow0: -11, Flags: 13, Grad: 1, Col0: 17, Vocab: 19, Rows: 23,
		Eps: 0.25, ZL: 0.5, Cap: 30, W: 1e6, IC: 0.125, TS: 3, Pad: 29}
	runOne(t, q, k, cl.ValueOf(&in), mems[0], mems[1], mems[2])
	u, i, f := make([]uint64, 3), make([]int32, 8), make([]float32, 6)
	for n, dst := range []any{u, i, f} {
		var err error
		switch v := dst.(type) {
		case []uint64:
			_, err = cl.Read(q, mems[n], true, 0, v, nil)
		case []int32:
			_, err = cl.Read(q, mems[n], true, 0, v, nil)
		case []float32:
			_, err = cl.Read(q, mems[n], true, 0, v, nil)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	out := probArg{BaseOff: u[0], Stride: u[1], RowBase: u[2], Cols: i[0], Prow0: i[1], Flags: i[2], Grad: i[3], Col0: i[4], Vocab: i[5], Rows: i[6], Pad: i[7],
		Eps: f[0], ZL: f[1], Cap: f[2], W: f[3], IC: f[4], TS: f[5]}
	if out != in {
		t.Fatalf("prob_t and probArg disagree: sent %+v, the kernel read %+v", in, out)
	}
}
