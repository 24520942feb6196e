package mapped

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"
)

// Supported reports whether this system maps files.
const Supported = true

func mapFile(f *os.File, size int, _ bool) ([]byte, func() error, error) {
	fh := syscall.Handle(f.Fd())
	if fh == syscall.InvalidHandle { // a closed file: CreateFileMapping would map the paging file instead
		return nil, nil, fmt.Errorf("%s: not an open file", f.Name())
	}
	n := uint64(size)
	h, err := syscall.CreateFileMapping(fh, nil, syscall.PAGE_READONLY, uint32(n>>32), uint32(n), nil)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: CreateFileMapping: %w", f.Name(), err)
	}
	addr, err := syscall.MapViewOfFile(h, syscall.FILE_MAP_READ, 0, 0, uintptr(size))
	syscall.CloseHandle(h) // the view keeps the mapping
	if addr == 0 {
		return nil, nil, fmt.Errorf("%s: MapViewOfFile: %w", f.Name(), err)
	}
	b := unsafe.Slice((*byte)(*(*unsafe.Pointer)(unsafe.Pointer(&addr))), size)
	return b, func() error { return syscall.UnmapViewOfFile(addr) }, nil
}
