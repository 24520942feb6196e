package npyfile

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/xentlab/xent/internal/mapped"
)

// Map maps the file and returns its float32 matrix (Matrix, Stack) in place, without
// reading or copying it, and a function that unmaps it, when the data is
// float32 in this machine's byte order, C order and aligned (NumPy aligns
// the data to 64 bytes); otherwise an error, and the caller reads with
// Rows (and on a system that maps no files: mapped.Supported). The pages
// come from the page cache as the kernels touch them (the system is told
// the access is sequential). The slice is read-only: a write faults. A
// file truncated while it is mapped makes later reads fault (SIGBUS), as
// with any mapped file on Unix; Windows refuses to truncate it.
func (f *File) Map() ([]float32, func() error, error) { return mapAs[float32](f) }

// MapF16 is Map for a native-order C float16 matrix: its 16-bit elements.
func (f *File) MapF16() ([]uint16, func() error, error) {
	if f.bf16 {
		return nil, nil, errors.New("bfloat16, not float16")
	}
	return mapAs[uint16](f)
}

// MapBF16 is Map for a native-order C bfloat16 matrix (a .pt's).
func (f *File) MapBF16() ([]uint16, func() error, error) {
	if !f.bf16 {
		return nil, nil, errors.New("not bfloat16")
	}
	return mapAs[uint16](f)
}

// mapAs maps the file's elements as T, float32 or uint16 (float16), when
// they are native-order C floats of T's size.
func mapAs[T float32 | uint16](f *File) ([]T, func() error, error) {
	item := int(unsafe.Sizeof(*new(T)))
	if len(f.Shape) < 2 || f.Fortran || f.kind != 'f' || f.item != item || f.order != native {
		return nil, nil, fmt.Errorf("not native-order C float%d", 8*item)
	}
	rows, cols := f.dims()
	n := rows * cols
	if n == 0 || f.off%int64(item) != 0 {
		return nil, nil, errors.New("empty or unaligned")
	}
	size := f.off + int64(item)*int64(n)
	if int64(int(size)) != size {
		return nil, nil, errors.New("too large to map")
	}
	b, unmap, err := mapped.Map(f.f, int(size), true)
	if err != nil {
		return nil, nil, err
	}
	return unsafe.Slice((*T)(unsafe.Pointer(&b[f.off])), n), unmap, nil
}
