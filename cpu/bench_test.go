package cpu_test

import (
	"fmt"
	"testing"

	"gonum.org/v1/gonum/floats"

	"github.com/xentlab/xent/ce"
	"github.com/xentlab/xent/cpu"
	"github.com/xentlab/xent/internal/gen"
)

var benchSizes = []struct{ rows, cols int }{{1024, 50257}, {4096, 32000}}

func benchData(rows, cols int) ([]float32, []int32) {
	return gen.Logits(rows, cols, 1), gen.Targets(rows, cols, 2)
}

func impls() []*cpu.Impl {
	if cpu.SIMD() != nil {
		return cpu.Impls()
	}
	return []*cpu.Impl{cpu.Portable()}
}

func BenchmarkLogSumExp(b *testing.B) {
	for _, sz := range benchSizes {
		x, _ := benchData(sz.rows, sz.cols)
		dst := make([]float32, sz.rows)
		for _, k := range impls() {
			b.Run(fmt.Sprintf("impl=%s/%dx%d", k.Name(), sz.rows, sz.cols), benchLSE(k, dst, x, sz.cols, sz.cols))
		}
		// The baseline: gonum's float64 LogSumExp per row, on one goroutine.
		b.Run(fmt.Sprintf("impl=gonum/%dx%d", sz.rows, sz.cols), func(b *testing.B) {
			b.SetBytes(int64(4 * len(x)))
			row := make([]float64, sz.cols)
			for b.Loop() {
				for i := range sz.rows {
					for j, v := range x[i*sz.cols : (i+1)*sz.cols] {
						row[j] = float64(v)
					}
					dst[i] = float32(floats.LogSumExp(row))
				}
			}
		})
	}
}

// BenchmarkLogSumExpInCache is BenchmarkLogSumExp with every row the first
// one (stride 0): the same work, with the row read from L2 rather than
// from memory, so that the two show what memory costs the kernels.
func BenchmarkLogSumExpInCache(b *testing.B) {
	for _, sz := range benchSizes {
		x, _ := benchData(1, sz.cols)
		dst := make([]float32, sz.rows)
		for _, k := range impls() {
			b.Run(fmt.Sprintf("impl=%s/%dx%d", k.Name(), sz.rows, sz.cols), benchLSE(k, dst, x, sz.cols, 0))
		}
	}
}

// benchLSE runs k.LogSumExp on len(dst) rows of x with the stride given.
func benchLSE(k *cpu.Impl, dst, x []float32, cols, stride int) func(*testing.B) {
	return func(b *testing.B) {
		b.SetBytes(int64(4 * len(dst) * cols))
		for b.Loop() {
			k.LogSumExp(dst, ce.Matrix{Data: x, Rows: len(dst), Cols: cols, Stride: stride})
		}
	}
}

func BenchmarkCrossEntropy(b *testing.B) {
	for _, sz := range benchSizes {
		x, t := benchData(sz.rows, sz.cols)
		loss := make([]float32, sz.rows)
		scale := make([]float32, sz.rows)
		for i := range scale {
			scale[i] = 1 / float32(sz.rows)
		}
		m := ce.Matrix{Data: x, Rows: sz.rows, Cols: sz.cols, Stride: sz.cols}
		for _, k := range impls() {
			for _, o := range []struct {
				name string
				p    *ce.Problem
			}{
				{"none", &ce.Problem{WeightSum: float64(sz.cols)}},
				{"smoothing", &ce.Problem{Smoothing: 0.1, WeightSum: float64(sz.cols)}},
				{"softcap", &ce.Problem{Softcap: 30, WeightSum: float64(sz.cols)}},
				{"temperature", &ce.Problem{Temperature: 0.7, WeightSum: float64(sz.cols)}},
			} {
				b.Run(fmt.Sprintf("op=forward/opts=%s/impl=%s/%dx%d", o.name, k.Name(), sz.rows, sz.cols), func(b *testing.B) {
					b.SetBytes(int64(4 * len(x)))
					for b.Loop() {
						k.CrossEntropy(ce.Out{Loss: loss}, nil, m, t, o.p)
					}
				})
				b.Run(fmt.Sprintf("op=fused/opts=%s/impl=%s/%dx%d", o.name, k.Name(), sz.rows, sz.cols), func(b *testing.B) {
					b.SetBytes(int64(4 * len(x)))
					b.ReportAllocs()
					for b.Loop() { // in place: the gradient of a gradient is still a valid input
						k.CrossEntropy(ce.Out{Loss: loss}, &ce.Grad{Data: x, Stride: sz.cols, Scale: scale}, m, t, o.p)
					}
				})
			}
		}
	}
}

// BenchmarkTypes runs the forward and the fused forward + backward (in
// place, in the logits' type) on the same logits in each element type.
// Its MB/s count 4 bytes per logit whatever the type, so that they
// compare logits per second: a half-precision row reads half the bytes.
func BenchmarkTypes(b *testing.B) {
	sz := benchSizes[0]
	x, t := benchData(sz.rows, sz.cols)
	loss := make([]float32, sz.rows)
	scale := make([]float32, sz.rows)
	for i := range scale {
		scale[i] = 1 / float32(sz.rows)
	}
	p := &ce.Problem{WeightSum: float64(sz.cols)}
	for _, typ := range ce.Types {
		m := ce.NewDense(sz.rows, sz.cols, typ)
		if typ == ce.F32 {
			copy(m.Data, x)
		} else {
			cpu.Narrow(m.Half, x, typ)
		}
		g := &ce.Grad{Data: m.Data, Half: m.Half, Stride: sz.cols, Scale: scale, Type: typ}
		for _, k := range impls() {
			b.Run(fmt.Sprintf("op=forward/type=%v/impl=%s/%dx%d", typ, k.Name(), sz.rows, sz.cols), func(b *testing.B) {
				b.SetBytes(int64(4 * len(x)))
				for b.Loop() {
					k.CrossEntropy(ce.Out{Loss: loss}, nil, m, t, p)
				}
			})
			b.Run(fmt.Sprintf("op=fused/type=%v/impl=%s/%dx%d", typ, k.Name(), sz.rows, sz.cols), func(b *testing.B) {
				b.SetBytes(int64(4 * len(x)))
				for b.Loop() {
					k.CrossEntropy(ce.Out{Loss: loss}, g, m, t, p)
				}
			})
		}
	}
}

// BenchmarkRanks times the pass of the ranks (the count of classes above
// the target and the entropy) beside the partials' pass it follows, on
// the same logits: the second pass --topk adds.
func BenchmarkRanks(b *testing.B) {
	sz := benchSizes[0]
	x, t := benchData(sz.rows, sz.cols)
	m := ce.Matrix{Data: x, Rows: sz.rows, Cols: sz.cols, Stride: sz.cols}
	p := &ce.Problem{WeightSum: float64(sz.cols)}
	part := make([]ce.Partial, sz.rows)
	ranks := make([]ce.Rank, sz.rows)
	for _, k := range impls() {
		b.Run(fmt.Sprintf("op=partials/impl=%s/%dx%d", k.Name(), sz.rows, sz.cols), func(b *testing.B) {
			b.SetBytes(int64(4 * len(x)))
			for b.Loop() {
				k.Partials(part, m, t, p)
			}
		})
		k.Partials(part, m, t, p)
		b.Run(fmt.Sprintf("op=ranks/impl=%s/%dx%d", k.Name(), sz.rows, sz.cols), func(b *testing.B) {
			b.SetBytes(int64(4 * len(x)))
			for b.Loop() {
				k.Ranks(ranks, m, t, part, p)
			}
		})
	}
}
