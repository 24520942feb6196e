package opencl

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/xentlab/xent/device"
	"github.com/xentlab/xent/device/opencl/internal/cl"
	"github.com/xentlab/xent/kernels"
)

func init() {
	device.Register(device.Backend{Name: "opencl", Open: Open, Accelerators: accelerators, List: list})
}

// ErrTooLarge is returned when one row does not fit in a device buffer.
var ErrTooLarge = errors.New("opencl: row too large for the device")

// Live returns the number of OpenCL objects not yet released, process-wide.
func Live() int64 { return cl.Live() }

// Available reports whether an OpenCL library could be loaded, and why not.
func Available() error { return cl.Load() }

// handle names one OpenCL device.
type handle struct {
	plat     cl.Platform
	dev      cl.Device
	pi, di   int
	kind     string
	name     string
	platName string
	driver   string
}

// enumerate lists every device of every platform.
func enumerate() ([]handle, error) {
	ps, err := cl.Platforms()
	if err != nil {
		return nil, err
	}
	var hs []handle
	for pi, p := range ps {
		ds, err := p.Devices(cl.DeviceTypeAll)
		if err != nil {
			return nil, fmt.Errorf("platform %d: %w", pi, err)
		}
		pn, _ := p.Info(cl.PlatformName)
		for di, d := range ds {
			typ, _ := d.Uint(cl.DeviceType)
			kind := "other"
			switch {
			case typ&cl.DeviceTypeGPU != 0:
				kind = "gpu"
			case typ&cl.DeviceTypeAccelerator != 0:
				kind = "accelerator"
			case typ&cl.DeviceTypeCPU != 0:
				kind = "cpu"
			}
			name, _ := d.String(cl.DeviceName)
			drv, _ := d.String(cl.DriverVersion)
			hs = append(hs, handle{plat: p, dev: d, pi: pi, di: di, kind: kind, name: name, platName: pn, driver: drv})
		}
	}
	return hs, nil
}

// Open opens the device named by arg: "" for the first GPU or accelerator
// (else the first device), or "P:D".
func Open(arg string) (device.Device, error) {
	d, err := open(arg)
	if err != nil {
		return nil, err
	}
	return d, nil
}

func open(arg string) (*Device, error) {
	hs, err := enumerate()
	if err != nil {
		return nil, fmt.Errorf("opencl: %w: %w", device.ErrNotAvailable, err)
	}
	if len(hs) == 0 {
		return nil, fmt.Errorf("opencl: %w: no OpenCL device (the ICD loader found no platform)", device.ErrNotAvailable)
	}
	if arg == "" {
		for _, h := range hs {
			if h.kind == "gpu" || h.kind == "accelerator" {
				return newDevice(h)
			}
		}
		return newDevice(hs[0])
	}
	ps, ds, ok := strings.Cut(arg, ":")
	pi, err1 := strconv.Atoi(ps)
	di, err2 := strconv.Atoi(ds)
	if !ok || err1 != nil || err2 != nil {
		return nil, fmt.Errorf("opencl: bad device %q: want opencl:P:D with platform and device numbers", "opencl:"+arg)
	}
	for _, h := range hs {
		if h.pi == pi && h.di == di {
			return newDevice(h)
		}
	}
	return nil, fmt.Errorf("opencl: no device %d on platform %d (see xent devices): %w", di, pi, device.ErrNotAvailable)
}

func accelerators() ([]device.Device, error) {
	hs, err := enumerate()
	if err != nil {
		return nil, err
	}
	var out []device.Device
	var errs []error
	for _, h := range hs {
		if h.kind != "gpu" && h.kind != "accelerator" {
			continue
		}
		d, err := newDevice(h)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, d)
	}
	if len(out) == 0 {
		if len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
		var kinds []string
		for _, h := range hs {
			kinds = append(kinds, fmt.Sprintf("%s %q", h.kind, h.name))
		}
		if len(kinds) == 0 {
			return nil, errors.New("no OpenCL device")
		}
		return nil, fmt.Errorf("no OpenCL GPU or accelerator (only %s; name it with --device opencl:P:D)", strings.Join(kinds, ", "))
	}
	return out, nil
}

func list() ([]device.Description, error) {
	hs, err := enumerate()
	if err != nil {
		return nil, err
	}
	if len(hs) == 0 {
		return nil, errors.New("no OpenCL platform")
	}
	var out []device.Description
	for _, h := range hs {
		cu, _ := h.dev.Uint(cl.DeviceMaxComputeUnits)
		gm, _ := h.dev.Uint(cl.DeviceGlobalMemSize)
		ma, _ := h.dev.Uint(cl.DeviceMaxMemAllocSize)
		cv, _ := h.dev.String(cl.DeviceOpenCLCVersion)
		pv, _ := h.plat.Info(cl.PlatformVersion)
		wg, unroll := tunables(h.kind)
		out = append(out, device.Description{
			Spec: fmt.Sprintf("opencl:%d:%d", h.pi, h.di), Name: h.name,
			Details: [][2]string{
				{"platform", h.platName + " (" + pv + ")"},
				{"kind", h.kind},
				{"compute units", strconv.FormatUint(cu, 10)},
				{"global memory", gib(gm)},
				{"max allocation", gib(ma)},
				{"OpenCL C", cv},
				{"driver", h.driver},
				{"kernel", fmt.Sprintf("xent.cl wg=%d unroll=%d", wg, unroll)},
			},
		})
	}
	return out, nil
}

func gib(b uint64) string { return fmt.Sprintf("%.2f GiB", float64(b)/(1<<30)) }

// tunables returns the work-group size and unrolling for a device kind;
// XENT_OPENCL_WG and XENT_OPENCL_UNROLL override them (for tuning runs
// such as bench/gpu/run.sh's).
func tunables(kind string) (wg, unroll int) {
	wg, unroll = 256, 2
	if kind == "cpu" {
		wg, unroll = 64, 1
	}
	if v, err := strconv.Atoi(os.Getenv("XENT_OPENCL_WG")); err == nil && v > 0 && v&(v-1) == 0 {
		wg = v
	}
	if v, err := strconv.Atoi(os.Getenv("XENT_OPENCL_UNROLL")); err == nil && v > 0 && v <= 8 {
		unroll = v
	}
	return wg, unroll
}

// program is a built program with its kernels, shared by every Device
// opened on the same OpenCL device and released with the last one.
type program struct {
	refs     int
	ctx      cl.Context
	prog     cl.Program
	lse, ce  cl.Kernel
	copyK    cl.Kernel
	key      string
	wg       int
	unroll   int
	options  string
	kernelMu sync.Mutex // clSetKernelArg + enqueue must not interleave
}

var (
	cacheMu sync.Mutex
	cache   = map[string]*program{}
)

func buildOptions(wg, unroll int) string {
	return fmt.Sprintf("-cl-std=CL1.2 -DWG=%d -DUNROLL=%d", wg, unroll)
}

// acquire returns the cached program for h, building it on first use.
func acquire(h handle) (*program, error) {
	wg, unroll := tunables(h.kind)
	maxWG, err := h.dev.Uint(cl.DeviceMaxWorkGroupSize)
	if err == nil && maxWG > 0 {
		for uint64(wg) > maxWG {
			wg /= 2
		}
	}
	opts := buildOptions(wg, unroll)
	key := fmt.Sprintf("%x|%s|%s|%s", uintptr(h.dev), h.driver, kernels.Hash(), opts)
	cacheMu.Lock()
	defer cacheMu.Unlock()
	if p, ok := cache[key]; ok {
		p.refs++
		return p, nil
	}
	ctx, err := cl.CreateContext(h.dev)
	if err != nil {
		return nil, err
	}
	p := &program{refs: 1, ctx: ctx, key: key, wg: wg, unroll: unroll, options: opts}
	if p.prog, err = cl.BuildProgram(ctx, h.dev, kernels.Source, opts); err != nil {
		ctx.Release()
		return nil, err
	}
	if p.lse, err = cl.CreateKernel(p.prog, "xent_lse"); err == nil {
		p.ce, err = cl.CreateKernel(p.prog, "xent_ce")
	}
	if err == nil {
		p.copyK, err = cl.CreateKernel(p.prog, "xent_copy")
	}
	if err != nil {
		p.release()
		return nil, err
	}
	cache[key] = p
	return p, nil
}

func (p *program) release() {
	for _, k := range []cl.Kernel{p.lse, p.ce, p.copyK} {
		if k != 0 {
			k.Release()
		}
	}
	if p.prog != 0 {
		p.prog.Release()
	}
	p.ctx.Release()
}

func (p *program) put() {
	cacheMu.Lock()
	defer cacheMu.Unlock()
	if p.refs--; p.refs == 0 {
		delete(cache, p.key)
		p.release()
	}
}
