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
	cu, _ := d.h.dev.Uint(cl.DeviceMaxComputeUnits)
	groups := int(max(cu, 1)) * 8
	var secs []float64
	for i := range repeats + 1 {
		d.p.kernelMu.Lock() // see launch
		err := d.p.copyK.SetArgs(src, dst, uint64(bytes/16))
		var ev cl.Event
		if err == nil {
			ev, err = d.q.NDRange(d.p.copyK, groups, d.p.tn.WG, nil)
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
		if i > 0 { // the first run warms up
			secs = append(secs, float64(ns)/1e9)
		}
	}
	slices.Sort(secs)
	return 2 * float64(bytes) / secs[len(secs)/2], nil
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
