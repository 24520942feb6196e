package opencl

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/xentlab/xent/device/opencl/internal/cl"
)

// CopyBandwidth measures the device's copy bandwidth in bytes per second
// (read + write) with a float4 copy kernel over two buffers of the given
// size: the median of repeats runs, timed by the queue's profiling events.
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
		s, err := d.timed(d.p.copyK, d.copyGroups(bytes/16), src, dst, uint64(bytes/16))
		if err != nil {
			return 0, err
		}
		if i > 0 { // the first run warms up
			secs = append(secs, s)
		}
	}
	slices.Sort(secs)
	return 2 * float64(bytes) / secs[len(secs)/2], nil
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
// returns the seconds its profiling event gives; d's lock is held.
func (d *Device) timed(k cl.Kernel, groups int, args ...any) (float64, error) {
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
	ns, perr := ev.Duration()
	ev.Release()
	if err != nil || perr != nil {
		return 0, d.wrap(errors.Join(err, perr))
	}
	return float64(ns) / 1e9, nil
}

// FMAPeak measures the device's float32 FMA rate in flops per second
// (an fma counted as 2, each lane's) with a kernel of independent fmas on
// registers (of 16 lanes on a CPU runtime: fmaWidth), 64 work-groups a
// compute unit: the best of repeats runs after a
// warm-up, timed by the queue's profiling events. The fused linear's
// products cannot pass it.
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
		s, err := d.timed(d.p.fmaK, groups, out, int32(iters), float32(0.999))
		if err != nil {
			return 0, err
		}
		if i > 0 && s > 0 && (best == 0 || s < best) { // the first run warms up
			best = s
		}
	}
	return 16 * iters * float64(fmaWidth(d.h)*groups*d.p.tn.WG) / best, nil
}

// LastKernelTime returns the execution time of the kernels of the last
// completed call (transfers excluded), from the queue's profiling events.
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
