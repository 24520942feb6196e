package opencl

import (
	"errors"
	"fmt"
	"os"
	"slices"
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

// Status is an OpenCL status code as an error: its Error names the code
// ("CL_OUT_OF_RESOURCES (-5)"). The errors of this package wrap it where a
// call failed; find it with errors.As.
type Status = cl.Status

// BuildError is the error of a kernel build that failed: the status, the
// build options and the compiler's log.
type BuildError = cl.BuildError

// handle names one OpenCL device.
type handle struct {
	plat     cl.Platform
	dev      cl.Device
	pi, di   int
	kind     string
	sim      bool // a simulator: it says it is a CPU too (Oclgrind says every type)
	name     string
	platName string
	driver   string
	nv       bool // its compiler takes NVIDIA's options (cl_nv_compiler_options)
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
			sim := typ&cl.DeviceTypeCPU != 0 && typ&(cl.DeviceTypeGPU|cl.DeviceTypeAccelerator) != 0
			name, _ := d.String(cl.DeviceName)
			drv, _ := d.String(cl.DriverVersion)
			ext, _ := d.String(cl.DeviceExtensions)
			nv := slices.Contains(strings.Fields(ext), "cl_nv_compiler_options")
			hs = append(hs, handle{plat: p, dev: d, pi: pi, di: di, kind: kind, sim: sim, name: name, platName: pn, driver: drv, nv: nv})
		}
	}
	return hs, nil
}

// chosen reports whether h is a GPU or accelerator that "auto", "all" and
// a bare "opencl" choose: not a simulator, whose kernels run a thousand
// times slower than the CPU's (it is still opened by number, and its
// kind sets its defaults: Oclgrind checks the GPUs' kernels).
func (h handle) chosen() bool { return (h.kind == "gpu" || h.kind == "accelerator") && !h.sim }

// kindText is h's kind as xent devices shows it.
func (h handle) kindText() string {
	if h.sim {
		return h.kind + " (a simulator: it says it is a CPU too; auto and all pass it by)"
	}
	return h.kind
}

// Open opens the device named by arg: "" for the first GPU or accelerator
// that is not a simulator (else the first device), or "P:D".
func Open(arg string) (device.Device, error) {
	h, err := find(arg)
	if err != nil {
		return nil, err
	}
	tn, src, err := tuningOf(h)
	if err != nil {
		return nil, fmt.Errorf("opencl: %s: %w", h.name, err)
	}
	return newDevice(h, tn, src)
}

// find returns the device that arg names (see Open). A malformed arg is an
// error wrapping device.ErrSpec, whether or not OpenCL is present; a
// device that is not there wraps device.ErrNotAvailable.
func find(arg string) (handle, error) {
	pi, di := -1, -1
	if arg != "" {
		ps, ds, ok := strings.Cut(arg, ":")
		var err1, err2 error
		pi, err1 = strconv.Atoi(ps)
		di, err2 = strconv.Atoi(ds)
		if !ok || err1 != nil || err2 != nil || pi < 0 || di < 0 {
			return handle{}, fmt.Errorf("opencl: %w %q: want opencl:P:D with platform and device numbers", device.ErrSpec, "opencl:"+arg)
		}
	}
	hs, err := enumerate()
	if err != nil {
		return handle{}, fmt.Errorf("opencl: %w: %w", device.ErrNotAvailable, err)
	}
	if len(hs) == 0 {
		return handle{}, fmt.Errorf("opencl: %w: no OpenCL device (the ICD loader found no platform)", device.ErrNotAvailable)
	}
	if arg == "" {
		for _, h := range hs {
			if h.chosen() {
				return h, nil
			}
		}
		return hs[0], nil
	}
	for _, h := range hs {
		if h.pi == pi && h.di == di {
			return h, nil
		}
	}
	return handle{}, fmt.Errorf("opencl: no device %d on platform %d (see xent devices): %w", di, pi, device.ErrNotAvailable)
}

// accelerators opens every OpenCL GPU and accelerator ("auto" and "all"
// take them), without loading OpenCL where gpuNode says none can be there.
func accelerators() ([]device.Device, error) {
	if ok, why := gpuNode(); !ok {
		return nil, errors.New(why)
	}
	hs, err := enumerate()
	if err != nil {
		return nil, err
	}
	var out []device.Device
	var errs []error
	for _, h := range hs {
		if !h.chosen() {
			continue
		}
		tn, src, err := tuningOf(h)
		if err != nil {
			return nil, fmt.Errorf("opencl: %s: %w", h.name, err)
		}
		d, err := newDevice(h, tn, src)
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
			kinds = append(kinds, fmt.Sprintf("%s %q", h.kindText(), h.name))
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
		tn, src, err := tuningOf(h)
		if err != nil {
			src = err.Error()
		}
		if mw, err := maxWG(h); err == nil {
			tn.WG = min(tn.WG, mw)
		}
		out = append(out, device.Description{
			Spec: fmt.Sprintf("opencl:%d:%d", h.pi, h.di), Name: h.name,
			Details: [][2]string{
				{"platform", h.platName + " (" + pv + ")"},
				{"kind", h.kindText()},
				{"compute units", strconv.FormatUint(cu, 10)},
				{"global memory", gib(gm)},
				{"max allocation", gib(ma)},
				{"OpenCL C", cv},
				{"driver", h.driver},
				{"kernel", "xent.cl " + tn.String()},
				{"tuning", src},
				{"fused linear", linearPath(tn)},
			},
		})
	}
	return out, nil
}

// linearPath says which fused linear cross-entropy a device of tuning tn
// runs.
func linearPath(tn Tuning) string {
	blast := linearAvailable() == nil
	switch {
	case tn.LinTile > 0:
		return fmt.Sprintf("linear.cl's kernels, tiles of %d×%d, %d×%d a work-item", tn.LinTile, tn.LinTile, tn.linReg(), tn.linReg())
	case blast:
		return "CLBlast's products and xent.cl's row kernels (XENT_OPENCL_LIN_TILE=32: linear.cl's, not yet timed on a GPU)"
	}
	return "none: CLBlast not loaded (XENT_OPENCL_LIN_TILE=32: linear.cl's kernels, not yet timed on a GPU)"
}

func gib(b uint64) string { return fmt.Sprintf("%.2f GiB", float64(b)/(1<<30)) }

// localBytesPerItem is the local memory of row_reduce per work-item: the
// max, sum, smoothing sums, raw max (float) and argmax (int) of xent.cl's
// acc_t.
const localBytesPerItem = 6 * 4

// maxWG returns the largest work-group size the kernels may be built with
// on h: a power of two within the device's maximum work-group size, its
// maximum work-items in the first dimension (CL_DEVICE_MAX_WORK_ITEM_SIZES[0]:
// the launches are 1-D) and its local memory (localBytesPerItem a
// work-item). Every power of two up to it is allowed.
func maxWG(h handle) (int, error) {
	mw, err1 := h.dev.Uint(cl.DeviceMaxWorkGroupSize)
	lm, err2 := h.dev.Uint(cl.DeviceLocalMemSize)
	items, err3 := h.dev.Sizes(cl.DeviceMaxWorkItemSizes)
	if err := errors.Join(err1, err2, err3); err != nil {
		return 0, err
	}
	if len(items) > 0 {
		mw = min(mw, items[0])
	}
	limit := min(mw, lm/localBytesPerItem, 1<<20)
	if limit < 1 {
		return 0, fmt.Errorf("the device allows %d work-items per group and %d bytes of local memory", mw, lm)
	}
	wg := 1
	for uint64(wg)*2 <= limit {
		wg *= 2
	}
	return wg, nil
}

// program is a built program with its kernels, shared by every Device
// opened on the same OpenCL device and released with the last one.
type program struct {
	refs     int
	ctx      cl.Context
	prog     cl.Program
	kernels  [3][nops + 2]cl.Kernel // by element type (ce.DType), by op, then the split variants (op.split)
	copyK    cl.Kernel
	blockK   cl.Kernel       // xent_blockmax, the fused linear's gradient filter
	pickK    cl.Kernel       // xent_tile_pick, its logits at chosen classes (Tuning.Pick)
	fmaK     cl.Kernel       // xent_fma, the FMA probe
	heldK    [3][4]cl.Kernel // by element type: xent_gather, xent_lin_gather, xent_rank, xent_widen (held.go)
	key      string
	tn       Tuning // as built: WG capped (see acquire)
	options  string
	kernelMu sync.Mutex // clSetKernelArg + enqueue must not interleave

	linMu sync.Mutex  // guards lin
	lin   *linProgram // linear.cl's, built on first use (fused.go)

	packMu sync.Mutex           // guards packed
	packed map[int]*packProgram // the row kernels by PACK, rows a work-group, each built on first use
}

// opNames are the row kernels' names by op, before the type's suffix.
var opNames = [nops]string{opLSE: "xent_lse_", opCE: "xent_ce_", opPartials: "xent_partial_", opBackward: "xent_backward_"}

// packProgram is xent.cl's row kernels built with PACK rows a work-group
// (Tuning.Pack) in their program's context, for short rows.
type packProgram struct {
	prog cl.Program
	k    [3][nops]cl.Kernel // by element type, by op (no split variants: short rows are not split)
	fits bool               // whether every kernel runs at the program's work-group size (else unused)
}

func (pp *packProgram) release() {
	var ks []cl.Kernel
	for _, t := range pp.k {
		ks = append(ks, t[:]...)
	}
	releaseProgram(pp.prog, ks)
}

// packedProgram returns p's row kernels at pack rows a work-group (a
// power of two dividing p's work-group size), building them on first use
// with p's options. Where one of them cannot run at p's work-group size
// on h (its registers, say), they do not fit: the calls keep one row a
// work-group.
func (p *program) packedProgram(h handle, pack int) (*packProgram, error) {
	p.packMu.Lock()
	defer p.packMu.Unlock()
	if pp, ok := p.packed[pack]; ok {
		return pp, nil
	}
	pp := &packProgram{}
	var err error
	opts := fmt.Sprintf("%s -DPACK=%d", p.options, pack)
	if pp.prog, err = cl.BuildProgram(p.ctx, h.dev, kernels.Source, opts); err != nil {
		return nil, err
	}
	logBuild(h, pp.prog, opts)
	var ks []*cl.Kernel
	var names []string
	for t, suf := range kernels.Types {
		for o, name := range opNames {
			ks, names = append(ks, &pp.k[t][o]), append(names, name+suf)
		}
	}
	sizes, err := createKernels(pp.prog, h.dev, ks, names)
	if err != nil {
		pp.release()
		return nil, err
	}
	pp.fits = slices.Min(sizes) >= p.tn.WG
	if p.packed == nil {
		p.packed = map[int]*packProgram{}
	}
	p.packed[pack] = pp
	return pp, nil
}

var (
	cacheMu sync.Mutex
	cache   = map[string]*program{}
)

// buildOptions returns xent.cl's build options on h: the row kernels'
// tuning, the FMA probe's lanes where not 1 (fmaWidth), then
// sharedOptions.
func buildOptions(tn Tuning, h handle) string {
	s := fmt.Sprintf("-cl-std=CL1.2 -DWG=%d -DUNROLL=%d -DUNROLL_HALF=%d -DRC=%d -DREV=%d -DALIGN=%d",
		tn.WG, tn.Unroll, tn.UnrollHalf, tn.RC, tn.Rev, tn.Align)
	if w := fmaWidth(h); w > 1 {
		s += fmt.Sprintf(" -DFMA_W=%d", w)
	}
	return s + sharedOptions(tn, h)
}

// linearOptions returns linear.cl's build options on h: its tile (LT, LK,
// LR), then sharedOptions. Not the row kernels' tuning: linear.cl's
// kernels read none of it (the xent.cl it includes compiles at its
// defaults, and none of xent.cl's kernels is launched from this program),
// so one build serves every row tuning where builds are cached by their
// source and options (PoCL's cache).
func linearOptions(tn Tuning, h handle) string {
	return fmt.Sprintf("-cl-std=CL1.2 -DLT=%d -DLK=%d -DLR=%d", tn.LinTile, linK, tn.linReg()) + sharedOptions(tn, h)
}

// sharedOptions returns what every program's options end with: the flags
// of prob_t, defined here once (xent.cl takes them from -D), NVIDIA's
// register limit (Tuning.Regs), the tuning's Options, and NVIDIA's
// verbose log where XENT_OPENCL_BUILD_LOG is set.
func sharedOptions(tn Tuning, h handle) string {
	s := fmt.Sprintf(" -DF_SMOOTH=%d -DF_WEIGHTS=%d -DF_SOFTCAP=%d -DF_ZLOSS=%d -DF_TEMP=%d", fSmooth, fWeights, fSoftcap, fZLoss, fTemp)
	if h.nv && tn.Regs > 0 {
		s += fmt.Sprintf(" -cl-nv-maxrregcount=%d", tn.Regs)
	}
	if o := strings.Join(strings.Fields(tn.Options), " "); o != "" {
		s += " " + o
	}
	if h.nv && os.Getenv("XENT_OPENCL_BUILD_LOG") != "" {
		s += " -cl-nv-verbose" // each kernel's registers, in the log
	}
	return s
}

// fmaWidth is the lanes of each fma of the FMA probe on h (xent.cl's
// FMA_W): 16 on a CPU runtime, whose compiler vectorises no work-item
// loop around the probe's own, else 1.
func fmaWidth(h handle) int {
	if h.kind == "cpu" {
		return 16
	}
	return 1
}

// checkCVersion returns an error wrapping device.ErrNotAvailable unless
// cv, a device's CL_DEVICE_OPENCL_C_VERSION ("OpenCL C <major>.<minor>
// <vendor's>"), is 1.2 or later: the kernels are built with
// -cl-std=CL1.2, which a 1.0 or 1.1 compiler refuses
// (CL_INVALID_BUILD_OPTIONS, naming no reason).
func checkCVersion(cv string) error {
	f := strings.Fields(cv)
	var major, minor int
	ok := len(f) >= 3 && f[0] == "OpenCL" && f[1] == "C"
	if ok {
		ma, mi, found := strings.Cut(f[2], ".")
		var err1, err2 error
		major, err1 = strconv.Atoi(ma)
		minor, err2 = strconv.Atoi(mi)
		ok = found && err1 == nil && err2 == nil
	}
	switch {
	case !ok:
		return fmt.Errorf("%w: CL_DEVICE_OPENCL_C_VERSION %q is not \"OpenCL C <major>.<minor> ...\"", device.ErrNotAvailable, cv)
	case major < 1 || major == 1 && minor < 2:
		return fmt.Errorf("%w: %s: xent's kernels need OpenCL C 1.2 or later", device.ErrNotAvailable, cv)
	}
	return nil
}

// acquire returns the cached program for h built with tn, its work-group
// size capped at maxWG(h), building it on first use. A program whose
// kernels cannot run at that size on the device (registers, say) is
// built again at half the size.
func acquire(h handle, tn Tuning) (*program, error) {
	cv, err := h.dev.String(cl.DeviceOpenCLCVersion)
	if err != nil {
		return nil, err
	}
	if err := checkCVersion(cv); err != nil {
		return nil, err
	}
	mw, err := maxWG(h)
	if err != nil {
		return nil, err
	}
	tn.WG = min(tn.WG, mw)
	if !h.nv {
		tn.Regs = 0 // no compiler here takes a cap
	}
	cacheMu.Lock()
	defer cacheMu.Unlock()
	for {
		opts := buildOptions(tn, h)
		key := fmt.Sprintf("%x|%s|%s|%s|lin_tile=%d/%d", uintptr(h.dev), h.driver, kernels.Hash(), opts, tn.LinTile, tn.linReg()) // linear.cl's tile: fused.go
		if p, ok := cache[key]; ok {
			p.refs++
			return p, nil
		}
		p, fits, err := build(h, tn, key)
		if err != nil {
			return nil, err
		}
		if fits {
			cache[key] = p
			return p, nil
		}
		p.release()
		tn.WG /= 2
	}
}

// logBuild writes the compiler's log of prog's build on h (its warnings;
// on NVIDIA each kernel's registers) to standard error where
// XENT_OPENCL_BUILD_LOG is set: every build of xent.cl and linear.cl.
func logBuild(h handle, prog cl.Program, opts string) {
	if os.Getenv("XENT_OPENCL_BUILD_LOG") == "" {
		return
	}
	log, _ := prog.BuildLog(h.dev)
	fmt.Fprintf(os.Stderr, "opencl: %s: built with %s:\n%s\n", h.name, opts, log)
}

// build builds the program for h with tn and reports whether each of its
// kernels runs at work-group size tn.WG on the device; at 1, one that
// runs at none is an error.
func build(h handle, tn Tuning, key string) (*program, bool, error) {
	ctx, err := cl.CreateContext(h.dev)
	if err != nil {
		return nil, false, err
	}
	p := &program{refs: 1, ctx: ctx, key: key, tn: tn, options: buildOptions(tn, h)}
	if p.prog, err = cl.BuildProgram(ctx, h.dev, kernels.Source, p.options); err != nil {
		ctx.Release()
		return nil, false, err
	}
	logBuild(h, p.prog, p.options)
	ks := []*cl.Kernel{&p.copyK, &p.blockK, &p.fmaK, &p.pickK}
	names := []string{"xent_copy", "xent_blockmax", "xent_fma", "xent_tile_pick"}
	for t, suf := range kernels.Types {
		k := &p.kernels[t]
		for o, name := range opNames {
			ks, names = append(ks, &k[o]), append(names, name+suf)
		}
		ks = append(ks, &k[opPartials.split()], &k[opBackward.split()], &p.heldK[t][0], &p.heldK[t][1], &p.heldK[t][2], &p.heldK[t][3])
		names = append(names, "xent_partial_split_"+suf, "xent_backward_split_"+suf, "xent_gather_"+suf, "xent_lin_gather_"+suf, "xent_rank_"+suf, "xent_widen_"+suf)
	}
	sizes, err := createKernels(p.prog, h.dev, ks, names)
	if err != nil {
		p.release()
		return nil, false, err
	}
	if least := slices.Min(sizes); least < 1 && tn.WG == 1 {
		i := slices.Index(sizes, least)
		p.release()
		return nil, false, fmt.Errorf("%w: %s: %s runs at no work-group size (its local memory is past the device's)", device.ErrNotAvailable, h.name, names[i])
	}
	return p, slices.Min(sizes) >= tn.WG, nil
}

// createKernels creates kernel names[i] of prog into *ks[i] and returns
// the largest work-group each runs at on dev (its
// CL_KERNEL_WORK_GROUP_SIZE). On an error the kernels made so far are in
// ks, for the caller to release.
func createKernels(prog cl.Program, dev cl.Device, ks []*cl.Kernel, names []string) ([]int, error) {
	sizes := make([]int, len(ks))
	for i, k := range ks {
		var err error
		if *k, err = cl.CreateKernel(prog, names[i]); err != nil {
			return nil, err
		}
		if sizes[i], err = k.WorkGroupSize(dev); err != nil {
			return nil, err
		}
	}
	return sizes, nil
}

func (p *program) release() {
	if p.lin != nil {
		p.lin.release()
	}
	for _, pp := range p.packed {
		pp.release()
	}
	ks := []cl.Kernel{p.copyK, p.blockK, p.fmaK, p.pickK}
	for _, t := range p.kernels {
		ks = append(ks, t[:]...)
	}
	for _, t := range p.heldK {
		ks = append(ks, t[:]...)
	}
	releaseProgram(p.prog, ks)
	p.ctx.Release()
}

// releaseProgram releases the kernels of ks that were created, then prog
// if it was built.
func releaseProgram(prog cl.Program, ks []cl.Kernel) {
	for _, k := range ks {
		if k != 0 {
			k.Release()
		}
	}
	if prog != 0 {
		prog.Release()
	}
}

func (p *program) put() {
	cacheMu.Lock()
	defer cacheMu.Unlock()
	if p.refs--; p.refs == 0 {
		delete(cache, p.key)
		p.release()
	}
}
