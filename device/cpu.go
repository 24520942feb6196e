package device

import (
	"context"
	"fmt"
	"runtime"
	"sync"

	"github.com/xentlab/xent/ce"
	"github.com/xentlab/xent/cpu"
	"github.com/xentlab/xent/device/blas"
)

// chunkElems is the number of logits a CPU call computes between two looks
// at its context.
const chunkElems = 1 << 24

// CPUDevice runs the kernels of package cpu.
type CPUDevice struct {
	impl *cpu.Impl
	blas *blas.BLAS // nil: blas.Default, loaded at the first fused linear (lib)
	note string     // Info().Note
}

// NewCPU returns a CPU device running impl (cpu.Portable(), cpu.SIMD(), one of cpu.Impls()),
// with blas.Default for the fused linear's matrix products, loaded at its
// first call: a program of logits alone never loads OpenBLAS (whose
// threads would spin beside the row kernels' at start-up).
func NewCPU(impl *cpu.Impl) *CPUDevice {
	return &CPUDevice{impl: impl}
}

// lib returns the library of d's matrix products, loading blas.Default
// where d has none of its own.
func (d *CPUDevice) lib() *blas.BLAS {
	if d.blas != nil {
		return d.blas
	}
	b, _ := blas.Default()
	return b
}

// blasName names d's library of matrix products, without loading one:
// blas.Default's before its first call says that it is chosen then.
func (d *CPUDevice) blasName() string {
	if d.blas != nil {
		return d.blas.Name()
	}
	if b := blas.Chosen(); b != nil {
		return b.Name()
	}
	return "OpenBLAS where it loads, else gonum (chosen at the first fused linear)"
}

// WithBLAS returns a CPU device like d whose fused linear cross-entropy
// takes its matrix products from b.
func (d *CPUDevice) WithBLAS(b *blas.BLAS) *CPUDevice {
	return &CPUDevice{impl: d.impl, blas: b, note: d.note}
}

func openCPU(arg string) (Device, error) {
	if arg == "" {
		return NewCPU(cpu.Default()), nil
	}
	if k := cpu.Lookup(arg); k != nil {
		return NewCPU(k), nil
	}
	switch arg {
	case "simd", "avx2", "avx512", "neon":
		return nil, fmt.Errorf("device: cpu:%s: %w: %s", arg, ErrNotAvailable, cpu.SIMDUnavailable())
	}
	return nil, fmt.Errorf("device: %w: unknown CPU variant %q (want portable, simd, avx2, avx512 or neon)", ErrSpec, arg)
}

// Info implements Device.
func (d *CPUDevice) Info() Info {
	return Info{
		Name:    cpuName(),
		Kind:    "cpu",
		Backend: "cpu",
		Kernel:  fmt.Sprintf("%s, %d threads", d.impl.Name(), runtime.GOMAXPROCS(0)),
		Spec:    "cpu:" + d.impl.Name(),
		BLAS:    d.blasName(),
		Note:    d.note,
	}
}

// Caps implements Device: resident buffers (a copy in host memory),
// every element type, the fused linear cross-entropy.
func (d *CPUDevice) Caps() Caps { return Caps{Resident: true, Types: ce.Types, Linear: true} }

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

// host returns the host rows of x, its own copy when x is in one of d's
// buffers (with the buffer read-locked until done is called).
func (d *CPUDevice) host(x ce.Matrix) (m ce.Matrix, done func(), err error) {
	if x.Buf == nil {
		return x, func() {}, nil
	}
	b, ok := x.Buf.(*cpuBuffer)
	if !ok || b.d != d {
		return ce.Matrix{}, nil, fmt.Errorf("%w: %s computes on a matrix of %s", ErrForeign, d.Info().Spec, SpecOf(x.Buf))
	}
	b.mu.RLock()
	if b.released {
		b.mu.RUnlock()
		return ce.Matrix{}, nil, ErrReleased
	}
	return b.x, b.mu.RUnlock, nil
}

// grad returns the host gradient g asks for with x (x's own rows when g is
// in place in x's buffer).
func grad(g *ce.Grad, x ce.Matrix, xm ce.Matrix) (ce.Grad, error) {
	if g.Buf == nil {
		return *g, nil
	}
	if g.Buf != x.Buf {
		return ce.Grad{}, fmt.Errorf("%w: a gradient held by a device goes in place over the logits of the same buffer", ErrNotImplemented)
	}
	return ce.Grad{Data: xm.Data, Half: xm.Half, Stride: xm.Stride, Scale: g.Scale, Type: xm.Type, Fix: g.Fix}, nil
}

// LogSumExp implements Device.
func (d *CPUDevice) LogSumExp(ctx context.Context, dst []float32, x ce.Matrix) error {
	m, done, err := d.host(x)
	if err != nil {
		return err
	}
	defer done()
	return chunks(ctx, m.Rows, m.Cols, func(lo, hi int) {
		d.impl.LogSumExp(dst[lo:hi], m.RowRange(lo, hi))
	})
}

// CrossEntropy implements Device.
func (d *CPUDevice) CrossEntropy(ctx context.Context, out ce.Out, g *ce.Grad, x ce.Matrix, targets []int32, p *ce.Problem) error {
	m, done, err := d.host(x)
	if err != nil {
		return err
	}
	defer done()
	var hg ce.Grad
	if g != nil {
		if hg, err = grad(g, x, m); err != nil {
			return err
		}
	}
	return chunks(ctx, m.Rows, m.Cols, func(lo, hi int) {
		o := ce.Out{Loss: sub(out.Loss, lo, hi), LSE: sub(out.LSE, lo, hi), Correct: sub(out.Correct, lo, hi)}
		var gr *ce.Grad
		if g != nil {
			r := hg.RowRange(lo, hi)
			gr = &r
		}
		d.impl.CrossEntropy(o, gr, m.RowRange(lo, hi), targets[lo:hi], p)
	})
}

// Partials implements Device.
func (d *CPUDevice) Partials(ctx context.Context, dst []ce.Partial, x ce.Matrix, targets []int32, p *ce.Problem) error {
	m, done, err := d.host(x)
	if err != nil {
		return err
	}
	defer done()
	return chunks(ctx, m.Rows, m.Cols, func(lo, hi int) {
		d.impl.Partials(dst[lo:hi], m.RowRange(lo, hi), targets[lo:hi], p)
	})
}

// Ranks implements Ranker.
func (d *CPUDevice) Ranks(ctx context.Context, dst []ce.Rank, x ce.Matrix, targets []int32, part []ce.Partial, p *ce.Problem) error {
	m, done, err := d.host(x)
	if err != nil {
		return err
	}
	defer done()
	return chunks(ctx, m.Rows, m.Cols, func(lo, hi int) {
		d.impl.Ranks(dst[lo:hi], m.RowRange(lo, hi), targets[lo:hi], part[lo:hi], p)
	})
}

// Backward implements Device.
func (d *CPUDevice) Backward(ctx context.Context, g ce.Grad, x ce.Matrix, targets []int32, part []ce.Partial, p *ce.Problem) error {
	m, done, err := d.host(x)
	if err != nil {
		return err
	}
	defer done()
	hg, err := grad(&g, x, m)
	if err != nil {
		return err
	}
	return chunks(ctx, m.Rows, m.Cols, func(lo, hi int) {
		d.impl.Backward(hg.RowRange(lo, hi), m.RowRange(lo, hi), targets[lo:hi], part[lo:hi], p)
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

// cpuBuffer is a CPU Resident buffer: a dense copy in host memory. The
// computations hold mu for reading; Release holds it to drop the copy.
type cpuBuffer struct {
	d        *CPUDevice
	mu       sync.RWMutex
	x        ce.Matrix
	released bool
}

// Upload implements Device.
func (d *CPUDevice) Upload(ctx context.Context, x ce.Matrix) (Buffer, error) {
	src, done, err := d.host(x)
	if err != nil {
		return nil, err
	}
	defer done()
	m := ce.NewDense(x.Rows, x.Cols, x.Type)
	cpu.Copy(m, src)
	return &cpuBuffer{d: d, x: m}, nil
}

func (b *cpuBuffer) Rows() int      { return b.x.Rows }
func (b *cpuBuffer) Cols() int      { return b.x.Cols }
func (b *cpuBuffer) Type() ce.DType { return b.x.Type }
func (b *cpuBuffer) Owner() Device  { return b.d }

func (b *cpuBuffer) Download(ctx context.Context, dst ce.Matrix) error {
	x, done, err := b.d.host(ce.BufferMatrix(b))
	if err != nil {
		return err
	}
	defer done()
	cpu.Copy(dst, x)
	return nil
}

func (b *cpuBuffer) Release() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.x.Data, b.x.Half, b.released = nil, nil, true
	return nil
}
