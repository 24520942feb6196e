package opencl

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/xentlab/xent/device/opencl/internal/cl"
)

// CopyBandwidth measures the device's copy bandwidth in bytes per second
// (read + write) with a float4 copy kernel over two buffers of the given
// size: the median of repeats runs, timed by the queue's profiling events;
// a rate past maxCopy, or a clock timed's check refuses, is an error.
func (d *Device) CopyBandwidth(ctx context.Context, bytes int, repeats int) (float64, error) {
	if err := d.begin(ctx); err != nil {
		return 0, err
	}
	defer d.mu.Unlock()
	bytes = bytes &^ 15
	var b buffers
	defer b.release()
	src, err := b.mem(d.p.ctx, bytes)
	if err != nil {
		return 0, d.wrap(err)
	}
	dst, err := b.mem(d.p.ctx, bytes)
	if err != nil {
		return 0, d.wrap(err)
	}
	var secs []float64
	for i := range repeats + 1 {
		s, err := d.timed(i > 0, d.p.copyK, d.copyGroups(bytes/16), src, dst, uint64(bytes/16))
		if err != nil {
			return 0, err
		}
		if i > 0 { // the first run warms up
			secs = append(secs, s)
		}
	}
	slices.Sort(secs)
	bw := 2 * float64(bytes) / secs[len(secs)/2]
	if !(bw < maxCopy) {
		return 0, d.implausible(fmt.Sprintf("a copy at %.3g GB/s", bw/1e9))
	}
	return bw, nil
}

// maxCopy and maxFMA bound what any device's probes can measure: 1 PB/s
// (an H200's HBM3e gives under 5 TB/s) and 10 PFLOP/s of float32 FMAs
// (an H200, 67 TFLOP/s). Past them the profiling clock is wrong, as Mesa
// 22.3's llvmpipe's is (1 ns a kernel: 25 PB/s).
const (
	maxCopy = 1e15
	maxFMA  = 1e16
)

// implausible returns the error of a probe that measured what: the
// device's profiling events cannot time its kernels.
func (d *Device) implausible(what string) error {
	return fmt.Errorf("opencl: %s: the profiling events time %s: the device's profiling clock cannot time its kernels", d.h.name, what)
}

// copyGroups returns the work-groups CopyBandwidth runs xent_copy at for
// n4 float4s. A GPU runs its grid-stride loop at 8 work-groups a compute
// unit. A CPU runtime (PoCL) runs a work-group's items one after another
// in a thread, so each item's loop would walk memory at the grid's stride
// (8 KB on 2 cores: 0.04 GB/s, against 17 at one float4 an item): there
// the grid covers the buffer, one float4 an item.
func (d *Device) copyGroups(n4 int) int {
	if d.h.kind == "cpu" {
		return max((n4+d.p.tn.WG-1)/d.p.tn.WG, 1)
	}
	return d.units * 8
}

// timed runs groups work-groups of k (the tuning's size) with args and
// returns the seconds its profiling event gives; d's lock is held. After
// the warm-up (warm: a runtime may compile the kernel at its first launch,
// PoCL for each work-group size, 150 ms where the kernel took 58 µs), an
// event that says the kernel took under a thousandth of the 100 ms or
// more the host waited for it is an error: that device's profiling clock
// is not the kernel's (Mesa 22.3's rusticl on llvmpipe said 1 ns for a
// kernel of 18 s). The queue is idle when timed runs, so the host waits
// for this kernel alone.
func (d *Device) timed(warm bool, k cl.Kernel, groups int, args ...any) (float64, error) {
	t0 := time.Now()
	d.p.kernelMu.Lock() // see launch
	err := k.SetArgs(args...)
	var ev cl.Event
	if err == nil {
		ev, err = d.q.NDRange(k, groups, d.p.tn.WG, nil)
	}
	d.p.kernelMu.Unlock()
	if err != nil {
		return 0, d.wrap(err)
	}
	err = cl.Wait(ev)
	wall := time.Since(t0)
	ns, perr := ev.Duration()
	ev.Release()
	if err != nil || perr != nil {
		return 0, d.wrap(errors.Join(err, perr))
	}
	if warm && wall > 100*time.Millisecond && time.Duration(ns) < wall/1000 {
		return 0, d.implausible(fmt.Sprintf("%v for a kernel the host waited %v for", time.Duration(ns), wall.Round(time.Millisecond)))
	}
	return float64(ns) / 1e9, nil
}

// FMAPeak measures the device's float32 FMA rate in flops per second
// (an fma counted as 2, each lane's) with a kernel of independent fmas on
// registers (of 16 lanes on a CPU runtime: fmaWidth), 64 work-groups a
// compute unit: the best of repeats runs after a
// warm-up, timed by the queue's profiling events. The fused linear's
// products cannot pass it. Every work-item's result is checked (fmaWant):
// a device that did not run the whole loop (Mesa 22.3's llvmpipe stops a
// loop after 65535 iterations, counted over a work-group's items, and gave
// 17 EFLOP/s) is an error, not a rate; so is a rate past maxFMA.
func (d *Device) FMAPeak(ctx context.Context, repeats int) (float64, error) {
	if err := d.begin(ctx); err != nil {
		return 0, err
	}
	defer d.mu.Unlock()
	const iters = 4096
	groups := max(d.units, 1) * 64
	var b buffers
	defer b.release()
	out, err := b.mem(d.p.ctx, 4*groups*d.p.tn.WG)
	if err != nil {
		return 0, d.wrap(err)
	}
	best := 0.0
	for i := range repeats + 1 {
		s, err := d.timed(i > 0, d.p.fmaK, groups, out, int32(iters), float32(0.999))
		if err != nil {
			return 0, err
		}
		if i > 0 && s > 0 && (best == 0 || s < best) { // the first run warms up
			best = s
		}
	}
	got := make([]float32, groups*d.p.tn.WG)
	if _, err := cl.Read(d.q, out, true, 0, got, nil); err != nil {
		return 0, d.wrap(err)
	}
	for i, v := range got {
		if want := fmaWant(i, iters, 0.999, fmaWidth(d.h)); !(math.Abs(float64(v)-want) <= 1e-3*want) {
			return 0, fmt.Errorf("opencl: %s: the FMA probe's work-item %d computed %v, want %.6g: the device did not run its loop of %d steps", d.h.name, i, v, want, iters)
		}
	}
	rate := 16 * iters * float64(fmaWidth(d.h)*groups*d.p.tn.WG) / best
	if !(rate < maxFMA) {
		return 0, d.implausible(fmt.Sprintf("%.3g GFLOP/s of float32 FMAs", rate/1e9))
	}
	return rate, nil
}

// fmaWant returns what xent_fma writes for work-item gid, in float64: the
// sum over w lanes of its 8 chains v ← v·a + a from v = gid·1e-9 + k·1e-9,
// after iters steps. The chains contract (a < 1), so float32's rounding
// stays within about ulp/(1 - a) of it: 3e-5 relative at a = 0.999, and a
// step fewer moves it by about 2e-5 of itself.
func fmaWant(gid, iters int, a float64, w int) float64 {
	an := math.Pow(a, float64(iters))
	sum := 0.0
	for k := range 8 {
		v0 := float64(float32(float64(gid)*1e-9)) + float64(k)*1e-9
		sum += an*v0 + a*(1-an)/(1-a)
	}
	return float64(w) * sum
}

// LastKernelTime returns the execution time of the kernels of the last
// completed call (transfers excluded), from the queue's profiling events:
// a call on rows (LogSumExp, CrossEntropy, Partials, Backward; rows split
// over work-groups: the call's whole time, the host's merge included) or
// the fused linear on linear.cl's kernels. It is 0, unknown, after any
// other call (CLBlast's products, a rank or gather pass, a transfer, a
// probe), a call that launched nothing, or where the driver gave no time
// for one of the kernels; bench refuses a kernel-only timing of 0.
func (d *Device) LastKernelTime() time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lastKernel
}

// PinnedBandwidth measures host→device transfer bandwidth in bytes per
// second from pinned host memory (a mapped CL_MEM_ALLOC_HOST_PTR buffer,
// what the staged transfers use) into a device buffer of the given size:
// the best of repeats blocking writes after one warm-up, timed on the
// host.
func (d *Device) PinnedBandwidth(ctx context.Context, bytes int, repeats int) (float64, error) {
	if err := d.begin(ctx); err != nil {
		return 0, err
	}
	defer d.mu.Unlock()
	var b buffers
	defer b.release()
	dst, err := b.mem(d.p.ctx, bytes)
	if err != nil {
		return 0, d.wrap(err)
	}
	st, err := b.stage(d, bytes)
	if err != nil {
		return 0, d.wrap(err)
	}
	best := 0.0
	for i := range repeats + 1 {
		t0 := time.Now()
		if _, err := cl.Write(d.copyQ, dst, true, 0, st.buf, nil); err != nil {
			return 0, d.wrap(err)
		}
		if s := time.Since(t0).Seconds(); i > 0 && (best == 0 || s < best) {
			best = s
		}
	}
	return float64(bytes) / best, nil
}
