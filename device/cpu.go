package device

import (
	"context"
	"fmt"
	"runtime"
	"sync"

	"github.com/xentlab/xent/cpu"
)

// chunkElems is the number of logits a CPU call computes between two looks
// at its context.
const chunkElems = 1 << 24

// CPUDevice runs the kernels of package cpu.
type CPUDevice struct {
	impl *cpu.Impl
}

// NewCPU returns a CPU device running impl (cpu.Portable, cpu.SIMD, ...).
func NewCPU(impl *cpu.Impl) *CPUDevice { return &CPUDevice{impl: impl} }

func openCPU(arg string) (Device, error) {
	switch arg {
	case "":
		return NewCPU(cpu.Default), nil
	case "portable":
		return NewCPU(cpu.Portable), nil
	case "simd":
		if cpu.SIMD == nil {
			return nil, fmt.Errorf("device: cpu:simd: %w: %s", ErrNotAvailable, cpu.SIMDUnavailable())
		}
		return NewCPU(cpu.SIMD), nil
	}
	return nil, fmt.Errorf("device: %w: unknown CPU variant %q (want portable or simd)", ErrSpec, arg)
}

// Info implements Device.
func (d *CPUDevice) Info() Info {
	return Info{
		Name:    cpuName(),
		Kind:    "cpu",
		Backend: "cpu",
		Kernel:  fmt.Sprintf("%s, %d threads", d.impl.Name(), runtime.GOMAXPROCS(0)),
		Spec:    "cpu:" + d.impl.Name(),
	}
}

// chunks calls f on row ranges of about chunkElems logits, checking ctx
// before each.
func chunks(ctx context.Context, rows, cols int, f func(lo, hi int)) error {
	step := max(1, chunkElems/max(cols, 1))
	for lo := 0; lo < rows; lo += step {
		if err := ctx.Err(); err != nil {
			return err
		}
		f(lo, min(rows, lo+step))
	}
	return ctx.Err()
}

// LogSumExp implements Device.
func (d *CPUDevice) LogSumExp(ctx context.Context, dst []float32, x Matrix) error {
	return chunks(ctx, x.Rows, x.Cols, func(lo, hi int) {
		d.impl.LogSumExp(dst[lo:hi], x.Data[lo*x.Stride:], hi-lo, x.Cols, x.Stride)
	})
}

// CrossEntropy implements Device.
func (d *CPUDevice) CrossEntropy(ctx context.Context, x Matrix, targets []int32, opt *Options, out Rows, grad *Grad) error {
	return chunks(ctx, x.Rows, x.Cols, func(lo, hi int) {
		p := cpu.Problem{
			X: x.Data[lo*x.Stride:], Rows: hi - lo, Cols: x.Cols, Stride: x.Stride,
			Targets:   targets[lo:hi],
			Smoothing: opt.Smoothing, ZLoss: opt.ZLoss, Softcap: opt.Softcap,
			Weights: opt.Weights, WeightSum: opt.WeightSum,
		}
		o := cpu.Out{Loss: sub(out.Loss, lo, hi), LSE: sub(out.LSE, lo, hi), Correct: sub(out.Correct, lo, hi)}
		if grad != nil {
			o.Grad, o.GradStride, o.Scale = grad.Data[lo*grad.Stride:], grad.Stride, grad.Scale[lo:hi]
		}
		d.impl.CrossEntropy(&p, &o)
	})
}

// Close implements Device; a CPU device holds nothing.
func (d *CPUDevice) Close() error { return nil }

func sub[T any](s []T, lo, hi int) []T {
	if s == nil {
		return nil
	}
	return s[lo:hi]
}

// cpuBuffer is a CPU Resident buffer: a dense copy in host memory. Its
// methods hold mu for reading; Release holds it to drop the copy.
type cpuBuffer struct {
	d          *CPUDevice
	mu         sync.RWMutex
	x          Matrix
	rows, cols int
	released   bool
}

// Upload implements Resident.
func (d *CPUDevice) Upload(ctx context.Context, x Matrix) (Buffer, error) {
	m := Matrix{Data: make([]float32, x.Rows*x.Cols), Rows: x.Rows, Cols: x.Cols, Stride: x.Cols}
	for i := range x.Rows {
		copy(m.Data[i*x.Cols:(i+1)*x.Cols], x.Data[i*x.Stride:i*x.Stride+x.Cols])
	}
	return &cpuBuffer{d: d, x: m, rows: x.Rows, cols: x.Cols}, nil
}

func (b *cpuBuffer) Rows() int { return b.rows }
func (b *cpuBuffer) Cols() int { return b.cols }

// use runs f on the buffer's matrix, or returns ErrReleased.
func (b *cpuBuffer) use(f func(x Matrix) error) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.released {
		return ErrReleased
	}
	return f(b.x)
}

func (b *cpuBuffer) LogSumExp(ctx context.Context, dst []float32) error {
	return b.use(func(x Matrix) error { return b.d.LogSumExp(ctx, dst, x) })
}

func (b *cpuBuffer) CrossEntropy(ctx context.Context, targets []int32, opt *Options, out Rows, scale []float32) error {
	return b.use(func(x Matrix) error {
		var g *Grad
		if scale != nil {
			g = &Grad{Data: x.Data, Stride: x.Cols, Scale: scale}
		}
		return b.d.CrossEntropy(ctx, x, targets, opt, out, g)
	})
}

func (b *cpuBuffer) Download(ctx context.Context, dst Matrix) error {
	return b.use(func(x Matrix) error {
		for i := range x.Rows {
			copy(dst.Data[i*dst.Stride:i*dst.Stride+x.Cols], x.Data[i*x.Cols:(i+1)*x.Cols])
		}
		return nil
	})
}

func (b *cpuBuffer) Release() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.x.Data, b.released = nil, true
	return nil
}
