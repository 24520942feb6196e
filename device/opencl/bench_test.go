package opencl_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/xentlab/xent/batch"
	"github.com/xentlab/xent/device"
	"github.com/xentlab/xent/internal/gen"
)

// BenchmarkOpenCL times log-sum-exp and the fused forward+backward on the
// OpenCL device, kernel-only (resident buffer, profiling events: the
// reported ns/op is kernel time) and end-to-end (host slices, transfers
// counted), next to the CPU device.
func BenchmarkOpenCL(b *testing.B) {
	ctx := context.Background()
	d := openTest(b)
	cpuDev, _ := device.Open("cpu")
	for _, sz := range []struct{ rows, cols int }{{1024, 50257}, {4096, 32000}} {
		x := gen.Logits(sz.rows, sz.cols, 1)
		tg := gen.Targets(sz.rows, sz.cols, 2)
		lse := make([]float32, sz.rows)
		m := batch.NewMatrix(x, sz.rows, sz.cols)
		for _, op := range []string{"lse", "fused"} {
			for _, dev := range []device.Device{d, cpuDev} {
				l, _ := batch.New(dev)
				b.Run(fmt.Sprintf("op=%s/dev=%s/mode=end-to-end/%dx%d", op, dev.Info().Backend, sz.rows, sz.cols), func(b *testing.B) {
					b.SetBytes(int64(4 * len(x)))
					for b.Loop() {
						var err error
						if op == "lse" {
							err = l.LogSumExp(ctx, lse, m)
						} else {
							_, err = l.ForwardBackward(ctx, batch.InPlace(m), m, tg, batch.One)
						}
						if err != nil {
							b.Fatal(err)
						}
					}
				})
			}
			l, _ := batch.New(d)
			dm, err := batch.Upload(ctx, d, m)
			if err != nil {
				b.Fatal(err)
			}
			b.Run(fmt.Sprintf("op=%s/dev=opencl/mode=kernel/%dx%d", op, sz.rows, sz.cols), func(b *testing.B) {
				b.SetBytes(int64(4 * len(x)))
				var total float64
				for b.Loop() {
					if op == "lse" {
						err = l.LogSumExp(ctx, lse, dm.Matrix())
					} else {
						_, err = l.ForwardBackward(ctx, dm.Grad(), dm.Matrix(), tg, batch.One)
					}
					if err != nil {
						b.Fatal(err)
					}
					total += d.LastKernelTime().Seconds()
				}
				b.ReportMetric(total/float64(b.N)*1e9, "kernel-ns/op")
				b.ReportMetric(float64(4*len(x))/(total/float64(b.N))/1e9, "kernel-GB/s")
			})
			dm.Release()
		}
	}
}
