//go:build unix

package npyfile

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Map maps the file and returns its 2-D float32 matrix in place, without
// reading or copying it, and a function that unmaps it, when the data is
// float32 in this machine's byte order, C order and aligned (NumPy aligns
// the data to 64 bytes); otherwise an error, and the caller reads with
// Rows. The pages come from the page cache as the kernels touch them (the
// kernel is told the access is sequential). The slice is read-only: a
// write faults. A file truncated while it is mapped makes later reads
// fault (SIGBUS), as with any mapped file.
func (f *File) Map() ([]float32, func() error, error) {
	if len(f.Shape) != 2 || f.Fortran || f.kind != 'f' || f.item != 4 || f.order != native {
		return nil, nil, errors.New("not native-order C float32")
	}
	n := f.Shape[0] * f.Shape[1]
	if n == 0 || f.off%4 != 0 {
		return nil, nil, errors.New("empty or unaligned")
	}
	size := f.off + 4*int64(n)
	if int64(int(size)) != size {
		return nil, nil, errors.New("too large to map")
	}
	b, err := unix.Mmap(int(f.f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: mmap: %w", f.Path, err)
	}
	_ = unix.Madvise(b, unix.MADV_SEQUENTIAL)
	_ = unix.Madvise(b, unix.MADV_WILLNEED)
	data := unsafe.Slice((*float32)(unsafe.Pointer(&b[f.off])), n)
	return data, func() error { return unix.Munmap(b) }, nil
}
