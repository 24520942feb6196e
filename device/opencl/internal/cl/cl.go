// Package cl is xent's thin OpenCL 1.2 binding, loaded at run time with
// purego: no cgo, and a binary built once runs on hosts with and without
// OpenCL. It loads the ICD loader (libOpenCL.so.1 on Linux, OpenCL.dll on
// Windows, Apple's OpenCL framework on macOS: dl.OpenCL; vendor
// libraries such as libpocl.so do not export the cl* names), or the
// library named by XENT_OPENCL_LIB.
//
// Every status code becomes a Status error that names it; a failed build
// returns a *BuildError carrying the build log and options. Objects are
// counted: Live reports how many created objects are not yet released.
package cl

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/ebitengine/purego"

	"github.com/xentlab/xent/internal/dl"
)

// Handles are opaque pointers owned by the OpenCL runtime.
type (
	Platform uintptr
	Device   uintptr
	Context  uintptr
	Queue    uintptr
	Mem      uintptr
	Program  uintptr
	Kernel   uintptr
	Event    uintptr
)

// Device types and info names used by xent.
const (
	DeviceTypeCPU         = 1 << 1
	DeviceTypeGPU         = 1 << 2
	DeviceTypeAccelerator = 1 << 3
	DeviceTypeAll         = 0xFFFFFFFF

	PlatformName    = 0x0902
	PlatformVersion = 0x0901

	DeviceType             = 0x1000
	DeviceMaxComputeUnits  = 0x1002
	DeviceMaxWorkGroupSize = 0x1004
	DeviceMaxWorkItemSizes = 0x1005
	DeviceMaxMemAllocSize  = 0x1010
	DeviceGlobalMemSize    = 0x101F
	DeviceLocalMemSize     = 0x1023
	DeviceName             = 0x102B
	DriverVersion          = 0x102D
	DeviceOpenCLCVersion   = 0x103D
	DeviceExtensions       = 0x1030

	MemReadWrite    = 1 << 0
	MemAllocHostPtr = 1 << 4

	MapRead  = 1 << 0
	MapWrite = 1 << 1

	ProgramBuildLog = 0x1183

	KernelWorkGroupSize = 0x11B0
	KernelLocalMemSize  = 0x11B2

	MemSize = 0x1102

	QueueProfilingEnable = 1 << 1
	ProfilingStart       = 0x1282
	ProfilingEnd         = 0x1283
)

// lib holds the loaded entry points.
type lib struct {
	getPlatformIDs          func(n uint32, p *Platform, nret *uint32) int32
	getPlatformInfo         func(p Platform, param uint32, size uintptr, v unsafe.Pointer, sret *uintptr) int32
	getDeviceIDs            func(p Platform, typ uint64, n uint32, d *Device, nret *uint32) int32
	getDeviceInfo           func(d Device, param uint32, size uintptr, v unsafe.Pointer, sret *uintptr) int32
	createContext           func(props unsafe.Pointer, n uint32, d *Device, pfn, user uintptr, err *int32) Context
	releaseContext          func(c Context) int32
	createCommandQueue      func(c Context, d Device, props uint64, err *int32) Queue
	releaseCommandQueue     func(q Queue) int32
	createBuffer            func(c Context, flags uint64, size uintptr, host unsafe.Pointer, err *int32) Mem
	releaseMemObject        func(m Mem) int32
	getMemObjectInfo        func(m Mem, param uint32, size uintptr, v unsafe.Pointer, sret *uintptr) int32
	createProgramWithSource func(c Context, n uint32, src **byte, lens *uintptr, err *int32) Program
	buildProgram            func(p Program, n uint32, d *Device, opts *byte, pfn, user uintptr) int32
	getProgramBuildInfo     func(p Program, d Device, param uint32, size uintptr, v unsafe.Pointer, sret *uintptr) int32
	releaseProgram          func(p Program) int32
	createKernel            func(p Program, name *byte, err *int32) Kernel
	releaseKernel           func(k Kernel) int32
	setKernelArg            func(k Kernel, i uint32, size uintptr, v unsafe.Pointer) int32
	getKernelWorkGroupInfo  func(k Kernel, d Device, param uint32, size uintptr, v unsafe.Pointer, sret *uintptr) int32
	enqueueNDRangeKernel    func(q Queue, k Kernel, dim uint32, off, global, local *uintptr, nwait uint32, wait *Event, ev *Event) int32
	enqueueWriteBuffer      func(q Queue, m Mem, blocking uint32, off, size uintptr, p unsafe.Pointer, nwait uint32, wait *Event, ev *Event) int32
	enqueueReadBuffer       func(q Queue, m Mem, blocking uint32, off, size uintptr, p unsafe.Pointer, nwait uint32, wait *Event, ev *Event) int32
	enqueueReadBufferRect   rectFn
	enqueueWriteBufferRect  rectFn
	enqueueMapBuffer        func(q Queue, m Mem, blocking uint32, flags uint64, off, size uintptr, nwait uint32, wait *Event, ev *Event, err *int32) unsafe.Pointer
	enqueueUnmapMemObject   func(q Queue, m Mem, p unsafe.Pointer, nwait uint32, wait *Event, ev *Event) int32
	flush                   func(q Queue) int32
	finish                  func(q Queue) int32
	waitForEvents           func(n uint32, evs *Event) int32
	releaseEvent            func(e Event) int32
	getEventProfilingInfo   func(e Event, param uint32, size uintptr, v unsafe.Pointer, sret *uintptr) int32
}

// rectFn is clEnqueueReadBufferRect's and clEnqueueWriteBufferRect's type.
type rectFn = func(q Queue, m Mem, blocking uint32, bufOrigin, hostOrigin, region *uintptr,
	bufRowPitch, bufSlicePitch, hostRowPitch, hostSlicePitch uintptr, p unsafe.Pointer, nwait uint32, wait *Event, ev *Event) int32

var (
	loadOnce sync.Once
	loaded   *lib
	loadErr  error
	live     atomic.Int64
)

// ErrNoLibrary wraps the reason OpenCL could not be loaded.
var ErrNoLibrary = errors.New("cl: no OpenCL library")

// Load loads the OpenCL library once ($XENT_OPENCL_LIB, else the ICD
// loader's names on this system: dl.OpenCL); later calls return the same
// result.
func Load() error {
	loadOnce.Do(func() { loaded, loadErr = load(os.Getenv("XENT_OPENCL_LIB")) })
	return loadErr
}

// load opens the library (name, else dl.OpenCL's names) and binds its
// functions. purego.RegisterFunc panics only on a function type it
// cannot call, which the lib fields fix at compile time (any test that
// loads OpenCL would show it); a missing symbol is an error naming it.
func load(name string) (*lib, error) {
	h, name, err := dl.OpenFirst(dl.OpenCL, name)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoLibrary, err)
	}
	l := &lib{}
	syms := []struct {
		fptr any
		name string
	}{
		{&l.getPlatformIDs, "clGetPlatformIDs"}, {&l.getPlatformInfo, "clGetPlatformInfo"},
		{&l.getDeviceIDs, "clGetDeviceIDs"}, {&l.getDeviceInfo, "clGetDeviceInfo"},
		{&l.createContext, "clCreateContext"}, {&l.releaseContext, "clReleaseContext"},
		{&l.createCommandQueue, "clCreateCommandQueue"}, {&l.releaseCommandQueue, "clReleaseCommandQueue"},
		{&l.createBuffer, "clCreateBuffer"}, {&l.releaseMemObject, "clReleaseMemObject"},
		{&l.getMemObjectInfo, "clGetMemObjectInfo"},
		{&l.createProgramWithSource, "clCreateProgramWithSource"}, {&l.buildProgram, "clBuildProgram"},
		{&l.getProgramBuildInfo, "clGetProgramBuildInfo"}, {&l.releaseProgram, "clReleaseProgram"},
		{&l.createKernel, "clCreateKernel"}, {&l.releaseKernel, "clReleaseKernel"},
		{&l.setKernelArg, "clSetKernelArg"}, {&l.getKernelWorkGroupInfo, "clGetKernelWorkGroupInfo"},
		{&l.enqueueNDRangeKernel, "clEnqueueNDRangeKernel"},
		{&l.enqueueWriteBuffer, "clEnqueueWriteBuffer"}, {&l.enqueueReadBuffer, "clEnqueueReadBuffer"},
		{&l.enqueueReadBufferRect, "clEnqueueReadBufferRect"}, {&l.enqueueWriteBufferRect, "clEnqueueWriteBufferRect"},
		{&l.enqueueMapBuffer, "clEnqueueMapBuffer"}, {&l.enqueueUnmapMemObject, "clEnqueueUnmapMemObject"},
		{&l.flush, "clFlush"}, {&l.finish, "clFinish"},
		{&l.waitForEvents, "clWaitForEvents"}, {&l.releaseEvent, "clReleaseEvent"},
		{&l.getEventProfilingInfo, "clGetEventProfilingInfo"},
	}
	for _, s := range syms {
		p, err := dl.Sym(h, s.name)
		if err != nil {
			return nil, fmt.Errorf("%w: %s lacks %s", ErrNoLibrary, name, s.name)
		}
		purego.RegisterFunc(s.fptr, p)
	}
	return l, nil
}

// Live returns the number of OpenCL objects created and not yet released.
func Live() int64 { return live.Load() }

func check(st int32) error {
	if st == 0 {
		return nil
	}
	return Status(st)
}
