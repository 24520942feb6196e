// Package npyfile reads NumPy .npy files in row chunks for xent eval: the
// header is parsed with codeberg.org/sbinet/npyio, the data is read at its
// offset without loading the whole file, converted to float32 (from
// float16, float32 or float64) or int32 (from any integer type), C or
// Fortran order. An array of a .npz archive (NumPy's savez and
// savez_compressed), named "archive.npz:name", is read as a .npy file:
// in place when stored, decompressed into a temporary file when
// compressed; so is a C-contiguous tensor of a PyTorch file (torch.save),
// "file.pt:name" (pt.go). Every error names the file and the problem.
package npyfile

import (
	"archive/zip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strconv"
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
	tmp     string // the file f is, removed by Close: a compressed array, decompressed ("": none)
	Path    string // the path, or "archive.npz:name"
	Dtype   string // as in the header: "<f4", ">i8", ...
	Shape   []int
	Fortran bool
	off     int64
	kind    byte // 'f' or 'i' or 'u' or 'b'...
	item    int
	order   binary.ByteOrder
	bf16    bool   // 2-byte floats are bfloat16 (a .pt's), not float16
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

// Open opens path and checks its header against its size: a .npy file,
// or an array of a .npz archive, "archive.npz:name" (or "archive.npz" when
// it holds one array), or a tensor of a PyTorch file, "file.pt:name" (or
// .pth; "file.pt" for a tensor alone, or a dict of one).
func Open(path string) (*File, error) { return OpenOr(path, "") }

// OpenOr is Open that takes the array named def from an archive of
// several when path names none ("logits" for xent eval).
func OpenOr(path, def string) (*File, error) {
	file, name, archive := ArchiveSpec(path)
	if archive == "" {
		file = path
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	kind := map[string]string{"": ".npy file", ".npz": ".npz archive", ".pt": "PyTorch file"}[archive]
	if st.IsDir() {
		f.Close()
		return nil, fmt.Errorf("%s: is a directory, not a %s", file, kind)
	}
	var nf *File
	switch archive {
	case ".npz":
		nf, err = openNpz(f, file, name, def, st.Size())
	case ".pt":
		nf, err = openPt(f, file, name, def, st.Size())
	default:
		nf, err = parse(f, path, 0, st.Size())
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return nf, nil
}

// ArchiveSpec splits "x.npz[:name]" (archive ".npz") and "x.pt[:name]",
// "x.pth[:name]" or "x.bin[:name]" (archive ".pt": Hugging Face's
// pytorch_model.bin is torch.save's); archive is "" for any other spec.
func ArchiveSpec(spec string) (path, name, archive string) {
	for _, ext := range []string{".npz", ".pt", ".pth", ".bin"} {
		i := strings.LastIndex(spec, ext)
		if i < 0 {
			continue
		}
		path, rest := spec[:i+len(ext)], spec[i+len(ext):]
		kind := map[bool]string{true: ".npz", false: ".pt"}[ext == ".npz"]
		switch {
		case rest == "":
			return path, "", kind
		case rest[0] == ':':
			return path, rest[1:], kind
		}
	}
	return "", "", ""
}

// Arrays returns the names of the arrays of the .npz archive (or the
// tensors of the PyTorch file) at path.
func Arrays(path string) ([]string, error) {
	zr, err := zip.OpenReader(path)
	if err != nil {
		return nil, fmt.Errorf("%s: not a .npz archive or PyTorch file: %v", path, err)
	}
	defer zr.Close()
	if _, _, a := ArchiveSpec(path); a == ".pt" {
		ts, _, err := ptTensors(&zr.Reader, path)
		if err != nil {
			return nil, err
		}
		return slices.Sorted(maps.Keys(ts)), nil
	}
	return arrays(zr.File), nil
}

func arrays(fs []*zip.File) []string {
	names := make([]string, len(fs))
	for k, e := range fs {
		names[k] = strings.TrimSuffix(e.Name, ".npy")
	}
	return names
}

// openNpz opens the array name (def, or the only one, when "") of the
// .npz archive f at path: in place when stored, else decompressed into a
// temporary file. It closes f when it returns another file.
func openNpz(f *os.File, path, name, def string, size int64) (*File, error) {
	zr, err := zip.NewReader(f, size)
	if err != nil {
		return nil, fmt.Errorf("%s: not a .npz archive: %v", path, err)
	}
	names := arrays(zr.File)
	want, err := choose(path, names, name, def, "array")
	if err != nil {
		return nil, err
	}
	k := slices.Index(names, want)
	e, spec := zr.File[k], path+":"+want
	if e.Method == zip.Store {
		off, err := e.DataOffset()
		if err != nil {
			return nil, fmt.Errorf("%s: malformed .npz entry: %v", spec, err)
		}
		if n := int64(e.UncompressedSize64); n < 0 || e.CompressedSize64 != e.UncompressedSize64 || off > size || n > size-off {
			return nil, fmt.Errorf("%s: malformed .npz entry: %d bytes at %d of a file of %d", spec, e.UncompressedSize64, off, size)
		}
		return parse(f, spec, off, int64(e.UncompressedSize64))
	}
	rc, err := e.Open()
	if err != nil {
		return nil, fmt.Errorf("%s: %v", spec, err)
	}
	defer rc.Close()
	tmp, err := os.CreateTemp("", "xent-npz-*.npy")
	if err != nil {
		return nil, fmt.Errorf("%s: a temporary file to decompress it into: %w", spec, err)
	}
	var nf *File
	n, err := io.Copy(tmp, rc) // archive/zip checks the size and the CRC-32 at the end
	if err != nil {
		err = fmt.Errorf("%s: decompressing: %v", spec, err)
	} else {
		nf, err = parse(tmp, spec, 0, n)
	}
	if err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return nil, err
	}
	f.Close()
	nf.tmp = tmp.Name()
	return nf, nil
}

// choose returns the name among an archive's names that a spec's name,
// else def, else the only one picks (noun: "array" or "tensor"), or an
// error naming file.
func choose(file string, names []string, name, def, noun string) (string, error) {
	want := name
	if want == "" && len(names) == 1 {
		want = names[0] // "" for a .pt's tensor alone
	} else if want == "" && slices.Contains(names, def) {
		want = def
	}
	switch {
	case len(names) == 0:
		return "", fmt.Errorf("%s: holds no %s", file, noun)
	case slices.Contains(names, want):
		return want, nil
	case name == "":
		return "", fmt.Errorf("%s: holds %d %ss (%s): name one, %s:NAME", file, len(names), noun, list(names), file)
	case names[0] == "":
		return "", fmt.Errorf("%s: no %s %q (it holds a %s alone: name none)", file, noun, want, noun)
	}
	return "", fmt.Errorf("%s: no %s %q (it holds %s)", file, noun, want, list(names))
}

// list names up to 8 arrays.
func list(names []string) string {
	if len(names) > 8 {
		return strings.Join(names[:8], ", ") + fmt.Sprintf(", ... (%d in all)", len(names))
	}
	return strings.Join(names, ", ")
}

// parse checks the .npy array of size bytes at base in f (the file, or a
// .npz archive's entry) and returns it open.
func parse(f *os.File, path string, base, size int64) (nf *File, err error) {
	if size == 0 {
		return nil, fmt.Errorf("%s: empty file, not a .npy file", path)
	}
	// Check the preamble before the parser allocates the header length it
	// claims (a hostile file may claim 4 GB).
	var pre [12]byte
	got, _ := f.ReadAt(pre[:min(12, size)], base)
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
	c := &counter{r: io.NewSectionReader(f, base, min(size, maxHeader))}
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
	nf = &File{f: f, Path: path, Dtype: strings.Trim(h.Descr.Type, "'\""), Shape: h.Descr.Shape, Fortran: h.Descr.Fortran, off: base + c.n}
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
	if need := c.n + n*int64(nf.item); size < need {
		return nil, fmt.Errorf("%s: truncated: the header says shape %v of %s (%d bytes of data), the file holds %d", path, nf.Shape, d, n*int64(nf.item), size-c.n)
	}
	return nf, nil
}

// Close closes the file (and removes a decompressed array's).
func (f *File) Close() error {
	err := f.f.Close()
	if f.tmp != "" {
		os.Remove(f.tmp)
	}
	return err
}

// TypeName names the dtype as NumPy does ("float32", "int64").
func (f *File) TypeName() string {
	if f.bf16 {
		return "bfloat16"
	}
	names := map[byte]string{'f': "float", 'i': "int", 'u': "uint", 'b': "bool"}
	if f.kind == 'b' {
		return "bool"
	}
	return fmt.Sprintf("%s%d", names[f.kind], 8*f.item)
}

// Matrix checks that f holds a 2-D float16/32/64 array and returns its shape.
func (f *File) Matrix() (rows, cols int, err error) { return f.matrix(false) }

// Stack is Matrix for an array of rows of any rank ≥ 2, [d₀ × … × dₖ ×
// cols] (a language model's [batch × sequence × vocab]): its rows are its
// leading dimensions flattened, d₀·…·dₖ of them in C order, the order its
// bytes already have (Rows and Map read them so). Only a 2-D array may be
// in Fortran order: a deeper one's rows are not contiguous.
func (f *File) Stack() (rows, cols int, err error) { return f.matrix(true) }

// matrix is Matrix, or Stack with stack true.
func (f *File) matrix(stack bool) (rows, cols int, err error) {
	switch {
	case stack && len(f.Shape) < 2:
		return 0, 0, fmt.Errorf("%s: expected rows of values, 2-D [rows × cols] or more ([batch × sequence × cols]), got %d-D shape %v", f.Path, len(f.Shape), f.Shape)
	case !stack && len(f.Shape) != 2:
		return 0, 0, fmt.Errorf("%s: expected a 2-D [rows × cols] array, got %d-D shape %v", f.Path, len(f.Shape), f.Shape)
	case f.kind != 'f' || (f.item != 2 && f.item != 4 && f.item != 8):
		return 0, 0, fmt.Errorf("%s: expected float16, float32 or float64 values, got %s", f.Path, f.TypeName())
	case f.Fortran && len(f.Shape) > 2:
		return 0, 0, fmt.Errorf("%s: a %d-D array in Fortran order: its rows are not contiguous; save it in C order (numpy.ascontiguousarray)", f.Path, len(f.Shape))
	}
	rows, cols = f.dims()
	if rows > 0 && cols == 0 {
		return 0, 0, fmt.Errorf("%s: %d rows of 0 values (shape %v)", f.Path, rows, f.Shape)
	}
	return rows, cols, nil
}

// dims returns the rows and columns of an array of rank ≥ 2, its leading
// dimensions flattened.
func (f *File) dims() (rows, cols int) {
	rows = 1
	for _, d := range f.Shape[:len(f.Shape)-1] {
		rows *= d
	}
	return rows, f.Shape[len(f.Shape)-1]
}

// native is this machine's byte order.
var native = func() binary.ByteOrder {
	if binary.NativeEndian.Uint16([]byte{1, 0}) == 1 {
		return binary.LittleEndian
	}
	return binary.BigEndian
}()

// Rows reads rows [lo, hi) of a float array Matrix or Stack has checked
// into dst (len ≥ (hi-lo)*cols) as float32.
func (f *File) Rows(dst []float32, lo, hi int) error {
	rows, cols := f.dims()
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
		widen := half.F16
		if f.bf16 {
			widen = half.BF16
		}
		for i := range dst {
			dst[i] = widen(f.order.Uint16(b[2*i:]))
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

// Targets reads an integer array (int8 to int64, uint8 to uint64: token
// ids as a tokenizer's dump holds them, uint16 for a vocabulary under
// 65536) of any rank ≥ 1 (one target a row, as a Stack of rows has them:
// [batch × sequence] for [batch × sequence × vocab]) as int32, flattened
// in C order; a value outside the int32 range is an error naming its
// place.
func (f *File) Targets() ([]int32, error) {
	if len(f.Shape) < 1 {
		return nil, fmt.Errorf("%s: targets must be an array, one a row, got a scalar", f.Path)
	}
	if !f.integer() {
		return nil, fmt.Errorf("%s: targets must be integers (int64, int32, uint16, ...), got %s", f.Path, f.TypeName())
	}
	return f.ints("target")
}

// integer reports whether f holds signed or unsigned integers of 1, 2, 4
// or 8 bytes.
func (f *File) integer() bool {
	return (f.kind == 'i' || f.kind == 'u') && (f.item == 1 || f.item == 2 || f.item == 4 || f.item == 8)
}

// ints reads f's integer elements as int32 in C order (from either
// order), what an element is named in errors.
func (f *File) ints(what string) ([]int32, error) {
	buf, err := f.all()
	if err != nil {
		return nil, err
	}
	v := make([]int32, f.size())
	for p := range v {
		x := f.intAt(buf, f.at(p))
		if x < math.MinInt32 || x > math.MaxInt32 {
			return nil, fmt.Errorf("%s: %s %s at %s is outside the int32 range", f.Path, what, f.intText(buf, f.at(p)), Place(f.Shape, p))
		}
		v[p] = int32(x)
	}
	return v, nil
}

// intAt returns element k of buf, f's integer (or bool) elements, as
// Int does.
func (f *File) intAt(buf []byte, k int) int64 {
	return Int(buf[k*f.item:], f.order, f.item, f.kind == 'i')
}

// intText returns element k of buf, f's integer elements, in decimal.
func (f *File) intText(buf []byte, k int) string {
	return IntText(buf[k*f.item:], f.order, f.item, f.kind == 'i')
}

// floatAt returns element k of buf, f's integer (or bool) elements, as a
// float64.
func (f *File) floatAt(buf []byte, k int) float64 {
	if f.kind == 'i' {
		return float64(f.intAt(buf, k))
	}
	return float64(rawInt(buf[k*f.item:], f.order, f.item))
}

// Int returns the integer of size bytes (1, 2, 4 or 8) at the start of b,
// in order, signed or not, as an int64; an unsigned one past int64's
// range is math.MaxInt64 (IntText gives its value).
func Int(b []byte, order binary.ByteOrder, size int, signed bool) int64 {
	u := rawInt(b, order, size)
	switch {
	case signed: // sign-extend
		sh := 64 - 8*size
		return int64(u<<sh) >> sh
	case u > math.MaxInt64:
		return math.MaxInt64
	}
	return int64(u)
}

// IntText returns Int's integer in decimal.
func IntText(b []byte, order binary.ByteOrder, size int, signed bool) string {
	if signed {
		return strconv.FormatInt(Int(b, order, size, true), 10)
	}
	return strconv.FormatUint(rawInt(b, order, size), 10)
}

// rawInt returns the size bytes (1, 2, 4 or 8) at the start of b, in
// order, zero-extended.
func rawInt(b []byte, order binary.ByteOrder, size int) uint64 {
	switch size {
	case 1:
		return uint64(b[0])
	case 2:
		return uint64(order.Uint16(b))
	case 4:
		return uint64(order.Uint32(b))
	}
	return order.Uint64(b)
}

// all reads the bytes of every element.
func (f *File) all() ([]byte, error) {
	buf := make([]byte, f.size()*f.item)
	if _, err := f.f.ReadAt(buf, f.off); err != nil {
		return nil, fmt.Errorf("%s: reading its data: %w", f.Path, err)
	}
	return buf, nil
}

// size returns the number of elements.
func (f *File) size() int {
	n := 1
	for _, d := range f.Shape {
		n *= d
	}
	return n
}

// at returns where in the file the element at index p of the array in C
// order lies.
func (f *File) at(p int) int {
	if !f.Fortran || len(f.Shape) < 2 {
		return p
	}
	// p's digits in C order, from the last dimension; in Fortran order the
	// stride of dimension j is the product of those before it.
	k, after, total := 0, 1, f.size()
	for j := len(f.Shape) - 1; j >= 0; j-- {
		d := f.Shape[j]
		k += p % d * (total / (after * d))
		p /= d
		after *= d
	}
	return k
}

// Place names the element at index p in C order of an array of shape
// for a message: "row p" in a 1-D array, "[i, j, …]" (its index in each
// dimension) in a deeper one.
func Place(shape []int, p int) string {
	if len(shape) < 2 {
		return fmt.Sprintf("row %d", p)
	}
	idx := make([]string, len(shape))
	for j := len(shape) - 1; j >= 0; j-- {
		idx[j] = strconv.Itoa(p % shape[j])
		p /= shape[j]
	}
	return "[" + strings.Join(idx, ", ") + "]"
}

// Vector reads a 1-D float array (class weights) as float32.
func (f *File) Vector() ([]float32, error) {
	if len(f.Shape) != 1 || f.kind != 'f' || (f.item != 2 && f.item != 4 && f.item != 8) {
		return nil, fmt.Errorf("%s: expected a 1-D float array, got %s of shape %v", f.Path, f.TypeName(), f.Shape)
	}
	return f.floats()
}

// Flat reads an array of any rank ≥ 1, one value a row as Targets has
// them (token weights: [batch × sequence]), as float32 flattened in C
// order: floats, or integers and bools (an attention mask as it is).
func (f *File) Flat() ([]float32, error) {
	if len(f.Shape) < 1 || (f.kind == 'f' && f.item != 2 && f.item != 4 && f.item != 8) {
		return nil, fmt.Errorf("%s: expected a float (or integer) array, one value a row, got %s of shape %v", f.Path, f.TypeName(), f.Shape)
	}
	if f.kind == 'f' {
		return f.floats()
	}
	buf, err := f.all()
	if err != nil {
		return nil, err
	}
	v := make([]float32, f.size())
	for p := range v {
		v[p] = float32(f.floatAt(buf, f.at(p)))
	}
	return v, nil
}

// floats reads f's float elements as float32 in C order (from either
// order).
func (f *File) floats() ([]float32, error) {
	buf, err := f.all()
	if err != nil {
		return nil, err
	}
	n := f.size()
	v := make([]float32, n)
	f.convert(v, buf)
	if f.Fortran && len(f.Shape) > 1 {
		w := make([]float32, n)
		for p := range w {
			w[p] = v[f.at(p)]
		}
		v = w
	}
	return v, nil
}

// Read opens path, reads it with read (File.Targets, File.Vector, ...) and
// closes it.
func Read[T any](path string, read func(*File) (T, error)) (T, error) {
	v, _, err := ReadShaped(path, read)
	return v, err
}

// ReadShaped is Read that also returns the array's shape.
func ReadShaped[T any](path string, read func(*File) (T, error)) (T, []int, error) {
	f, err := Open(path)
	if err != nil {
		var zero T
		return zero, nil, err
	}
	defer f.Close()
	v, err := read(f)
	return v, f.Shape, err
}

// IntMatrix reads an integer array (as Targets) of rows × cols, 2-D or more
// (as Stack: [batch × sequence × k]; C or Fortran order), what it holds
// named in errors, as row-major int32; values outside the int32 range are
// an error naming their place.
func (f *File) IntMatrix(what string) (v []int32, rows, cols int, err error) {
	if len(f.Shape) < 2 || !f.integer() {
		return nil, 0, 0, fmt.Errorf("%s: %s must be an integer array of rows (int64, int32, ...), 2-D or more, got %s of shape %v", f.Path, what, f.TypeName(), f.Shape)
	}
	rows, cols = f.dims()
	v, err = f.ints(what)
	return v, rows, cols, err
}

// FloatMatrix reads a float16, float32 or float64 array of rows × cols
// (as Stack), what it holds named in errors, as row-major float32.
func (f *File) FloatMatrix(what string) (v []float32, rows, cols int, err error) {
	if rows, cols, err = f.Stack(); err != nil {
		return nil, 0, 0, fmt.Errorf("%w (%s)", err, what)
	}
	v = make([]float32, rows*cols)
	if rows*cols > 0 {
		err = f.Rows(v, 0, rows)
	}
	return v, rows, cols, err
}

// WriteF32 writes data, float32 of the given shape in C order, to w as a
// .npy file (version 1, little-endian), its data aligned to 64 bytes as
// NumPy aligns it, so that Map maps it. A shape of no dimensions is a
// scalar.
func WriteF32(w io.Writer, shape []int, data []float32) error {
	n := 1
	dims := make([]string, len(shape))
	for j, d := range shape {
		n *= d
		dims[j] = strconv.Itoa(d)
	}
	if n != len(data) {
		return fmt.Errorf("npyfile: %d values for shape %v", len(data), shape)
	}
	tuple := strings.Join(dims, ", ")
	if len(shape) == 1 {
		tuple += ","
	}
	h := "{'descr': '<f4', 'fortran_order': False, 'shape': (" + tuple + "), }"
	h += strings.Repeat(" ", 63-(10+len(h))%64) + "\n"
	if len(h) > 0xffff {
		return fmt.Errorf("npyfile: a header of %d bytes for shape %v", len(h), shape)
	}
	b := make([]byte, 0, 10+len(h)+4*min(n, 1<<16))
	b = append(b, "\x93NUMPY\x01\x00"...)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(h)))
	b = append(b, h...)
	for len(data) > 0 { // in pieces of 64 K values: no copy of a large array whole
		k := min(len(data), 1<<16)
		for _, v := range data[:k] {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
		b, data = b[:0], data[k:]
	}
	if len(b) > 0 {
		_, err := w.Write(b)
		return err
	}
	return nil
}
