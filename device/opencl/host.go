package opencl

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/xentlab/xent/ce"
	"github.com/xentlab/xent/device"
	"github.com/xentlab/xent/device/opencl/internal/cl"
)

var _ device.HostAllocator = (*Device)(nil)

// hostAlloc is a host matrix's memory that AllocHost mapped from a
// CL_MEM_ALLOC_HOST_PTR buffer: pinned, so that the device reads and
// writes it by DMA.
type hostAlloc struct {
	mem cl.Mem
	buf []byte
}

// AllocHost implements device.HostAllocator: a dense rows × cols host
// matrix of type t in the device's pinned memory. Logits written there
// (and gradients read there) cross the bus without the staging copies
// host rows take elsewhere (on a GPU those copies, not the DMA, bound a
// call on host rows: bench/RESULTS.md). FreeHost returns it; Close frees
// what is left.
func (d *Device) AllocHost(rows, cols int, t ce.DType) (ce.Matrix, error) {
	if rows < 0 || cols < 0 || (t != ce.F32 && t != ce.BF16 && t != ce.F16) {
		return ce.Matrix{}, fmt.Errorf("opencl: AllocHost(%d, %d, %v): the sizes must be ≥ 0 and the type one of float32, bfloat16, float16", rows, cols, t)
	}
	n := rows * cols
	if int64(n)*int64(t.Size()) > d.maxAlloc {
		return ce.Matrix{}, fmt.Errorf("%w: a host matrix of %d × %d %v exceeds one allocation of %d bytes", ErrTooLarge, rows, cols, t, d.maxAlloc)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ce.Matrix{}, device.ErrClosed
	}
	bytes := max(n*t.Size(), 4)
	m, err := cl.CreateBuffer(d.p.ctx, cl.MemReadWrite|cl.MemAllocHostPtr, bytes)
	if err != nil {
		return ce.Matrix{}, d.wrap(err)
	}
	buf, err := cl.MapHost(d.copyQ, m, bytes)
	if err != nil {
		return ce.Matrix{}, d.wrap(errors.Join(err, m.Release()))
	}
	d.hosts = append(d.hosts, hostAlloc{mem: m, buf: buf})
	x := ce.Matrix{Rows: rows, Cols: cols, Stride: cols, Type: t}
	if t == ce.F32 {
		x.Data = unsafe.Slice((*float32)(unsafe.Pointer(&buf[0])), n)
	} else {
		x.Half = unsafe.Slice((*uint16)(unsafe.Pointer(&buf[0])), n)
	}
	return x, nil
}

// FreeHost implements device.HostAllocator: it returns the memory of a
// matrix AllocHost gave (x itself, not a view of it).
func (d *Device) FreeHost(x ce.Matrix) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	p := hostBytes(x)
	for i, h := range d.hosts {
		if len(p) > 0 && &h.buf[0] == &p[0] {
			d.hosts = append(d.hosts[:i], d.hosts[i+1:]...)
			if err := errors.Join(cl.Unmap(d.copyQ, h.mem, h.buf), h.mem.Release()); err != nil {
				return d.wrap(err)
			}
			return nil
		}
	}
	return fmt.Errorf("opencl: FreeHost: the matrix (%d × %d %v) is not one that AllocHost gave, or it was freed", x.Rows, x.Cols, x.Type)
}

// hostBytes returns the bytes of x's elements, first to last.
func hostBytes(x ce.Matrix) []byte {
	if x.Rows == 0 || x.Cols == 0 {
		return nil
	}
	n := (x.Rows-1)*x.Stride + x.Cols
	if x.Type == ce.F32 {
		return bytesOf(x.Data[:n])
	}
	return bytesOf(x.Half[:n])
}

// gradBytes returns the bytes of the rows × cols gradient g (host).
func gradBytes(g *ce.Grad, rows, cols int) []byte {
	if rows == 0 || cols == 0 {
		return nil
	}
	n := (rows-1)*g.Stride + cols
	if g.Type == ce.F32 {
		return bytesOf(g.Data[:n])
	}
	return bytesOf(g.Half[:n])
}

// pinned reports whether b lies in the memory of one host matrix of
// AllocHost; d.mu is held.
func (d *Device) pinned(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	p := uintptr(unsafe.Pointer(&b[0]))
	for _, h := range d.hosts {
		lo := uintptr(unsafe.Pointer(&h.buf[0]))
		if p >= lo && p+uintptr(len(b)) <= lo+uintptr(len(h.buf)) {
			return true
		}
	}
	return false
}

// freeHosts frees every host matrix left (Close); d.mu is held.
func (d *Device) freeHosts() error {
	var errs []error
	for _, h := range d.hosts {
		errs = append(errs, cl.Unmap(d.copyQ, h.mem, h.buf), h.mem.Release())
	}
	d.hosts = nil
	return errors.Join(errs...)
}
