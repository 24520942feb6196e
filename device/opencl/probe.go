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
			ev, err = d.q.NDRange(d.p.copyK, groups, d.p.wg, nil)
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
