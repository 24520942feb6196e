// Package npyfile reads NumPy .npy files in row chunks for xent eval: the
// header is parsed with codeberg.org/sbinet/npyio, the data is read at its
// offset without loading the whole file, converted to float32 (from
// float16, float32 or float64) or int32 (from int32 or int64), C or
// Fortran order. Every error names the file and the problem.
package npyfile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"unsafe"

	"codeberg.org/sbinet/npyio/npy"

	"github.com/xentlab/xent/internal/half"
)

// maxHeader bounds the header a file may claim (NumPy writes < 64 KiB).
const maxHeader = 1 << 20

// File is an open .npy file.
type File struct {
	f       *os.File
	Path    string
	Dtype   string // as in the header: "<f4", ">i8", ...
	Shape   []int
	Fortran bool
	off     int64
	kind    byte // 'f' or 'i' or 'u' or 'b'...
	item    int
	order   binary.ByteOrder
	buf     []byte // reused by Rows: streaming holds one chunk of bytes
}

// counter counts the bytes the header parser reads.
type counter struct {
	r io.Reader
	n int64
}

func (c *counter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// Open opens path and checks its header against its size.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if st.IsDir() {
		f.Close()
		return nil, fmt.Errorf("%s: is a directory, not a .npy file", path)
	}
	nf, err := parse(f, path, st.Size())
	if err != nil {
		f.Close()
		return nil, err
	}
	return nf, nil
}

func parse(f *os.File, path string, size int64) (nf *File, err error) {
	if size == 0 {
		return nil, fmt.Errorf("%s: empty file, not a .npy file", path)
	}
	// Check the preamble before the parser allocates the header length it
	// claims (a hostile file may claim 4 GB).
	var pre [12]byte
	got, _ := f.ReadAt(pre[:], 0)
	if got < 10 || string(pre[:6]) != "\x93NUMPY" {
		return nil, fmt.Errorf("%s: not a .npy file (no NumPy magic string)", path)
	}
	hlen, start := int64(binary.LittleEndian.Uint16(pre[8:10])), int64(10)
	if pre[6] >= 2 {
		if got < 12 {
			return nil, fmt.Errorf("%s: truncated .npy header", path)
		}
		hlen, start = int64(binary.LittleEndian.Uint32(pre[8:12])), 12
	}
	if hlen > maxHeader || start+hlen > size {
		return nil, fmt.Errorf("%s: malformed .npy header: it claims %d bytes, the file holds %d", path, hlen, size)
	}
	c := &counter{r: io.NewSectionReader(f, 0, min(size, maxHeader))}
	defer func() { // the header parser can panic on malformed headers
		if r := recover(); r != nil {
			nf, err = nil, fmt.Errorf("%s: malformed .npy header", path)
		}
	}()
	r, err := npy.NewReader(c)
	if err != nil {
		if errors.Is(err, npy.ErrInvalidNumPyFormat) {
			return nil, fmt.Errorf("%s: not a .npy file (no NumPy magic string)", path)
		}
		return nil, fmt.Errorf("%s: malformed .npy header: %v", path, err)
	}
	h := r.Header
	nf = &File{f: f, Path: path, Dtype: strings.Trim(h.Descr.Type, "'\""), Shape: h.Descr.Shape, Fortran: h.Descr.Fortran, off: c.n}
	d := nf.Dtype
	if len(d) != 3 || !strings.Contains("<>|=", d[:1]) || !strings.Contains("fiub", d[1:2]) || d[2] < '1' || d[2] > '8' {
		return nil, fmt.Errorf("%s: unsupported dtype %q", path, d)
	}
	nf.kind, nf.item = d[1], int(d[2]-'0')
	nf.order = binary.LittleEndian
	if d[0] == '>' {
		nf.order = binary.BigEndian
	}
	n := int64(1)
	for _, s := range nf.Shape {
		if s < 0 || (s > 0 && n > math.MaxInt64/int64(s)/8) {
			return nil, fmt.Errorf("%s: impossible shape %v", path, nf.Shape)
		}
		n *= int64(s)
	}
	if need := nf.off + n*int64(nf.item); size < need {
		return nil, fmt.Errorf("%s: truncated: the header says shape %v of %s (%d bytes of data), the file holds %d", path, nf.Shape, d, n*int64(nf.item), size-nf.off)
	}
	return nf, nil
}

// Close closes the file.
func (f *File) Close() error { return f.f.Close() }

// TypeName names the dtype as NumPy does ("float32", "int64").
func (f *File) TypeName() string {
	names := map[byte]string{'f': "float", 'i': "int", 'u': "uint", 'b': "bool"}
	if f.kind == 'b' {
		return "bool"
	}
	return fmt.Sprintf("%s%d", names[f.kind], 8*f.item)
}

// Matrix checks that f holds a 2-D float16/32/64 array and returns its shape.
func (f *File) Matrix() (rows, cols int, err error) {
	if len(f.Shape) != 2 {
		return 0, 0, fmt.Errorf("%s: logits must be 2-D [rows × vocab], got %d-D shape %v", f.Path, len(f.Shape), f.Shape)
	}
	if f.kind != 'f' || (f.item != 2 && f.item != 4 && f.item != 8) {
		return 0, 0, fmt.Errorf("%s: logits must be float16, float32 or float64, got %s", f.Path, f.TypeName())
	}
	if f.Shape[0] > 0 && f.Shape[1] == 0 {
		return 0, 0, fmt.Errorf("%s: logits have %d rows of 0 classes", f.Path, f.Shape[0])
	}
	return f.Shape[0], f.Shape[1], nil
}

// native is this machine's byte order.
var native = func() binary.ByteOrder {
	if binary.NativeEndian.Uint16([]byte{1, 0}) == 1 {
		return binary.LittleEndian
	}
	return binary.BigEndian
}()

// Rows reads rows [lo, hi) of a 2-D float array into dst (len ≥
// (hi-lo)*cols) as float32.
func (f *File) Rows(dst []float32, lo, hi int) error {
	rows, cols := f.Shape[0], f.Shape[1]
	n := (hi - lo) * cols
	off := f.off + int64(lo)*int64(cols)*int64(f.item)
	if !f.Fortran && f.item == 4 && f.order == native && n > 0 {
		// float32 in this machine's byte order: straight into dst.
		if _, err := f.f.ReadAt(unsafe.Slice((*byte)(unsafe.Pointer(&dst[0])), 4*n), off); err != nil {
			return fmt.Errorf("%s: reading rows %d..%d: %w", f.Path, lo, hi, err)
		}
		return nil
	}
	if cap(f.buf) < n*f.item {
		f.buf = make([]byte, n*f.item)
	}
	buf := f.buf[:n*f.item]
	if !f.Fortran {
		if _, err := f.f.ReadAt(buf, off); err != nil {
			return fmt.Errorf("%s: reading rows %d..%d: %w", f.Path, lo, hi, err)
		}
		f.convert(dst[:n], buf)
		return nil
	}
	// Fortran order: column j holds rows contiguously.
	col := buf[:(hi-lo)*f.item]
	tmp := make([]float32, hi-lo)
	for j := range cols {
		if _, err := f.f.ReadAt(col, f.off+(int64(j)*int64(rows)+int64(lo))*int64(f.item)); err != nil {
			return fmt.Errorf("%s: reading column %d: %w", f.Path, j, err)
		}
		f.convert(tmp, col)
		for i, v := range tmp {
			dst[i*cols+j] = v
		}
	}
	return nil
}

func (f *File) convert(dst []float32, b []byte) {
	switch f.item {
	case 2:
		for i := range dst {
			dst[i] = half.F16(f.order.Uint16(b[2*i:]))
		}
	case 4:
		for i := range dst {
			dst[i] = math.Float32frombits(f.order.Uint32(b[4*i:]))
		}
	case 8:
		for i := range dst {
			dst[i] = float32(math.Float64frombits(f.order.Uint64(b[8*i:])))
		}
	}
}

// Targets reads a 1-D int32 or int64 array as int32; values outside the
// int32 range are an error.
func (f *File) Targets() ([]int32, error) {
	if len(f.Shape) != 1 {
		return nil, fmt.Errorf("%s: targets must be 1-D, got %d-D shape %v", f.Path, len(f.Shape), f.Shape)
	}
	if f.kind != 'i' || (f.item != 4 && f.item != 8) {
		return nil, fmt.Errorf("%s: targets must be int32 or int64, got %s", f.Path, f.TypeName())
	}
	n := f.Shape[0]
	buf := make([]byte, n*f.item)
	if _, err := f.f.ReadAt(buf, f.off); err != nil {
		return nil, fmt.Errorf("%s: reading targets: %w", f.Path, err)
	}
	t := make([]int32, n)
	for i := range t {
		if f.item == 4 {
			t[i] = int32(f.order.Uint32(buf[4*i:]))
			continue
		}
		v := int64(f.order.Uint64(buf[8*i:]))
		if v < math.MinInt32 || v > math.MaxInt32 {
			return nil, fmt.Errorf("%s: target %d at row %d is outside the int32 range", f.Path, v, i)
		}
		t[i] = int32(v)
	}
	return t, nil
}

// Vector reads a 1-D float array (class weights) as float32.
func (f *File) Vector() ([]float32, error) {
	if len(f.Shape) != 1 || f.kind != 'f' || (f.item != 2 && f.item != 4 && f.item != 8) {
		return nil, fmt.Errorf("%s: expected a 1-D float array, got %s of shape %v", f.Path, f.TypeName(), f.Shape)
	}
	n := f.Shape[0]
	buf := make([]byte, n*f.item)
	if _, err := f.f.ReadAt(buf, f.off); err != nil {
		return nil, fmt.Errorf("%s: %w", f.Path, err)
	}
	v := make([]float32, n)
	f.convert(v, buf)
	return v, nil
}

// Read opens path, reads it with read (File.Targets, File.Vector, ...) and
// closes it.
func Read[T any](path string, read func(*File) (T, error)) (T, error) {
	f, err := Open(path)
	if err != nil {
		var zero T
		return zero, err
	}
	defer f.Close()
	return read(f)
}

// IntMatrix reads a 2-D int32 or int64 array (C or Fortran order), what
// it holds named in errors, as row-major int32; values outside the int32
// range are an error naming their row and column.
func (f *File) IntMatrix(what string) (v []int32, rows, cols int, err error) {
	if len(f.Shape) != 2 || f.kind != 'i' || (f.item != 4 && f.item != 8) {
		return nil, 0, 0, fmt.Errorf("%s: %s must be a 2-D int32 or int64 array, got %s of shape %v", f.Path, what, f.TypeName(), f.Shape)
	}
	rows, cols = f.Shape[0], f.Shape[1]
	buf := make([]byte, rows*cols*f.item)
	if _, err := f.f.ReadAt(buf, f.off); err != nil {
		return nil, 0, 0, fmt.Errorf("%s: reading %s: %w", f.Path, what, err)
	}
	v = make([]int32, rows*cols)
	for i := range rows {
		for j := range cols {
			k := i*cols + j // the element's index in the file
			if f.Fortran {
				k = j*rows + i
			}
			x := int64(int32(f.order.Uint32(buf[4*k:])))
			if f.item == 8 {
				x = int64(f.order.Uint64(buf[8*k:]))
			}
			if x < math.MinInt32 || x > math.MaxInt32 {
				return nil, 0, 0, fmt.Errorf("%s: %s: %d at row %d, column %d is outside the int32 range", f.Path, what, x, i, j)
			}
			v[i*cols+j] = int32(x)
		}
	}
	return v, rows, cols, nil
}

// FloatMatrix reads a 2-D float16, float32 or float64 array (C or Fortran
// order), what it holds named in errors, as row-major float32.
func (f *File) FloatMatrix(what string) (v []float32, rows, cols int, err error) {
	if len(f.Shape) != 2 || f.kind != 'f' || (f.item != 2 && f.item != 4 && f.item != 8) {
		return nil, 0, 0, fmt.Errorf("%s: %s must be a 2-D float16, float32 or float64 array, got %s of shape %v", f.Path, what, f.TypeName(), f.Shape)
	}
	rows, cols = f.Shape[0], f.Shape[1]
	v = make([]float32, rows*cols)
	if rows*cols > 0 {
		err = f.Rows(v, 0, rows)
	}
	return v, rows, cols, err
}
