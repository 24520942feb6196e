package opencl

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"github.com/xentlab/xent/ce"
	"github.com/xentlab/xent/cpu"
	"github.com/xentlab/xent/device"
	"github.com/xentlab/xent/device/opencl/internal/cl"
)

// Device is one OpenCL device.
type Device struct {
	mu        sync.Mutex // serializes calls
	h         handle
	p         *program
	q, copyQ  cl.Queue
	maxAlloc  int64
	globalMem int64
	closed    bool

	lastKernel time.Duration // kernels of the last call

	// stages are pinned staging buffers kept from call to call (slots 0
	// and 1 take rows in, 2 and 3 gradients out): pinning host memory
	// costs more than the transfers it serves. Close releases them.
	stages [4]*stage
	hosts  []hostAlloc // AllocHost's host matrices

	units     int    // compute units
	flight    int    // Tuning.Flight
	tuningSrc string // where the tuning comes from

	// ChunkBytes, when > 0, caps the bytes of one chunk buffer (tests use
	// it to force the chunked path on small matrices).
	ChunkBytes int64
	// Staging forces host rows through pinned staging buffers (see
	// staged) on a device that shares the host's memory (tests).
	Staging bool
	// maxGroups, when > 0, caps the work-groups of a launch (a test hook:
	// rows taken maxGroups apart, whatever the sizes).
	maxGroups int
	// split is Tuning.Split; forceSplit, when > 0, splits every row in
	// that many (a test hook: whatever the rows and columns).
	split, forceSplit int
	// pack is Tuning.Pack; forcePack runs every call at pack rows a
	// work-group (a test hook: whatever the columns).
	pack      int
	pick      int // Tuning.Pick
	wide      int // Tuning.Wide
	forcePack bool
	// rowBase is a test hook: an extra row number added to the logits'
	// row index, with the matching element offset subtracted, to check
	// 64-bit offset arithmetic without allocating 2^31 elements.
	rowBase uint64
}

var _ device.Device = (*Device)(nil)

func newDevice(h handle, tn Tuning, src string) (*Device, error) {
	if err := tn.check(); err != nil {
		return nil, fmt.Errorf("opencl: %s: tuning %v: %w", h.name, tn, err)
	}
	p, err := acquire(h, tn)
	if err != nil {
		return nil, fmt.Errorf("opencl: %s: %w", h.name, err)
	}
	d := &Device{h: h, p: p, flight: tn.Flight, split: tn.Split, pack: tn.Pack, pick: tn.Pick, wide: tn.Wide, tuningSrc: src}
	ma, err1 := h.dev.Uint(cl.DeviceMaxMemAllocSize)
	gm, err2 := h.dev.Uint(cl.DeviceGlobalMemSize)
	cu, err3 := h.dev.Uint(cl.DeviceMaxComputeUnits)
	d.units = int(max(1, min(cu, 1<<20)))
	if err := errors.Join(err1, err2, err3); err != nil {
		p.put()
		return nil, fmt.Errorf("opencl: %s: %w", h.name, err)
	}
	d.maxAlloc, d.globalMem = int64(min(ma, math.MaxInt64/2)), int64(min(gm, math.MaxInt64/2))
	if err := d.useXgemm(tn); err != nil {
		d.Close()
		return nil, fmt.Errorf("opencl: %s: %w", h.name, err)
	}
	if d.q, err = cl.CreateQueue(p.ctx, h.dev, cl.QueueProfilingEnable); err == nil {
		d.copyQ, err = cl.CreateQueue(p.ctx, h.dev, 0)
	}
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("opencl: %s: %w", h.name, err)
	}
	return d, nil
}

// Info implements device.Device. BLAS names the fused linear's products:
// CLBlast's (with the Xgemm parameters set, Tuning.Xgemm), linear.cl's own
// kernels (Tuning.LinTile), or without either the CPU's
// (device.LinearOf), which Note then says.
func (d *Device) Info() device.Info {
	in := device.Info{
		Name: d.h.name, Kind: d.h.kind, Backend: "opencl",
		Kernel:   "xent.cl " + d.Tuning().String(),
		Platform: d.h.platName + ", driver " + d.h.driver,
		Spec:     fmt.Sprintf("opencl:%d:%d", d.h.pi, d.h.di),
		BLAS:     "CLBlast",
	}
	switch {
	case d.p.tn.LinTile > 0:
		in.BLAS = fmt.Sprintf("linear.cl %d×%d/%d", d.p.tn.LinTile, d.p.tn.LinTile, d.p.tn.linReg())
	case linearAvailable() != nil:
		in.BLAS = device.FallbackBLAS()
		in.Note = "no fused linear cross-entropy here (no CLBlast): it runs on the CPU"
	case d.xgemm() != "none":
		in.BLAS = "CLBlast, Xgemm " + d.xgemm()
	}
	return in
}

// FusedReads returns how many times the fused forward + backward reads
// a row of cols columns of type t: once where the row fits in the
// registers of its work-items (xent.cl's RC; WG of them, or WG/Pack for
// short rows, packOf's), else twice (the second time mostly from the
// device's cache).
func (d *Device) FusedReads(cols int, t ce.DType) int {
	rw := d.p.tn.WG
	if d.packsRows(cols, t) {
		rw /= d.packs()
	}
	if tn := d.p.tn; tn.RC > 0 && rw >= 8 && cols/4 <= tn.RC*rw {
		return 1
	}
	return 2
}

// unroll is the kernels' UNROLL for rows of type t (UNROLL_HALF for the
// half types).
func (d *Device) unroll(t ce.DType) int {
	if t == ce.F32 {
		return d.p.tn.Unroll
	}
	return d.p.tn.UnrollHalf
}

// Close implements device.Device.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	var errs []error
	for _, st := range d.stages {
		if st != nil {
			errs = append(errs, cl.Unmap(d.copyQ, st.mem, st.all), st.mem.Release())
		}
	}
	errs = append(errs, d.freeHosts())
	for _, q := range []cl.Queue{d.q, d.copyQ} {
		if q != 0 {
			errs = append(errs, q.Finish(), q.Release())
		}
	}
	d.p.put()
	return errors.Join(errs...)
}

// chunkRows returns how many rows of stride elements of size bytes one
// chunk buffer holds, whole: chunkElems(n) elements.
func (d *Device) chunkRows(rows, cols, stride, size int) (int, error) {
	limit := min(d.maxAlloc, d.globalMem/4)
	if d.ChunkBytes > 0 {
		limit = min(limit, d.ChunkBytes)
	}
	if need := int64(cols) * int64(size); need > limit {
		return 0, fmt.Errorf("%w: a row of %d elements needs %d bytes, one buffer may hold %d", ErrTooLarge, cols, need, limit)
	}
	if d.staged() && d.ChunkBytes == 0 {
		limit = min(limit, max(stageChunk(), int64(stride)*int64(size)))
	}
	n := max(1, limit/(int64(stride)*int64(size)))
	return int(min(n, int64(rows))), nil
}

// chunkElems is the size in elements of a chunk buffer of n rows of cols
// columns stride apart: n whole strides, the last row's padding included,
// so that a rectangular read of the n rows lies inside it by the strict
// reading of the specification (cl.Rect); one row is its cols.
func chunkElems(n, cols, stride int) int {
	if n == 1 {
		return cols
	}
	return n * stride
}

// buffers are the per-call device buffers; release frees them.
type buffers struct {
	mems    []cl.Mem
	evs     []cl.Event
	kernels []cl.Event // the kernel events among evs
	maps    []func() error
}

// stage is a pinned host staging buffer: a CL_MEM_ALLOC_HOST_PTR buffer
// mapped into host memory, which the device reads and writes by DMA at
// the bus's speed (pageable host memory goes through the driver's own
// copies, at a fraction of it).
type stage struct {
	mem cl.Mem
	buf []byte
	all []byte // the whole mapping
}

// stage returns a staging buffer of bytes bytes, unmapped and released
// with b.
func (b *buffers) stage(d *Device, bytes int) (*stage, error) {
	m, err := cl.CreateBuffer(d.p.ctx, cl.MemReadWrite|cl.MemAllocHostPtr, max(bytes, 4))
	if err != nil {
		return nil, err
	}
	b.mems = append(b.mems, m)
	buf, err := cl.MapHost(d.copyQ, m, max(bytes, 4))
	if err != nil {
		return nil, err
	}
	b.maps = append(b.maps, func() error { return cl.Unmap(d.copyQ, m, buf) })
	return &stage{mem: m, buf: buf[:bytes], all: buf}, nil
}

// staging returns the device's staging buffer of slot (see Device.stages)
// holding at least bytes, the one of the last call when it is large
// enough; d.mu is held.
func (d *Device) staging(slot, bytes int) (*stage, error) {
	if st := d.stages[slot]; st != nil {
		if len(st.all) >= bytes {
			return &stage{mem: st.mem, buf: st.all[:bytes], all: st.all}, nil
		}
		d.stages[slot] = nil
		if err := errors.Join(cl.Unmap(d.copyQ, st.mem, st.all), st.mem.Release()); err != nil {
			return nil, err
		}
	}
	var b buffers // keeps nothing: the stage outlives the call
	st, err := b.stage(d, bytes)
	if err != nil {
		return nil, errors.Join(err, b.release())
	}
	d.stages[slot] = st
	return st, nil
}

// stageChunk is the bytes of one chunk of host rows staged (a MiB count
// in XENT_OPENCL_CHUNK_MIB overrides it): small enough that copying into
// the staging buffers, the transfers and the kernels overlap, chunk by
// chunk, large enough for the transfers to run at the bus's speed.
func stageChunk() int64 {
	if v, err := strconv.Atoi(os.Getenv("XENT_OPENCL_CHUNK_MIB")); err == nil && v > 0 {
		return int64(v) << 20
	}
	return 64 << 20
}

// copyThreads is how many goroutines at most copy host rows into and out
// of the staging buffers: 8, or XENT_OPENCL_COPY_THREADS (opt-in: on the
// H200's host, 8 copied at about 23 GB/s, less than half the bus; more are
// untimed), within GOMAXPROCS.
func copyThreads() int {
	n := 8
	if v, err := strconv.Atoi(os.Getenv("XENT_OPENCL_COPY_THREADS")); err == nil && v > 0 {
		n = v
	}
	return min(n, runtime.GOMAXPROCS(0))
}

// staged reports whether host rows go through staging buffers: on GPUs
// and accelerators (XENT_OPENCL_PINNED=0 turns it off), not on a device
// that shares the host's memory (a CPU's OpenCL) unless Staging is set.
func (d *Device) staged() bool {
	if d.Staging {
		return true
	}
	return d.h.kind != "cpu" && os.Getenv("XENT_OPENCL_PINNED") != "0"
}

// bytesOf returns the bytes of s.
func bytesOf[T any](s []T) []byte {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*int(unsafe.Sizeof(s[0])))
}

// copyBytes copies src into dst (len(src) bytes) on several goroutines
// when it is large: one core's copy is slower than the bus. They are at
// most copyThreads(), and one per 4 MiB.
func copyBytes(dst, src []byte) {
	const part = 4 << 20
	n := len(src)
	w := min(copyThreads(), n/part)
	if w <= 1 {
		copy(dst, src)
		return
	}
	var wg sync.WaitGroup
	for i := range w {
		lo, hi := n*i/w, n*(i+1)/w
		wg.Go(func() { copy(dst[lo:hi], src[lo:hi]) })
	}
	wg.Wait()
}

// trace is where a call on host rows spent its time, printed on stderr
// when XENT_OPENCL_TRACE is set: the copies into and out of the staging
// buffers, the waits for gradients, and the whole.
type trace struct {
	on            bool
	c             *call
	chunks, step  int
	t0            time.Time
	in, out, wait time.Duration
}

func newTrace(c *call, chunks, step int) *trace {
	return &trace{on: os.Getenv("XENT_OPENCL_TRACE") != "", c: c, chunks: chunks, step: step, t0: time.Now()}
}

func (t *trace) print() {
	if t.on {
		name := [...]string{opLSE: "lse", opCE: "cross-entropy", opPartials: "partials", opBackward: "backward"}[t.c.op]
		if t.c.grad != nil && t.c.op == opCE {
			name = "fused"
		}
		fmt.Fprintf(os.Stderr, "opencl trace: %s %v %d×%d: %d chunks of %d rows; staging in %v, out %v, waits for gradients %v; whole %v\n",
			name, t.c.x.Type, t.c.x.Rows, t.c.x.Cols, t.chunks, t.step, t.in, t.out, t.wait, time.Since(t.t0))
	}
}

// kernelTime sums the execution times of the kernels (all complete): 0,
// unknown, where the driver gives no time for one of them (a sum without
// it would be too fast).
func (b *buffers) kernelTime() time.Duration {
	var ns int64
	for _, e := range b.kernels {
		v, err := e.Duration()
		if err != nil {
			return 0
		}
		ns += v
	}
	return time.Duration(ns)
}

func (b *buffers) mem(ctx cl.Context, bytes int) (cl.Mem, error) {
	m, err := cl.CreateBuffer(ctx, cl.MemReadWrite, max(bytes, 4))
	if err == nil {
		b.mems = append(b.mems, m)
	}
	return m, err
}

// read enqueues a read of m into dst ([]float32, []int32 or []byte; a
// nil slice is not read) on q after wait.
func (b *buffers) read(q cl.Queue, m cl.Mem, dst any, wait []cl.Event) error {
	var err error
	switch v := dst.(type) {
	case []float32:
		if v != nil {
			_, err = b.ev(cl.Read(q, m, false, 0, v, wait))
		}
	case []int32:
		if v != nil {
			_, err = b.ev(cl.Read(q, m, false, 0, v, wait))
		}
	case []byte:
		if v != nil {
			_, err = b.ev(cl.Read(q, m, false, 0, v, wait))
		}
	}
	return err
}

func (b *buffers) ev(e cl.Event, err error) (cl.Event, error) {
	if err == nil && e != 0 {
		b.evs = append(b.evs, e)
	}
	return e, err
}

func (b *buffers) release() error {
	var errs []error
	for _, e := range b.evs { // waits for each, so nothing is in flight below
		errs = append(errs, e.Release())
	}
	for _, unmap := range b.maps {
		errs = append(errs, unmap())
	}
	for _, m := range b.mems {
		errs = append(errs, m.Release())
	}
	return errors.Join(errs...)
}

// op is a kernel of xent.cl.
type op int

const (
	opLSE      op = iota // xent_lse
	opCE                 // xent_ce: forward, or fused with the gradient
	opPartials           // xent_partial
	opBackward           // xent_backward
	nops
)

// split is the kernel slot of op's split variant (xent_partial_split,
// xent_backward_split: rows.cl's FOR_SPLITS).
func (o op) split() op { return nops + o - opPartials }

// call is one computation: the op, its matrix (host rows, or one of the
// device's buffers) and the per-row inputs and outputs its op takes.
type call struct {
	op      op
	x       ce.Matrix
	targets []int32
	p       *ce.Problem
	out     ce.Out       // opCE
	grad    *ce.Grad     // opCE (fused, when set) and opBackward
	lse     []float32    // opLSE
	part    []ce.Partial // opPartials (written), opBackward (read)
	// split > 0 runs opPartials and opBackward on splits of split
	// columns of each row (splits of them), several work-groups a row.
	split, splits int
}

// LogSumExp implements device.Device. Split rows (splitOf) take the
// partials' kernel over splits, merged and finished on the host.
func (d *Device) LogSumExp(ctx context.Context, dst []float32, x ce.Matrix) error {
	cs, S := d.splitOf(x.Rows, x.Cols)
	if S <= 1 {
		return d.run(ctx, &call{op: opLSE, x: x, lse: dst, p: &ce.Problem{}})
	}
	t0 := time.Now()
	part, p := make([]ce.Partial, x.Rows), &ce.Problem{}
	tg := make([]int32, x.Rows) // class 0: every row counted
	if err := d.run(ctx, &call{op: opPartials, x: x, targets: tg, p: p, part: part, split: cs, splits: S}); err != nil {
		return err
	}
	for i := range part {
		_, lse, _ := p.Finish(&part[i], 0, x.Cols)
		dst[i] = float32(lse)
	}
	d.splitTime(t0)
	return nil
}

// splitTime sets the kernel time of a split call (LastKernelTime) to its
// time since t0: its kernels, the host's merge and the waits between.
func (d *Device) splitTime(t0 time.Time) {
	d.mu.Lock()
	d.lastKernel = time.Since(t0)
	d.mu.Unlock()
}

// CrossEntropy implements device.Device. Split rows (splitOf) take two
// passes, the partials' and the gradient's kernels over splits, the
// rows finished on the host between them; LastKernelTime is then the
// call's whole time (the host's part and waits included).
func (d *Device) CrossEntropy(ctx context.Context, out ce.Out, g *ce.Grad, x ce.Matrix, targets []int32, p *ce.Problem) error {
	cs, S := d.splitOf(x.Rows, x.Cols)
	if S <= 1 {
		return d.run(ctx, &call{op: opCE, x: x, targets: targets, p: p, out: out, grad: g})
	}
	t0 := time.Now()
	part := make([]ce.Partial, x.Rows)
	if err := d.run(ctx, &call{op: opPartials, x: x, targets: targets, p: p, part: part, split: cs, splits: S}); err != nil {
		return err
	}
	p.FinishRows(out, part, targets, p.Classes(x.Cols))
	if g != nil {
		if err := d.run(ctx, &call{op: opBackward, x: x, targets: targets, p: p, grad: g, part: part, split: cs, splits: S}); err != nil {
			return err
		}
	}
	d.splitTime(t0)
	return nil
}

// Partials implements device.Device.
func (d *Device) Partials(ctx context.Context, dst []ce.Partial, x ce.Matrix, targets []int32, p *ce.Problem) error {
	cs, S := d.splitOf(x.Rows, x.Cols)
	return d.run(ctx, &call{op: opPartials, x: x, targets: targets, p: p, part: dst, split: cs, splits: S})
}

// Backward implements device.Device.
func (d *Device) Backward(ctx context.Context, g ce.Grad, x ce.Matrix, targets []int32, part []ce.Partial, p *ce.Problem) error {
	cs, S := d.splitOf(x.Rows, x.Cols)
	return d.run(ctx, &call{op: opBackward, x: x, targets: targets, p: p, grad: &g, part: part, split: cs, splits: S})
}

// splitOf returns how a call of rows × cols splits its rows (rows.cl's
// FOR_SPLITS): S splits of cs columns (a multiple of 4), where the rows
// are fewer than the compute units and Tuning.Split allows more than one
// work-group a row: enough for two work-groups a compute unit, at most
// Split, each of at least 4·WG columns. S ≤ 1 (cs 0): one work-group a
// row.
func (d *Device) splitOf(rows, cols int) (cs, S int) {
	S = d.forceSplit
	if S == 0 {
		if d.split <= 1 || rows >= d.units || rows == 0 {
			return 0, 1
		}
		S = min(d.split, (2*d.units+rows-1)/rows, cols/(4*d.p.tn.WG))
	}
	if S <= 1 || cols < 2 {
		return 0, 1
	}
	cs = ((cols+S-1)/S + 3) &^ 3
	return cs, (cols + cs - 1) / cs
}

// Caps implements device.Device: resident buffers, every element type,
// and the fused linear cross-entropy where CLBlast loads.
func (d *Device) Caps() device.Caps {
	return device.Caps{Resident: true, Types: []ce.DType{ce.F32, ce.BF16, ce.F16}, Linear: linearAvailable() == nil || d.p.tn.LinTile > 0}
}

// The flags of prob_t: optional features, uniform across a call, so that
// one program serves every option. xent.cl's F_* are these, passed as
// build options (buildOptions).
const (
	fSmooth  = 1
	fWeights = 2
	fSoftcap = 4
	fZLoss   = 8
	fTemp    = 16
)

// probArg is xent.cl's prob_t, field for field (TestProbLayout checks the
// layout against the compiler's): the call's one descriptor, passed to
// every kernel by value. Its size is a multiple of its alignment without
// padding (Pad fills it): implementations disagree on a struct's trailing
// padding (Mesa's rusticl 22.3 takes prob_t without it as 76 bytes, C's
// sizeof is 80, and clSetKernelArg refuses the other's size), and on
// none where there is none.
type probArg struct {
	BaseOff, Stride, RowBase                    uint64
	Cols, Prow0, Flags, Grad, Col0, Vocab, Rows int32
	Eps, ZL, Cap, W                             float32
	IC, TS                                      float32 // the transform's multiplier and 1/τ
	Pad                                         int32   // 0: no trailing padding
}

// probOf returns the descriptor of c, for rows from the chunk's start
// (launch sets the offsets).
func probOf(c *call) probArg {
	p := c.p
	a := probArg{Cols: int32(c.x.Cols), Col0: int32(p.Col0), Vocab: int32(p.Classes(c.x.Cols)),
		Eps: p.Smoothing, ZL: p.ZLoss, W: float32(p.WeightSum), TS: p.TempScale()}
	a.Cap, a.IC = p.Transform()
	if p.Smoothing > 0 {
		a.Flags |= fSmooth
	}
	if p.Weights != nil {
		a.Flags |= fWeights
	}
	if p.Softcap > 0 {
		a.Flags |= fSoftcap
	}
	if p.TempScale() != 1 {
		a.Flags |= fTemp
	}
	if p.ZLoss > 0 {
		a.Flags |= fZLoss
	}
	if c.op == opCE && c.grad != nil {
		a.Grad = 1
	}
	return a
}

// rowBufs are the device buffers of a call's per-row inputs and outputs,
// in the order its kernel takes them after the logits and the descriptor.
type rowBufs struct {
	args []any
	outs []cl.Mem // the outputs (see finishRows), in args' order
}

// setup creates the per-row buffers of c and enqueues their uploads.
func (d *Device) setup(b *buffers, c *call) (*rowBufs, error) {
	rows := c.x.Rows
	var err error
	mk := func(bytes int) cl.Mem {
		m, e := b.mem(d.p.ctx, bytes)
		err = errors.Join(err, e)
		return m
	}
	f32 := func() cl.Mem { return mk(4 * rows) }
	up := func(m cl.Mem, v []float32) {
		if err == nil && v != nil {
			_, e := b.ev(cl.Write(d.copyQ, m, false, 0, v, nil))
			err = errors.Join(err, e)
		}
	}
	r := &rowBufs{}
	if c.op == opLSE {
		r.outs = []cl.Mem{f32()}
		r.args = []any{r.outs[0]}
		return r, err
	}
	vocab := c.p.Classes(c.x.Cols)
	tg, wts := mk(4*rows), mk(4*max(vocab, 1))
	if err == nil {
		_, err = b.ev(cl.Write(d.copyQ, tg, false, 0, c.targets, nil))
	}
	up(wts, c.p.Weights)
	r.args = []any{tg, wts}
	switch c.op {
	case opCE:
		scale := f32()
		if c.grad != nil {
			up(scale, c.grad.Scale)
		}
		r.outs = []cl.Mem{f32(), f32(), mk(rows)} // loss, lse, correct
		r.args = append(r.args, scale, r.outs[0], r.outs[1], r.outs[2])
	case opPartials:
		n := rows * max(c.splits, 1) // a row's splits apart (xent_partial_split)
		r.outs = []cl.Mem{mk(4 * n), mk(4 * n), mk(4 * n), mk(4 * n), mk(4 * n), mk(4 * n), mk(4 * n), mk(n)}
		for _, m := range r.outs {
			r.args = append(r.args, m)
		}
	case opBackward:
		ins := []cl.Mem{f32(), f32(), f32(), f32(), f32()}
		up(ins[0], c.grad.Scale)
		for k, v := range backwardIns(c.part) {
			up(ins[k+1], v)
		}
		for _, m := range ins {
			r.args = append(r.args, m)
		}
		f := c.grad.Fix
		if f == nil {
			f = &ce.Fix{Extra: []float32{0}, Cols: []int32{0}, Vals: []float32{0}}
		}
		fex, fcols, fvals := mk(4*len(f.Extra)), mk(4*len(f.Cols)), mk(4*len(f.Vals))
		up(fex, f.Extra)
		up(fvals, f.Vals)
		if err == nil {
			_, err = b.ev(cl.Write(d.copyQ, fcols, false, 0, f.Cols, nil))
		}
		r.args = append(r.args, int32(f.K), fex, fcols, fvals)
	}
	if err == nil {
		err = d.copyQ.Finish() // small: the kernels may use them at once
	}
	return r, err
}

// launch enqueues the kernel of c over rows [lo, lo+n) held in xmem from
// its start (the logits' element offset of row lo is 0 there).
func (d *Device) launch(b *buffers, r *rowBufs, c *call, xmem cl.Mem, lo, n int, wait []cl.Event) (cl.Event, error) {
	a := probOf(c)
	a.Stride = uint64(c.x.Stride)
	a.RowBase = d.rowBase + uint64(lo)
	a.BaseOff = a.RowBase * a.Stride
	a.Prow0 = int32(lo)
	a.Rows = int32(n)
	kern, rowBytes := d.p.kernels[c.x.Type][c.op], c.x.Cols*c.x.Type.Size()
	args, groups := []any{xmem, cl.ValueOf(&a)}, d.groups(n, rowBytes)
	if c.split == 0 {
		pp, err := d.packOf(c.x.Cols, c.x.Type) // short rows, several a work-group
		if err != nil {
			return 0, err
		}
		if pp != nil {
			P := d.packs()
			kern, groups = pp.k[c.x.Type][c.op], d.groups((n+P-1)/P, P*rowBytes)
		}
	}
	// The kernels are shared by every Device on this OpenCL device, and
	// clSetKernelArg is not safe concurrently: arguments and enqueue go
	// together under the program's lock (the enqueue captures them).
	d.p.kernelMu.Lock()
	defer d.p.kernelMu.Unlock()
	if c.split > 0 {
		kern, args, groups = d.p.kernels[c.x.Type][c.op.split()], append(args, int32(c.split)), n*c.splits
		if c.op == opPartials {
			args = append(args, int32(c.x.Rows))
		}
	}
	if err := kern.SetArgs(append(args, r.args...)...); err != nil {
		return 0, err
	}
	ev, err := b.ev(d.q.NDRange(kern, groups, d.p.tn.WG, wait))
	if err == nil {
		b.kernels = append(b.kernels, ev)
		err = d.q.Flush()
	}
	return ev, err
}

// packs is the rows of a work-group on short rows: Tuning.Pack, at
// most the work-group size as built; 1 without.
func (d *Device) packs() int { return max(1, min(d.pack, d.p.tn.WG)) }

// packsRows reports whether a call on rows of cols columns of type t runs
// packs() > 1 rows a work-group: where they are short, at most 4·U·WG
// columns (U the type's unroll: one step of the whole work-group covers
// the row), or any with the test hook forcePack.
func (d *Device) packsRows(cols int, t ce.DType) bool {
	return d.packs() > 1 && (cols <= 4*d.unroll(t)*d.p.tn.WG || d.forcePack)
}

// packOf returns the kernels of packs() rows a work-group for a call on
// rows of cols columns of type t where packsRows, else nil: one row a
// work-group (also where those kernels cannot run at the work-group
// size).
func (d *Device) packOf(cols int, t ce.DType) (*packProgram, error) {
	if !d.packsRows(cols, t) {
		return nil, nil
	}
	pp, err := d.p.packedProgram(d.h, d.packs())
	if err != nil || !pp.fits {
		return nil, err
	}
	return pp, nil
}

// groups returns how many work-groups a launch of n rows of rowBytes
// runs (Tuning.Flight): one a row, or max(compute units, Flight MiB /
// rowBytes), at most n.
func (d *Device) groups(n, rowBytes int) int {
	g := n
	if d.flight > 0 && rowBytes > 0 {
		g = min(n, max(d.units, d.flight<<20/rowBytes))
	}
	if d.maxGroups > 0 {
		g = min(g, d.maxGroups)
	}
	return g
}

// Tuning returns the tuning d's kernels run with (the work-group size as
// built) and where it comes from: a table's entry, the default for the
// device's kind, XENT_OPENCL_* overrides, or the caller's (OpenTuned).
func (d *Device) Tuning() Tuning {
	tn := d.p.tn
	tn.Flight, tn.Split, tn.Pack, tn.Pick, tn.Wide = d.flight, d.split, d.pack, d.pick, d.wide
	tn.Xgemm = nil // as set on the OpenCL device now (useXgemm), for CLBlast's path
	if tn.LinTile == 0 {
		tn.Xgemm, _ = ParseXgemm(d.xgemm())
	}
	return tn
}

// TuningSource says where d's tuning comes from.
func (d *Device) TuningSource() string { return d.tuningSrc }

// finishRows reads the per-row outputs of c after last and waits for them.
func (d *Device) finishRows(b *buffers, r *rowBufs, c *call, last cl.Event) error {
	wait := []cl.Event{last}
	var err error
	read := func(m cl.Mem, dst any) {
		if err == nil {
			err = b.read(d.copyQ, m, dst, wait)
		}
	}
	var po *partialOuts
	switch c.op {
	case opLSE:
		read(r.outs[0], c.lse)
	case opCE:
		read(r.outs[0], c.out.Loss)
		read(r.outs[1], c.out.LSE)
		read(r.outs[2], boolBytes(c.out.Correct))
	case opPartials:
		po = newPartialOuts(c.x.Rows * max(c.splits, 1))
		for k, v := range po.slices() {
			read(r.outs[k], v)
		}
	}
	if err == nil {
		err = d.copyQ.Finish()
	}
	if err == nil && c.op == opPartials {
		n := c.x.Rows
		po.rows(0, n).to(c.part, c.targets)
		tmp := make([]ce.Partial, n)
		for s := 1; s < c.splits; s++ { // in order: the same bits every run
			po.rows(s*n, (s+1)*n).to(tmp, c.targets)
			for i, t := range c.targets {
				if t >= 0 {
					c.part[i].Merge(tmp[i])
				}
			}
		}
	}
	return err
}

// partialOuts are xent_partial's per-row outputs on the host, in the
// kernel's order (max, rest, dot, wsum, argmax value, arg, z_t, has t).
type partialOuts struct {
	m, s, d, w, r, zt []float32
	arg               []int32
	has               []byte
}

func newPartialOuts(rows int) *partialOuts {
	f := func() []float32 { return make([]float32, rows) }
	return &partialOuts{m: f(), s: f(), d: f(), w: f(), r: f(), zt: f(), arg: make([]int32, rows), has: make([]byte, rows)}
}

// slices returns the outputs in the kernel's order.
func (o *partialOuts) slices() []any {
	return []any{o.m, o.s, o.d, o.w, o.r, o.arg, o.zt, o.has}
}

// to sets dst[i] for every counted row.
func (o *partialOuts) to(dst []ce.Partial, targets []int32) {
	for i, t := range targets {
		if t >= 0 {
			dst[i] = ce.Partial{Max: o.m[i], Rest: float64(o.s[i]), Dot: float64(o.d[i]), WSum: float64(o.w[i]),
				ArgMax: o.r[i], Arg: int(o.arg[i]), ZT: o.zt[i], HasT: o.has[i] != 0}
		}
	}
}

// rows returns the outputs of rows [lo, hi).
func (o *partialOuts) rows(lo, hi int) *partialOuts {
	return &partialOuts{m: o.m[lo:hi], s: o.s[lo:hi], d: o.d[lo:hi], w: o.w[lo:hi], r: o.r[lo:hi], zt: o.zt[lo:hi],
		arg: o.arg[lo:hi], has: o.has[lo:hi]}
}

// backwardIns returns xent_backward's per-row inputs from the merged
// partials: max, sum, log of the sum, z_t.
func backwardIns(part []ce.Partial) [4][]float32 {
	n := len(part)
	gm, gs, glsm, gzt := make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, n)
	for i, pt := range part {
		gm[i], gs[i], gzt[i], glsm[i] = pt.Max, float32(1+pt.Rest), pt.ZT, float32(pt.LogSum())
	}
	return [4][]float32{gm, gs, glsm, gzt}
}

// begin locks the device for one call and checks that it may run.
func (d *Device) begin(ctx context.Context) error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return device.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		d.mu.Unlock()
		return err
	}
	d.lastKernel = 0 // until a call that times its kernels finishes
	return nil
}

// run computes c: on one of the device's buffers in one launch, or on
// host rows in chunks (see chunkRows), double-buffered.
func (d *Device) run(ctx context.Context, c *call) (err error) {
	if err := d.begin(ctx); err != nil {
		return err
	}
	defer d.mu.Unlock()
	if c.x.Rows == 0 {
		return nil
	}
	var b buffers
	defer func() {
		if rerr := b.release(); err == nil && rerr != nil {
			err = d.wrap(rerr)
		}
	}()
	if c.x.Buf != nil {
		return d.runResident(&b, c)
	}
	if c.grad != nil && c.grad.Buf != nil {
		return fmt.Errorf("opencl: %w: a gradient held by a device goes in place over the logits of the same buffer", device.ErrNotImplemented)
	}
	if c.grad != nil && c.grad.Type != c.x.Type { // a float32 gradient of half-precision rows: see widened
		c = widened(c)
	}
	x := c.x
	rows, cols, stride, size := x.Rows, x.Cols, x.Stride, x.Type.Size()
	step, err := d.chunkRows(rows, cols, stride, size)
	if err != nil {
		return err
	}
	span := func(n int) int { return (n-1)*stride + cols }
	var xb [2]cl.Mem
	for i := range xb {
		if i == 1 && step >= rows {
			xb[1] = xb[0]
			break
		}
		if xb[i], err = b.mem(d.p.ctx, size*chunkElems(step, cols, stride)); err != nil {
			return d.wrap(err)
		}
	}
	r, err := d.setup(&b, c)
	if err != nil {
		return d.wrap(err)
	}
	// Staging (see stage): the rows in through sw, the gradient out
	// through sr, each double-buffered as the chunks are.
	// Rows (or a gradient) in a host matrix of AllocHost are pinned
	// already: the device reads (writes) them by DMA, uncopied.
	var sw, sr [2]*stage
	if d.staged() {
		in, out := !d.pinned(hostBytes(x)), c.grad != nil && !d.pinned(gradBytes(c.grad, rows, cols))
		for i := range min(2, (rows+step-1)/step) {
			if in {
				sw[i], err = d.staging(i, size*span(step))
			}
			if err == nil && out {
				sr[i], err = d.staging(2+i, c.grad.Type.Size()*step*cols)
			}
			if err != nil {
				return d.wrap(err)
			}
		}
	}

	// Double buffering: on copyQ the order is W0, W1, R0, W2, R1, ...; W(k+1)
	// waits for kernel k-1 (the last user of its buffer), kernel k for W(k),
	// R(k) for kernel k. Staged, W(k+2)'s rows are copied into its staging
	// buffer once W(k) is done with it, and R(k)'s are copied out of theirs
	// before R(k+2) reuses it, and at the end.
	nchunks := (rows + step - 1) / step
	tr := newTrace(c, nchunks, step)
	defer tr.print()
	evW := make([]cl.Event, nchunks)
	evK := make([]cl.Event, nchunks)
	evR := make([]cl.Event, nchunks)
	hostRows := func(lo, n int) []byte {
		if x.Type == ce.F32 {
			return bytesOf(x.Data[lo*stride : lo*stride+span(n)])
		}
		return bytesOf(x.Half[lo*stride : lo*stride+span(n)])
	}
	write := func(k int) error {
		lo := k * step
		n := min(step, rows-lo)
		var wait []cl.Event
		if k >= 2 {
			wait = []cl.Event{evK[k-2]}
		}
		src := hostRows(lo, n)
		if s := sw[k%2]; s != nil {
			if k >= 2 {
				if err := cl.Wait(evW[k-2]); err != nil {
					return err
				}
			}
			t0 := time.Now()
			copyBytes(s.buf, src)
			tr.in += time.Since(t0)
			src = s.buf[:len(src)]
		}
		var err error
		evW[k], err = b.ev(cl.Write(d.copyQ, xb[k%2], false, 0, src, wait))
		if err == nil {
			err = d.copyQ.Flush()
		}
		return err
	}
	// unstage copies chunk k's gradient out of its staging buffer.
	unstage := func(k int) error {
		t0 := time.Now()
		if err := cl.Wait(evR[k]); err != nil {
			return err
		}
		t1 := time.Now()
		tr.wait += t1.Sub(t0)
		defer func() { tr.out += time.Since(t1) }()
		g, gs := c.grad, c.grad.Type.Size()
		lo := k * step
		n := min(step, rows-lo)
		host := bytesOf(g.Data)
		if g.Type != ce.F32 {
			host = bytesOf(g.Half)
		}
		buf := sr[k%2].buf
		if g.Stride == cols { // dense: one copy, on several cores
			copyBytes(host[gs*lo*cols:gs*(lo+n)*cols], buf[:gs*n*cols])
			return nil
		}
		for i := range n {
			copy(host[gs*(lo+i)*g.Stride:gs*((lo+i)*g.Stride+cols)], buf[gs*i*cols:gs*(i+1)*cols])
		}
		return nil
	}
	if err := write(0); err != nil {
		return d.wrap(err)
	}
	for k := range nchunks {
		if err := ctx.Err(); err != nil {
			return err // the deferred release waits for what is in flight
		}
		if k+1 < nchunks {
			if err := write(k + 1); err != nil {
				return d.wrap(err)
			}
		}
		lo := k * step
		n := min(step, rows-lo)
		if evK[k], err = d.launch(&b, r, c, xb[k%2], lo, n, []cl.Event{evW[k]}); err != nil {
			return d.wrap(err)
		}
		if c.grad != nil {
			var dst *stage
			if sr[0] != nil {
				dst = sr[k%2]
				if k >= 2 {
					if err := unstage(k - 2); err != nil {
						return d.wrap(err)
					}
				}
			}
			if evR[k], err = d.readGrad(&b, xb[k%2], c.grad, lo, n, cols, stride, evK[k], dst); err != nil {
				return d.wrap(err)
			}
		}
	}
	if c.grad != nil && sr[0] != nil {
		for k := max(0, nchunks-2); k < nchunks; k++ {
			if err := unstage(k); err != nil {
				return d.wrap(err)
			}
		}
	}
	if err := d.finishRows(&b, r, c, evK[nchunks-1]); err != nil {
		return d.wrap(err)
	}
	return d.finish(&b)
}

// runResident computes c on one of the device's buffers, in one launch;
// a gradient replaces the logits in the buffer.
func (d *Device) runResident(b *buffers, c *call) error {
	buf, ok := c.x.Buf.(*Buffer)
	if !ok || buf.d != d {
		return fmt.Errorf("opencl: %s: %w (of %s)", d.h.name, device.ErrForeign, device.SpecOf(c.x.Buf))
	}
	if buf.mem == 0 {
		return fmt.Errorf("opencl: %w", device.ErrReleased)
	}
	if c.grad != nil && c.grad.Buf != c.x.Buf {
		return fmt.Errorf("opencl: %w: the gradient of a matrix held by the device replaces it in its buffer (pass the same matrix as the gradient)", device.ErrNotImplemented)
	}
	r, err := d.setup(b, c)
	if err != nil {
		return d.wrap(err)
	}
	ev, err := d.launch(b, r, c, buf.mem, 0, c.x.Rows, nil)
	if err == nil {
		err = d.finishRows(b, r, c, ev)
	}
	if err != nil {
		return d.wrap(err)
	}
	return d.finish(b)
}

// finish waits for the kernels of b and keeps their time.
func (d *Device) finish(b *buffers) error {
	if err := d.q.Finish(); err != nil {
		return d.wrap(err)
	}
	d.lastKernel = b.kernelTime()
	return nil
}

// widened returns c with its half-precision rows widened to float32 on
// the host, for a float32 gradient: the kernels write the gradient in
// place over the rows they read, in their type, and a gradient rounded to
// half precision and then widened would not be the float32 one asked for.
// It moves twice the bytes; a gradient in the logits' type moves half.
func widened(c *call) *call {
	w := *c
	w.x = cpu.Widened(c.x)
	return &w
}

// readGrad reads chunk rows [lo, lo+n) of the gradient, computed in place
// in buf (row i at element i·stride), into g after ev, or, staged, into
// the staging buffer st as dense rows (the caller copies them out): the
// rows' cols columns only, in one transfer whatever the strides (what
// lies between the rows in g may be another shard's columns).
func (d *Device) readGrad(b *buffers, buf cl.Mem, g *ce.Grad, lo, n, cols, stride int, ev cl.Event, st *stage) (cl.Event, error) {
	size := g.Type.Size()
	r := cl.Rect{Pitch: size * stride, HostPitch: size * g.Stride, RowBytes: size * cols, Rows: n}
	span := lo*g.Stride + (n-1)*g.Stride + cols
	var host []byte
	switch {
	case st != nil:
		r.HostPitch = size * cols
		host = st.buf[:size*n*cols]
	case g.Type == ce.F32:
		host = bytesOf(g.Data[lo*g.Stride : span])
	default:
		host = bytesOf(g.Half[lo*g.Stride : span])
	}
	e, err := b.ev(cl.ReadRect(d.copyQ, buf, false, r, host, []cl.Event{ev}))
	if err == nil {
		err = d.copyQ.Flush()
	}
	return e, err
}

// wrap names the device in an error.
func (d *Device) wrap(err error) error {
	var st cl.Status
	if errors.As(err, &st) && st.Lost() {
		return fmt.Errorf("opencl: %s: device lost or out of resources: %w", d.h.name, err)
	}
	return fmt.Errorf("opencl: %s: %w", d.h.name, err)
}
