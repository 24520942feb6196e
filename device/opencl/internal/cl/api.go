package cl

import (
	"fmt"
	"math"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"
)

func l() *lib { return loaded }

// Platforms returns the OpenCL platforms; none is not an error.
func Platforms() ([]Platform, error) {
	if err := Load(); err != nil {
		return nil, err
	}
	var n uint32
	if st := l().getPlatformIDs(0, nil, &n); st != 0 {
		if Status(st) == -1001 { // the ICD loader found no vendor
			return nil, nil
		}
		return nil, fmt.Errorf("clGetPlatformIDs: %w", Status(st))
	}
	if n == 0 {
		return nil, nil
	}
	ps := make([]Platform, n)
	if err := check(l().getPlatformIDs(n, &ps[0], nil)); err != nil {
		return nil, fmt.Errorf("clGetPlatformIDs: %w", err)
	}
	return ps, nil
}

// info reads a variable-size info value through get.
func info(get func(size uintptr, v unsafe.Pointer, sret *uintptr) int32) ([]byte, error) {
	var n uintptr
	if err := check(get(0, nil, &n)); err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, nil
	}
	b := make([]byte, n)
	if err := check(get(n, unsafe.Pointer(&b[0]), nil)); err != nil {
		return nil, err
	}
	return b, nil
}

func cstring(b []byte) string { return strings.TrimSpace(strings.TrimRight(string(b), "\x00")) }

// Info returns a string info value of the platform.
func (p Platform) Info(param uint32) (string, error) {
	b, err := info(func(size uintptr, v unsafe.Pointer, sret *uintptr) int32 {
		return l().getPlatformInfo(p, param, size, v, sret)
	})
	return cstring(b), err
}

// Devices returns the devices of the given type; none is not an error.
func (p Platform) Devices(typ uint64) ([]Device, error) {
	var n uint32
	if st := l().getDeviceIDs(p, typ, 0, nil, &n); st != 0 {
		if Status(st) == -1 {
			return nil, nil
		}
		return nil, fmt.Errorf("clGetDeviceIDs: %w", Status(st))
	}
	if n == 0 {
		return nil, nil
	}
	ds := make([]Device, n)
	if err := check(l().getDeviceIDs(p, typ, n, &ds[0], nil)); err != nil {
		return nil, fmt.Errorf("clGetDeviceIDs: %w", err)
	}
	return ds, nil
}

func (d Device) raw(param uint32) ([]byte, error) {
	return info(func(size uintptr, v unsafe.Pointer, sret *uintptr) int32 {
		return l().getDeviceInfo(d, param, size, v, sret)
	})
}

// String returns a string info value of the device.
func (d Device) String(param uint32) (string, error) {
	b, err := d.raw(param)
	return cstring(b), err
}

// Uint returns an integer info value of the device (cl_uint, cl_ulong,
// size_t or a bitfield), whatever its width.
func (d Device) Uint(param uint32) (uint64, error) {
	b, err := d.raw(param)
	if err != nil {
		return 0, err
	}
	return littleEndian(b), nil
}

// littleEndian is the integer of b's bytes, least significant first (the
// host's order: little-endian hosts).
func littleEndian(b []byte) uint64 {
	var v uint64
	for i := len(b) - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v
}

// Sizes returns an info value of the device that is an array of size_t
// (CL_DEVICE_MAX_WORK_ITEM_SIZES).
func (d Device) Sizes(param uint32) ([]uint64, error) {
	b, err := d.raw(param)
	if err != nil {
		return nil, err
	}
	const w = int(unsafe.Sizeof(uintptr(0)))
	v := make([]uint64, len(b)/w)
	for i := range v {
		v[i] = littleEndian(b[i*w : (i+1)*w])
	}
	return v, nil
}

// maxAlloc holds each live context's device's CL_DEVICE_MAX_MEM_ALLOC_SIZE
// (Context → uint64), for CreateBuffer's check.
var maxAlloc sync.Map

// CreateContext creates a context on one device.
func CreateContext(d Device) (Context, error) {
	ma, err := d.Uint(DeviceMaxMemAllocSize)
	if err != nil {
		return 0, fmt.Errorf("clGetDeviceInfo(CL_DEVICE_MAX_MEM_ALLOC_SIZE): %w", err)
	}
	var st int32
	c := l().createContext(nil, 1, &d, 0, 0, &st)
	if st != 0 {
		return 0, fmt.Errorf("clCreateContext: %w", Status(st))
	}
	maxAlloc.Store(c, ma)
	live.Add(1)
	return c, nil
}

// Release releases the context.
func (c Context) Release() error {
	maxAlloc.Delete(c)
	live.Add(-1)
	return check(l().releaseContext(c))
}

// CreateQueue creates an in-order command queue.
func CreateQueue(c Context, d Device, props uint64) (Queue, error) {
	var st int32
	q := l().createCommandQueue(c, d, props, &st)
	if st != 0 {
		return 0, fmt.Errorf("clCreateCommandQueue: %w", Status(st))
	}
	live.Add(1)
	return q, nil
}

// Release releases the queue.
func (q Queue) Release() error { live.Add(-1); return check(l().releaseCommandQueue(q)) }

// Finish waits for everything enqueued on q.
func (q Queue) Finish() error { hostWaits.Add(1); return check(l().finish(q)) }

// hostWaits counts the host's waits for the device: Finish, Wait and
// blocking transfers (a released event's own wait is not one: it comes
// at the end of a call, for work already done).
var hostWaits atomic.Int64

// HostWaits returns the number of the host's waits for the device so
// far, process-wide (see hostWaits).
func HostWaits() int64 { return hostWaits.Load() }

// Flush submits what is enqueued on q.
func (q Queue) Flush() error { return check(l().flush(q)) }

// CreateBuffer creates a device buffer of size bytes. A size below 1 or
// past the device's CL_DEVICE_MAX_MEM_ALLOC_SIZE is CL_INVALID_BUFFER_SIZE,
// checked here (some drivers take 0, Oclgrind more than its maximum).
func CreateBuffer(c Context, flags uint64, size int) (Mem, error) {
	if size < 1 {
		return 0, fmt.Errorf("clCreateBuffer(%d bytes): %w (checked by xent before the driver)", size, Status(-61))
	}
	if ma, ok := maxAlloc.Load(c); ok && uint64(size) > ma.(uint64) {
		return 0, fmt.Errorf("clCreateBuffer(%d bytes): %w: the device's largest allocation is %d bytes (checked by xent before the driver)", size, Status(-61), ma)
	}
	var st int32
	m := l().createBuffer(c, flags, uintptr(size), nil, &st)
	if st != 0 {
		return 0, fmt.Errorf("clCreateBuffer(%d bytes): %w", size, Status(st))
	}
	live.Add(1)
	return m, nil
}

// Size returns the buffer's size in bytes (CL_MEM_SIZE).
func (m Mem) Size() (int, error) {
	var n uintptr
	if err := check(l().getMemObjectInfo(m, MemSize, unsafe.Sizeof(n), unsafe.Pointer(&n), nil)); err != nil {
		return 0, fmt.Errorf("clGetMemObjectInfo(CL_MEM_SIZE): %w", err)
	}
	return int(n), nil
}

// Release releases the buffer.
func (m Mem) Release() error { live.Add(-1); return check(l().releaseMemObject(m)) }

// MapHost maps all size bytes of m (a CL_MEM_ALLOC_HOST_PTR buffer: pinned
// host memory) for reading and writing, blocking, and returns them. Unmap
// them before m is released. The bytes must lie inside m: checked here.
func MapHost(q Queue, m Mem, size int) ([]byte, error) {
	if err := inside(m, "clEnqueueMapBuffer", 0, size); err != nil {
		return nil, err
	}
	var st int32
	p := l().enqueueMapBuffer(q, m, 1, MapRead|MapWrite, 0, uintptr(size), 0, nil, nil, &st)
	if st != 0 {
		return nil, fmt.Errorf("clEnqueueMapBuffer(%d bytes): %w", size, Status(st))
	}
	return unsafe.Slice((*byte)(p), size), nil
}

// Unmap unmaps b, MapHost's mapping of m, and waits for it.
func Unmap(q Queue, m Mem, b []byte) error {
	if err := check(l().enqueueUnmapMemObject(q, m, unsafe.Pointer(unsafe.SliceData(b)), 0, nil, nil)); err != nil {
		return fmt.Errorf("clEnqueueUnmapMemObject: %w", err)
	}
	return q.Finish()
}

// BuildProgram compiles src for d with the build options opts. On failure
// the error is a *BuildError carrying the log.
func BuildProgram(c Context, d Device, src, opts string) (Program, error) {
	s := append([]byte(src), 0)
	ps := &s[0]
	n := uintptr(len(src))
	var st int32
	p := l().createProgramWithSource(c, 1, &ps, &n, &st)
	runtime.KeepAlive(s)
	if st != 0 {
		return 0, fmt.Errorf("clCreateProgramWithSource: %w", Status(st))
	}
	live.Add(1)
	o := append([]byte(opts), 0)
	st = l().buildProgram(p, 1, &d, &o[0], 0, 0)
	runtime.KeepAlive(o)
	if st != 0 {
		b, _ := info(func(size uintptr, v unsafe.Pointer, sret *uintptr) int32 {
			return l().getProgramBuildInfo(p, d, ProgramBuildLog, size, v, sret)
		})
		p.Release()
		return 0, &BuildError{Status: Status(st), Options: opts, Log: cstring(b)}
	}
	return p, nil
}

// BuildLog returns the compiler's log of p's build for d (its warnings;
// with NVIDIA's -cl-nv-verbose, each kernel's registers).
func (p Program) BuildLog(d Device) (string, error) {
	b, err := info(func(size uintptr, v unsafe.Pointer, sret *uintptr) int32 {
		return l().getProgramBuildInfo(p, d, ProgramBuildLog, size, v, sret)
	})
	return cstring(b), err
}

// Release releases the program.
func (p Program) Release() error { live.Add(-1); return check(l().releaseProgram(p)) }

// CreateKernel creates the kernel called name.
func CreateKernel(p Program, name string) (Kernel, error) {
	b := append([]byte(name), 0)
	var st int32
	k := l().createKernel(p, &b[0], &st)
	runtime.KeepAlive(b)
	if st != 0 {
		return 0, fmt.Errorf("clCreateKernel(%s): %w", name, Status(st))
	}
	live.Add(1)
	return k, nil
}

// Release releases the kernel.
func (k Kernel) Release() error { live.Add(-1); return check(l().releaseKernel(k)) }

// Value is a kernel argument passed by value from a struct whose layout
// is the kernel's (see ValueOf).
type Value struct {
	p   unsafe.Pointer
	n   uintptr
	err error // a layout no device is sure to read as Go writes it
}

// ValueOf returns v as a by-value kernel argument: the kernel declares a
// struct of the same layout (fields of the same types in the same order).
// T must have no padding, inside or at its end: OpenCL C lays a struct out
// as C does, but implementations disagree on the size of one with
// trailing padding (Mesa's rusticl 22.3 leaves it out), and clSetKernelArg
// refuses a size other than its own. SetArgs refuses a Value of such a T,
// naming the gap, before any driver sees it.
func ValueOf[T any](v *T) Value {
	return Value{unsafe.Pointer(v), unsafe.Sizeof(*v), gapless(reflect.TypeFor[T]())}
}

// gapless returns an error naming the first padding of t: a gap before a
// field of a struct, after its last, or within an element of an array.
func gapless(t reflect.Type) error {
	switch t.Kind() {
	case reflect.Struct:
		end := uintptr(0)
		for i := range t.NumField() {
			f := t.Field(i)
			if f.Offset != end {
				return fmt.Errorf("cl: %v has %d bytes of padding before its field %s", t, f.Offset-end, f.Name)
			}
			if err := gapless(f.Type); err != nil {
				return err
			}
			end = f.Offset + f.Type.Size()
		}
		if end != t.Size() {
			return fmt.Errorf("cl: %v has %d bytes of padding at its end (drivers disagree on its size: add a field)", t, t.Size()-end)
		}
	case reflect.Array:
		return gapless(t.Elem())
	}
	return nil
}

// SetArgs sets the kernel's arguments in order: Mem, Value, uint64, int32,
// uint32 or float32 values.
func (k Kernel) SetArgs(args ...any) error {
	for i, a := range args {
		var st int32
		switch v := a.(type) {
		case Value:
			if v.err != nil {
				return fmt.Errorf("kernel argument %d: %w", i, v.err)
			}
			st = l().setKernelArg(k, uint32(i), v.n, v.p)
		case Mem:
			st = l().setKernelArg(k, uint32(i), unsafe.Sizeof(v), unsafe.Pointer(&v))
		case uint64:
			st = l().setKernelArg(k, uint32(i), 8, unsafe.Pointer(&v))
		case int32:
			st = l().setKernelArg(k, uint32(i), 4, unsafe.Pointer(&v))
		case uint32:
			st = l().setKernelArg(k, uint32(i), 4, unsafe.Pointer(&v))
		case float32:
			st = l().setKernelArg(k, uint32(i), 4, unsafe.Pointer(&v))
		default:
			return fmt.Errorf("cl: kernel argument %d has unsupported type %T", i, a)
		}
		if st != 0 {
			return fmt.Errorf("clSetKernelArg(%d): %w", i, Status(st))
		}
	}
	return nil
}

// WorkGroupSize returns the largest 1-D work-group size the kernel can
// run with on d: CL_KERNEL_WORK_GROUP_SIZE, capped at the device's
// CL_DEVICE_MAX_WORK_ITEM_SIZES[0] (a larger local size is
// CL_INVALID_WORK_ITEM_SIZE, whatever the kernel allows; most devices
// report the two alike, the specification does not ask them to); 0 where
// the kernel's local memory (CL_KERNEL_LOCAL_MEM_SIZE, its __local arrays
// as built) exceeds the device's (CL_DEVICE_LOCAL_MEM_SIZE): it runs at no
// size.
func (k Kernel) WorkGroupSize(d Device) (int, error) {
	var v, lm uint64
	for _, q := range []struct {
		param uint32
		dst   *uint64
	}{{KernelWorkGroupSize, &v}, {KernelLocalMemSize, &lm}} {
		b, err := info(func(size uintptr, p unsafe.Pointer, sret *uintptr) int32 {
			return l().getKernelWorkGroupInfo(k, d, q.param, size, p, sret)
		})
		if err != nil {
			return 0, fmt.Errorf("clGetKernelWorkGroupInfo(%#x): %w", q.param, err)
		}
		*q.dst = littleEndian(b)
	}
	items, err := d.Sizes(DeviceMaxWorkItemSizes)
	if err != nil {
		return 0, fmt.Errorf("clGetDeviceInfo(CL_DEVICE_MAX_WORK_ITEM_SIZES): %w", err)
	}
	if len(items) == 0 {
		return 0, fmt.Errorf("clGetDeviceInfo(CL_DEVICE_MAX_WORK_ITEM_SIZES): no dimension")
	}
	dl, err := d.Uint(DeviceLocalMemSize)
	if err != nil {
		return 0, fmt.Errorf("clGetDeviceInfo(CL_DEVICE_LOCAL_MEM_SIZE): %w", err)
	}
	if lm > dl {
		return 0, nil
	}
	return int(min(v, items[0])), nil
}

func waitList(wait []Event) (uint32, *Event) {
	if len(wait) == 0 {
		return 0, nil
	}
	return uint32(len(wait)), &wait[0]
}

// NDRange enqueues k over groups work-groups of local work-items (1-D)
// after the events in wait, and returns its event.
func (q Queue) NDRange(k Kernel, groups, local int, wait []Event) (Event, error) {
	g, lo := uintptr(groups*local), uintptr(local)
	n, w := waitList(wait)
	var ev Event
	if err := check(l().enqueueNDRangeKernel(q, k, 1, nil, &g, &lo, n, w, &ev)); err != nil {
		return 0, fmt.Errorf("clEnqueueNDRangeKernel(%d×%d): %w", groups, local, err)
	}
	live.Add(1)
	return ev, nil
}

// pins keeps the host memory of non-blocking transfers pinned until their
// event is released.
var pins sync.Map // Event → *runtime.Pinner

// pinned counts the transfers whose host memory is pinned.
var pinned atomic.Int64

// Pinned returns the number of non-blocking transfers whose host memory is
// still pinned (their events not yet released), process-wide.
func Pinned() int64 { return pinned.Load() }

// Write copies src into m at byte offset off after the events in wait. A
// non-blocking write keeps src pinned until the returned event is
// released. The bytes must lie inside m (see Rect): checked here, before
// the driver.
func Write[T any](q Queue, m Mem, blocking bool, off int, src []T, wait []Event) (Event, error) {
	p, size := sliceBytes(src)
	if err := inside(m, "clEnqueueWriteBuffer", off, size); err != nil {
		return 0, err
	}
	return q.enqueue("clEnqueueWriteBuffer", blocking, p, size, wait, func(b uint32, n uint32, w *Event, ev *Event) int32 {
		return l().enqueueWriteBuffer(q, m, b, uintptr(off), uintptr(size), p, n, w, ev)
	})
}

// Read copies from m at byte offset off into dst; see Write.
func Read[T any](q Queue, m Mem, blocking bool, off int, dst []T, wait []Event) (Event, error) {
	p, size := sliceBytes(dst)
	if err := inside(m, "clEnqueueReadBuffer", off, size); err != nil {
		return 0, err
	}
	return q.enqueue("clEnqueueReadBuffer", blocking, p, size, wait, func(b uint32, n uint32, w *Event, ev *Event) int32 {
		return l().enqueueReadBuffer(q, m, b, uintptr(off), uintptr(size), p, n, w, ev)
	})
}

// BoundsError is the binding's refusal of a transfer that a driver may
// refuse: it wraps CL_INVALID_VALUE, as the driver's own refusal does.
type BoundsError struct {
	Call string // "clEnqueueReadBufferRect", ...
	Msg  string
}

func (e *BoundsError) Error() string {
	return fmt.Sprintf("%s: %s: %v (checked by xent before the driver)", e.Call, e.Msg, Status(-30))
}

func (e *BoundsError) Unwrap() error { return Status(-30) }

// inside returns a *BoundsError unless bytes [off, off+size) lie in m.
func inside(m Mem, call string, off, size int) error {
	if size == 0 {
		return nil
	}
	n, err := m.Size()
	if err != nil {
		return err
	}
	if off < 0 || off+size > n {
		return &BoundsError{call, fmt.Sprintf("bytes [%d, %d) of a buffer of %d", off, off+size, n)}
	}
	return nil
}

// Rect is a 2-D region of Rows rows of RowBytes bytes: in a buffer from
// byte offset Off with rows Pitch bytes apart, and in a host slice from
// its start with rows HostPitch bytes apart.
//
// The specification makes a rectangular transfer CL_INVALID_VALUE when
// "the region ... is out of bounds", and its buffer slice pitch defaults
// to region[1] × row pitch: read strictly, as NVIDIA's driver does, the
// region is Rows whole pitches, so the buffer must hold Off + Rows·Pitch
// bytes, the last row's padding included, not just Off + (Rows-1)·Pitch +
// RowBytes (PoCL's reading). The binding applies the strict rule itself,
// before it calls the driver, so that every implementation fails where
// the strictest would (a *BoundsError); a one-row region's pitches are
// set to RowBytes (they do not matter, and a row needs no padding). On
// the host side the driver cannot check; the binding requires the rows
// themselves, (Rows-1)·HostPitch + RowBytes bytes. Pitches below RowBytes
// are refused, as the specification says.
type Rect struct {
	Off, Pitch, HostPitch, RowBytes, Rows int
}

// check returns r as it is passed to the driver (one row's pitches
// RowBytes), or the error the strict rule gives for a buffer of bufBytes
// and a host slice of hostBytes.
func (r Rect) check(call string, bufBytes, hostBytes int) (Rect, error) {
	if r.Rows == 1 {
		r.Pitch, r.HostPitch = r.RowBytes, r.RowBytes
	}
	fail := func(f string, a ...any) (Rect, error) { return r, &BoundsError{call, fmt.Sprintf(f, a...)} }
	switch {
	case r.Off < 0 || r.Rows < 0 || r.RowBytes < 0:
		return fail("negative offset %d, rows %d or row bytes %d", r.Off, r.Rows, r.RowBytes)
	case r.Pitch < r.RowBytes || r.HostPitch < r.RowBytes:
		return fail("pitches %d (buffer) and %d (host) must be ≥ the row's %d bytes", r.Pitch, r.HostPitch, r.RowBytes)
	case r.Off+r.Rows*r.Pitch > bufBytes:
		return fail("%d rows of pitch %d from byte %d need %d bytes of the buffer (whole pitches, the strict reading), it has %d",
			r.Rows, r.Pitch, r.Off, r.Off+r.Rows*r.Pitch, bufBytes)
	case (r.Rows-1)*r.HostPitch+r.RowBytes > hostBytes:
		return fail("%d host bytes, the region needs %d", hostBytes, (r.Rows-1)*r.HostPitch+r.RowBytes)
	}
	return r, nil
}

// ReadRect copies the rows of r from m into dst after the events in wait
// (one transfer however the strides differ); see Write.
func ReadRect[T any](q Queue, m Mem, blocking bool, r Rect, dst []T, wait []Event) (Event, error) {
	return rect(q, l().enqueueReadBufferRect, "clEnqueueReadBufferRect", m, blocking, r, dst, wait)
}

// WriteRect copies the rows of r from src into m; see ReadRect.
func WriteRect[T any](q Queue, m Mem, blocking bool, r Rect, src []T, wait []Event) (Event, error) {
	return rect(q, l().enqueueWriteBufferRect, "clEnqueueWriteBufferRect", m, blocking, r, src, wait)
}

func rect[T any](q Queue, f rectFn, name string, m Mem, blocking bool, r Rect, host []T, wait []Event) (Event, error) {
	p, size := sliceBytes(host)
	if r.Rows == 0 || r.RowBytes == 0 {
		return 0, nil
	}
	n, err := m.Size()
	if err != nil {
		return 0, err
	}
	if r, err = r.check(name, n, size); err != nil {
		return 0, err
	}
	return rectUnchecked(q, f, name, m, blocking, r, p, size, wait)
}

// rectUnchecked passes r to the driver as it is (a test asks the driver
// which rule it applies).
func rectUnchecked(q Queue, f rectFn, name string, m Mem, blocking bool, r Rect, p unsafe.Pointer, size int, wait []Event) (Event, error) {
	bo := [3]uintptr{uintptr(r.Off), 0, 0}
	ho := [3]uintptr{}
	reg := [3]uintptr{uintptr(r.RowBytes), uintptr(r.Rows), 1}
	return q.enqueue(name, blocking, p, size, wait, func(b uint32, n uint32, w *Event, ev *Event) int32 {
		return f(q, m, b, &bo[0], &ho[0], &reg[0], uintptr(r.Pitch), 0, uintptr(r.HostPitch), 0, p, n, w, ev)
	})
}

func sliceBytes[T any](s []T) (unsafe.Pointer, int) {
	return unsafe.Pointer(unsafe.SliceData(s)), len(s) * int(unsafe.Sizeof(*new(T)))
}

// enqueue runs do, a transfer of the size bytes at p, after wait: a
// non-blocking one pins p until the returned event is released.
func (q Queue) enqueue(name string, blocking bool, p unsafe.Pointer, size int, wait []Event, do func(b uint32, n uint32, w *Event, ev *Event) int32) (Event, error) {
	var ev Event
	if size == 0 {
		return 0, nil
	}
	var pin *runtime.Pinner
	b := uint32(1)
	if blocking {
		hostWaits.Add(1)
	} else {
		b = 0
		pin = new(runtime.Pinner)
		pin.Pin(p)
		pinned.Add(1)
	}
	n, w := waitList(wait)
	if err := check(do(b, n, w, &ev)); err != nil {
		if pin != nil {
			pin.Unpin()
			pinned.Add(-1)
		}
		return 0, fmt.Errorf("%s(%d bytes): %w", name, size, err)
	}
	live.Add(1)
	if pin != nil {
		pins.Store(ev, pin)
	}
	return ev, nil
}

// Wait waits for the events (zero events are skipped).
func Wait(evs ...Event) error {
	hostWaits.Add(1)
	return wait(evs)
}

// wait is Wait, not counted.
func wait(evs []Event) error {
	var w []Event
	for _, e := range evs {
		if e != 0 {
			w = append(w, e)
		}
	}
	if len(w) == 0 {
		return nil
	}
	if err := check(l().waitForEvents(uint32(len(w)), &w[0])); err != nil {
		return fmt.Errorf("clWaitForEvents: %w", err)
	}
	return nil
}

// Release waits for the event, unpins the host memory of its transfer and
// releases it. A zero event is ignored. The unpinning comes first: once
// released, the event's handle may be handed to a new event (of another
// goroutine's transfer, whose pin it would otherwise meet in pins).
func (e Event) Release() error {
	if e == 0 {
		return nil
	}
	werr := wait([]Event{e})
	if p, ok := pins.LoadAndDelete(e); ok {
		p.(*runtime.Pinner).Unpin()
		pinned.Add(-1)
	}
	live.Add(-1)
	err := check(l().releaseEvent(e))
	if werr != nil {
		return werr
	}
	return err
}

// Duration returns the event's execution time in nanoseconds, its
// profiling end less its start (its queue must have profiling enabled);
// an end before the start is an error, not a negative or wrapped time.
func (e Event) Duration() (int64, error) {
	var start, end uint64
	if err := check(l().getEventProfilingInfo(e, ProfilingStart, 8, unsafe.Pointer(&start), nil)); err != nil {
		return 0, err
	}
	if err := check(l().getEventProfilingInfo(e, ProfilingEnd, 8, unsafe.Pointer(&end), nil)); err != nil {
		return 0, err
	}
	if end < start || end-start > math.MaxInt64 {
		return 0, fmt.Errorf("cl: an event's profiling times run backwards or overflow (start %d ns, end %d ns)", start, end)
	}
	return int64(end - start), nil
}
