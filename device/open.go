package device

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/xentlab/xent/ce"
	"github.com/xentlab/xent/cpu"
	"github.com/xentlab/xent/device/blas"
)

// Backend is a registered device provider other than the CPU.
type Backend struct {
	// Name is the spec prefix ("opencl").
	Name string
	// Open opens the device named by arg, the part of the spec after
	// "name:" ("" for the back end's default).
	Open func(arg string) (Device, error)
	// Accelerators opens every GPU or accelerator the back end has; it
	// returns none and a reason when there are none.
	Accelerators func() ([]Device, error)
	// List describes every device of the back end, or says why there are
	// none.
	List func() ([]Description, error)
}

// Description is one entry of List.
type Description struct {
	Spec    string      // what Open takes
	Name    string      // the device's name
	Details [][2]string // key, value pairs, in order
}

// List describes every device that Open can open: the CPU variants first,
// then each back end's devices (or why it has none).
func List() []Description {
	var out []Description
	var names []string
	for _, k := range cpu.Impls() {
		names = append(names, k.Name())
	}
	variants := strings.Join(names, ", ")
	out = append(out, Description{Spec: "cpu", Name: cpuName(), Details: [][2]string{
		{"kind", "cpu"},
		{"threads", strconv.Itoa(runtime.GOMAXPROCS(0))},
		{"kernel", cpu.Default().Name() + " (available: " + variants + ")"},
	}})
	if cpu.SIMD() == nil {
		out[0].Details = append(out[0].Details, [2]string{"simd", cpu.SIMDUnavailable()})
	}
	b, why := blas.Default()
	linear := b.Name() + ": " + b.Detail()
	if why != "" {
		linear += " (not OpenBLAS: " + why + ")"
	}
	out[0].Details = append(out[0].Details, [2]string{"linear (BLAS)", linear})
	if w := cpu.ExperimentWarning(); w != "" {
		out[0].Details = append(out[0].Details, [2]string{"warning", w})
	}
	mu.Lock()
	bs := append([]Backend(nil), backends...)
	mu.Unlock()
	for _, b := range bs {
		if b.List == nil {
			continue
		}
		ds, err := b.List()
		if err != nil {
			out = append(out, Description{Spec: b.Name, Name: "(none: " + err.Error() + ")"})
		}
		out = append(out, ds...)
	}
	return out
}

var (
	mu       sync.Mutex
	backends []Backend
)

// Register adds a back end. It is called from the init function of the
// back end's package.
func Register(b Backend) {
	mu.Lock()
	defer mu.Unlock()
	backends = append(backends, b)
}

func backend(name string) (Backend, bool) {
	mu.Lock()
	defer mu.Unlock()
	for _, b := range backends {
		if b.Name == name {
			return b, true
		}
	}
	return Backend{}, false
}

// Open opens the device named by spec (see the package comment).
func Open(spec string) (Device, error) {
	name, arg, _ := strings.Cut(spec, ":")
	switch name {
	case "cpu":
		return openCPU(arg)
	case "auto":
		if arg != "" {
			return nil, fmt.Errorf("device: %w %q: auto takes no argument", ErrSpec, spec)
		}
		accs, why := accelerators()
		if len(accs) > 0 {
			for _, d := range accs[1:] {
				d.Close()
			}
			return accs[0], nil
		}
		c := NewCPU(cpu.Default())
		c.note = fmt.Sprintf("auto: no GPU or accelerator (%v): the CPU", why)
		return c, nil
	case "all":
		accs, _ := accelerators()
		c, err := openCPU("")
		if err != nil {
			return nil, err
		}
		if len(accs) == 0 {
			return c, nil
		}
		return NewGroup(SplitRows, append(accs, c)...)
	}
	b, ok := backend(name)
	if !ok {
		if name == "opencl" {
			return nil, fmt.Errorf("device: %q: this build has no OpenCL back end: %w", spec, ErrNotAvailable)
		}
		return nil, fmt.Errorf("device: %w: unknown device %q (want auto, all, cpu, cpu:portable, cpu:simd, cpu:avx2, cpu:avx512, cpu:neon, opencl or opencl:P:D)", ErrSpec, spec)
	}
	return b.Open(arg)
}

// accelerators opens the GPUs and accelerators of every back end, or
// returns why there are none.
func accelerators() ([]Device, error) {
	mu.Lock()
	bs := append([]Backend(nil), backends...)
	mu.Unlock()
	var all []Device
	var why []string
	for _, b := range bs {
		if b.Accelerators == nil {
			continue
		}
		ds, err := b.Accelerators()
		if err != nil {
			why = append(why, fmt.Sprintf("%s: %v", b.Name, err))
		}
		all = append(all, ds...)
	}
	if len(all) == 0 && len(why) == 0 {
		why = append(why, "no GPU back end in this build")
	}
	if len(all) > 0 {
		return all, nil
	}
	return nil, fmt.Errorf("%s", strings.Join(why, "; "))
}

// LinearOf returns d's fused linear cross-entropy, or, when d runs none
// itself (Caps().Linear is false: OpenCL without CLBlast), the CPU's, on
// host matrices (a device's Info().Note says so).
func LinearOf(d Device) FusedLinear {
	if f, ok := d.(FusedLinear); ok && d.Caps().Linear {
		return f
	}
	return fallback()
}

// fallback is the CPU device that runs the fused linear of the devices
// without their own; it is never closed.
var fallback = sync.OnceValue(func() *CPUDevice { return NewCPU(cpu.Default()) })

// FallbackBLAS names the BLAS of the fused linear of a device that runs
// none itself.
func FallbackBLAS() string { return "the CPU's (" + fallback().lib().Name() + ")" }

// RanksOf returns the rank pass of x for d: d's own (Ranker) for a matrix
// d holds, and for host rows when d is a CPU device; else the CPU's,
// which takes host rows (another device's matrix, of a device without a
// rank pass, is an ErrNotImplemented).
func RanksOf(d Device, x ce.Matrix) Ranker {
	if r, ok := d.(Ranker); ok {
		if _, cpu := d.(*CPUDevice); cpu || x.Buf != nil {
			return r
		}
	}
	return hostRanker{}
}

// hostRanker is the CPU's rank pass for the host matrices of a device
// without one.
type hostRanker struct{}

func (hostRanker) Ranks(ctx context.Context, dst []ce.Rank, x ce.Matrix, targets []int32, part []ce.Partial, p *ce.Problem) error {
	if x.Buf != nil {
		return fmt.Errorf("%w: the rank pass of a matrix held by %s (download it, or compute on the CPU)", ErrNotImplemented, SpecOf(x.Buf))
	}
	return fallback().Ranks(ctx, dst, x, targets, part, p)
}

// GatherOf returns what gathers the logits of m (x, or the fused
// linear's W) for d: d's own Gatherer when m is a matrix d holds, else the
// CPU's, which reads host rows (the fused linear's in float64, rounded
// once) and its own buffers (another device's matrix is an error).
func GatherOf(d Device, m ce.Matrix) Gatherer {
	if g, ok := d.(Gatherer); ok && m.Buf != nil {
		return g
	}
	return fallback()
}

// LinearRanksOf returns the fused linear's rank pass of W for d, as
// RanksOf: d's own (LinearRanker) for a W d holds, and for a host W when
// d is a CPU device; else the CPU's.
func LinearRanksOf(d Device, w ce.Matrix) LinearRanker {
	if r, ok := d.(LinearRanker); ok && d.Caps().Linear {
		if _, cpu := d.(*CPUDevice); cpu || w.Buf != nil {
			return r
		}
	}
	return fallback()
}
