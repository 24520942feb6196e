package opencl

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/xentlab/xent/device"
	"github.com/xentlab/xent/device/opencl/internal/cl"
	"github.com/xentlab/xent/kernels"
)

// TestBuildWarnings builds xent.cl and linear.cl with -Werror (OpenCL's
// own option: every warning an error) on each device, under the tunings
// the tree ships and those its options reach: the kinds' defaults, the
// table's entries, rows kept in registers or not (xent.cl's KEEP_ROWS),
// every Align, packed rows, and linear.cl's tiles. Compilers differ in
// what they accept: a warning on one (PoCL's and Oclgrind's clang warned
// "use of logical '&&' with constant operand" three times, NVIDIA's
// counted four) is where another's error hides. A build that fails
// carries its log, which names the line; one that builds (Oclgrind
// ignores -Werror) must log no warning.
func TestBuildWarnings(t *testing.T) {
	tunings := []Tuning{
		kindDefault("gpu"),
		kindDefault("cpu"),
		{WG: 256, Unroll: 4, UnrollHalf: 8, Align: 1, Rev: 1}, // the table's H200
		{WG: 32, Unroll: 1, UnrollHalf: 1, RC: 8, Align: 1},   // the table's PoCL
		{WG: 1, Unroll: 1, UnrollHalf: 2, RC: 8, Align: 3},    // RC with one work-item a row: nothing kept
		{WG: 128, Unroll: 8, UnrollHalf: 16, RC: 64, Align: 2, Rev: 1},
	}
	for _, h := range handles(t) {
		ctx, err := cl.CreateContext(h.dev)
		if err != nil {
			t.Fatal(err)
		}
		build := func(name, src, opts string) {
			t.Helper()
			prog, err := cl.BuildProgram(ctx, h.dev, src, opts+" -Werror")
			if err != nil {
				t.Errorf("%s: %s with %s: %v", h.name, name, opts, err)
				return
			}
			// Oclgrind takes -Werror and still builds: its log says.
			if log, err := prog.BuildLog(h.dev); err != nil {
				t.Error(err)
			} else if strings.Contains(log, "warning") {
				t.Errorf("%s: %s with %s: the compiler warns:\n%s", h.name, name, opts, log)
			}
			if err := prog.Release(); err != nil {
				t.Error(err)
			}
		}
		for _, tn := range tunings {
			build("xent.cl", kernels.Source, buildOptions(tn, h))
		}
		tn := kindDefault(h.kind)
		build("xent.cl", kernels.Source, buildOptions(tn, h)+" -DPACK=4")
		for _, lin := range [][2]int{{16, 4}, {32, 4}, {64, 4}, {64, 8}} {
			tn.LinTile, tn.LinReg = lin[0], lin[1]
			build("linear.cl", kernels.LinearSource, linearOptions(tn, h))
		}
		if err := ctx.Release(); err != nil {
			t.Error(err)
		}
	}
}

// TestFlushed runs a + b·c on a float32 whose result is subnormal
// (2^-130), built with each device's options (its tuning's, and
// XENT_OPENCL_OPTIONS): where the device keeps subnormals it is 2^-130,
// where it flushes them (-cl-denorms-are-zero, or a device without
// CL_FP_DENORM) 0; anything else is a wrong build. With
// XENT_TEST_FLUSHED=1 (CI's run of the tests with -cl-denorms-are-zero)
// it must be 0: that run checks every kernel on a device that flushes,
// and would check nothing new if the option did not reach the build or
// the runtime ignored it.
func TestFlushed(t *testing.T) {
	const src = `__kernel void sub(__global float *x, float a, float b) { x[get_global_id(0)] = a * b; }`
	for _, h := range handles(t) {
		tn, _, err := tuningOf(h)
		if err != nil {
			t.Fatal(err)
		}
		got := runSub(t, h, src, buildOptions(tn, h))
		want := float32(0x1p-130)
		switch {
		case os.Getenv("XENT_TEST_FLUSHED") == "1" && got != 0:
			t.Errorf("%s, built with %s: 2^-65 · 2^-65 = %g: XENT_TEST_FLUSHED=1 wants subnormals flushed (XENT_OPENCL_OPTIONS=-cl-denorms-are-zero)", h.name, buildOptions(tn, h), got)
		case got != 0 && got != want:
			t.Errorf("%s: 2^-65 · 2^-65 = %g, want %g or 0", h.name, got, want)
		default:
			t.Logf("%s, built with %s: subnormals flushed: %v", h.name, buildOptions(tn, h), got == 0)
		}
	}
}

// runSub builds src with opts on h and returns x[0] of its kernel "sub"
// at a = b = 2^-65.
func runSub(t *testing.T, h handle, src, opts string) float32 {
	t.Helper()
	ctx, q, k := kernelOn(t, h, src, opts, "sub")
	m, err := cl.CreateBuffer(ctx, cl.MemReadWrite, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Release()
	a := float32(0x1p-65)
	runOne(t, q, k, m, cl.ValueOf(&a), cl.ValueOf(&a))
	out := make([]float32, 1)
	if _, err := cl.Read(q, m, true, 0, out, nil); err != nil {
		t.Fatal(err)
	}
	return out[0]
}

// runOne runs k on q as one work-item with args.
func runOne(t *testing.T, q cl.Queue, k cl.Kernel, args ...any) {
	t.Helper()
	if err := k.SetArgs(args...); err != nil {
		t.Fatal(err)
	}
	ev, err := q.NDRange(k, 1, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ev.Release(); err != nil {
		t.Fatal(err)
	}
}

// kernelOn builds src with opts in a new context on h and returns the
// context, a queue and kernel name, released when the test ends.
func kernelOn(t *testing.T, h handle, src, opts, name string) (cl.Context, cl.Queue, cl.Kernel) {
	t.Helper()
	ctx, err := cl.CreateContext(h.dev)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctx.Release() })
	prog, err := cl.BuildProgram(ctx, h.dev, src, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prog.Release() })
	k, err := cl.CreateKernel(prog, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Release() })
	q, err := cl.CreateQueue(ctx, h.dev, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Release() })
	return ctx, q, k
}

// TestWorkGroupLimits: the work-group sizes the kernels are built and
// launched with stay within CL_DEVICE_MAX_WORK_ITEM_SIZES[0] as well as
// CL_DEVICE_MAX_WORK_GROUP_SIZE (the launches are 1-D: a larger local
// size is CL_INVALID_WORK_ITEM_SIZE), and the binding reads the size_t
// array whole: CL_DEVICE_MAX_WORK_ITEM_DIMENSIONS entries (at least 3),
// each at least 1.
func TestWorkGroupLimits(t *testing.T) {
	const maxWorkItemDimensions = 0x1003
	for _, h := range handles(t) {
		items, err := h.dev.Sizes(cl.DeviceMaxWorkItemSizes)
		if err != nil {
			t.Fatal(err)
		}
		dims, err := h.dev.Uint(maxWorkItemDimensions)
		if err != nil {
			t.Fatal(err)
		}
		dev, err := h.dev.Uint(cl.DeviceMaxWorkGroupSize)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: work-items %v, work-group %d", h.name, items, dev)
		if uint64(len(items)) != dims || dims < 3 {
			t.Fatalf("%s: %d work-item sizes %v, CL_DEVICE_MAX_WORK_ITEM_DIMENSIONS %d (at least 3)", h.name, len(items), items, dims)
		}
		for i, n := range items {
			if n < 1 || n > 1<<32 {
				t.Errorf("%s: CL_DEVICE_MAX_WORK_ITEM_SIZES[%d] = %d", h.name, i, n)
			}
		}
		mw, err := maxWG(h)
		if err != nil {
			t.Fatal(err)
		}
		if uint64(mw) > items[0] || uint64(mw) > dev || mw&(mw-1) != 0 {
			t.Errorf("%s: maxWG %d, want a power of two ≤ %d and ≤ %d", h.name, mw, items[0], dev)
		}
		ctx, _, k := kernelOn(t, h, `__kernel void sub(__global float *x) { x[get_global_id(0)] = 0.0f; }`, "", "sub")
		if n, err := k.WorkGroupSize(h.dev); err != nil {
			t.Error(err)
		} else if n < 1 || uint64(n) > items[0] || uint64(n) > dev {
			t.Errorf("%s: a kernel's work-group size %d, want 1 to min(%d, %d)", h.name, n, items[0], dev)
		}

		// A kernel whose __local array passes the device's local memory
		// runs at no size: 0 (or its build fails, the driver's own check).
		lm, err := h.dev.Uint(cl.DeviceLocalMemSize)
		if err != nil {
			t.Fatal(err)
		}
		big := fmt.Sprintf(`__kernel void big(__global float *x) {
    __local float l[%d];
    l[get_local_id(0)] = x[get_global_id(0)];
    barrier(CLK_LOCAL_MEM_FENCE);
    x[get_global_id(0)] = l[%d - 1 - get_local_id(0)];
}`, lm/4+1024, lm/4+1024)
		if prog, err := cl.BuildProgram(ctx, h.dev, big, ""); err != nil {
			t.Logf("%s: a kernel of %d bytes of local memory (the device has %d) does not build: %.200v", h.name, lm+4096, lm, err)
		} else {
			k, err := cl.CreateKernel(prog, "big")
			if err != nil {
				t.Logf("%s: a kernel of %d bytes of local memory (the device has %d) is not created: %v", h.name, lm+4096, lm, err)
			} else {
				if n, err := k.WorkGroupSize(h.dev); err != nil || n != 0 {
					t.Errorf("%s: a kernel of %d bytes of local memory (the device has %d): work-group size %d, %v; want 0", h.name, lm+4096, lm, n, err)
				}
				k.Release()
			}
			prog.Release()
		}
	}
}

// TestCVersion: a device whose OpenCL C is older than 1.2 (the kernels'
// -cl-std=CL1.2) is not available, saying why; 1.2 and later are, and a
// version that does not parse is named.
func TestCVersion(t *testing.T) {
	for cv, want := range map[string]string{
		"OpenCL C 1.2 pocl":           "",
		"OpenCL C 1.2 ":               "",
		"OpenCL C 3.0 ":               "",
		"OpenCL C 2.0 AMD-APP (3635)": "",
		"OpenCL C 1.10 fictional":     "", // minor 10: later than 1.2
		"OpenCL C 1.1 ":               "need OpenCL C 1.2",
		"OpenCL C 1.0":                "need OpenCL C 1.2",
		"OpenCL C 0.9":                "need OpenCL C 1.2",
		"OpenCL 1.2":                  "is not",
		"OpenCL C x.y":                "is not",
		"":                            "is not",
	} {
		err := checkCVersion(cv)
		if want == "" {
			if err != nil {
				t.Errorf("%q: %v", cv, err)
			}
			continue
		}
		if !errors.Is(err, device.ErrNotAvailable) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want ErrNotAvailable saying %q", cv, err, want)
		}
	}
	for _, h := range handles(t) {
		cv, err := h.dev.String(cl.DeviceOpenCLCVersion)
		if err != nil {
			t.Fatal(err)
		}
		if err := checkCVersion(cv); err != nil {
			t.Errorf("%s: %v", h.name, err)
		}
	}
}
