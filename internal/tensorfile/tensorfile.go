// Package tensorfile reads a 2-D tensor as float32 from a .npy file
// (internal/npyfile: float16, float32, float64) or from a tensor of a
// .safetensors file (github.com/nlpodyssey/safetensors: the format of
// Hugging Face checkpoints; F32, BF16 or F16), named
// "file.safetensors:name". The library checks a .safetensors header (its
// length against the file, offsets in range, contiguous and not
// overlapping, each tensor's bytes against its shape and dtype); every
// error names the file and the problem.
package tensorfile

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"
	"unsafe"

	"github.com/nlpodyssey/safetensors"

	"github.com/xentlab/xent/internal/half"
	"github.com/xentlab/xent/internal/npyfile"
)

// Matrix reads the matrix spec names: a .npy path, or a .safetensors path
// with ":tensor" (which may be left out when the file holds one tensor).
// It returns the rows × cols values, row-major.
func Matrix(spec string) (data []float32, rows, cols int, err error) { return MatrixOr(spec, "") }

// MatrixOr is Matrix that takes the tensor named def from a .safetensors
// file of several when spec names none ("logits" for xent eval).
func MatrixOr(spec, def string) (data []float32, rows, cols int, err error) {
	if path, name, ok := safetensorsSpec(spec); ok {
		return readSafetensors(path, name, def)
	}
	f, err := npyfile.OpenOr(spec, def)
	if err != nil {
		return nil, 0, 0, err
	}
	defer f.Close()
	if rows, cols, err = f.Matrix(); err != nil {
		return nil, 0, 0, err
	}
	data = make([]float32, rows*cols)
	if err := f.Rows(data, 0, rows); err != nil {
		return nil, 0, 0, err
	}
	return data, rows, cols, nil
}

// safetensorsSpec splits "x.safetensors[:name]".
func safetensorsSpec(spec string) (path, name string, ok bool) {
	const ext = ".safetensors"
	i := strings.LastIndex(spec, ext)
	if i < 0 {
		return "", "", false
	}
	path, rest := spec[:i+len(ext)], spec[i+len(ext):]
	switch {
	case rest == "":
		return path, "", true
	case rest[0] == ':':
		return path, rest[1:], true
	}
	return "", "", false
}

// FilePath returns the file a spec names: the path of a .safetensors,
// .npz, .pt or checkpoint spec without its ":tensor", any other spec as it
// is.
func FilePath(spec string) string {
	if path, _, ok := safetensorsSpec(spec); ok {
		return path
	}
	if path, _, a := npyfile.ArchiveSpec(spec); a != "" {
		return path
	}
	if path, _, kind := checkpointSpec(spec); kind != "" {
		return path
	}
	return spec
}

// IsSafetensors reports whether spec names a .safetensors file (with or
// without a tensor).
func IsSafetensors(spec string) bool {
	_, _, ok := safetensorsSpec(spec)
	return ok
}

// HoldsTargets reports whether spec names a file that may hold targets
// beside the logits (Targets): a .safetensors file, a .npz archive or a
// PyTorch file.
func HoldsTargets(spec string) bool {
	_, _, a := npyfile.ArchiveSpec(spec)
	return a != "" || IsSafetensors(spec)
}

func readSafetensors(path, name, def string) ([]float32, int, int, error) {
	t, err := ReadSafetensors(path+":"+name, def)
	if err != nil {
		return nil, 0, 0, err
	}
	if t.Half == nil {
		return t.F32, t.Rows, t.Cols, nil
	}
	data := make([]float32, len(t.Half))
	widen := half.F16
	if t.BF16 {
		widen = half.BF16
	}
	for k, v := range t.Half {
		data[k] = widen(v)
	}
	return data, t.Rows, t.Cols, nil
}

// Read reads the matrix spec names (as Matrix) in its file's element
// type where it is a half-precision one: a .safetensors tensor (mapped,
// see MapSafetensors) or a native-order C float16 .npy (mapped); done
// unmaps them (call it when the tensor is no longer used). The tensor is
// read-only. Other .npy dtypes are read as float32.
func Read(spec, def string) (t Tensor, done func(), err error) { return read(spec, def, false) }

// ReadRows is Read for a tensor of rows of any rank ≥ 2 (hidden states
// [batch × sequence × features]): its leading dimensions, flattened, are
// its rows (Tensor.Lead), in C order, the order of its bytes.
func ReadRows(spec, def string) (t Tensor, done func(), err error) { return read(spec, def, true) }

func read(spec, def string, stack bool) (t Tensor, done func(), err error) {
	done = func() {}
	if IsSafetensors(spec) {
		return safetensorsTensor(spec, def, true, stack)
	}
	f, err := npyfile.OpenOr(spec, def)
	if err != nil {
		return t, done, err
	}
	defer f.Close()
	shape := (*npyfile.File).Matrix
	if stack {
		shape = (*npyfile.File).Stack
	}
	if t.Rows, t.Cols, err = shape(f); err != nil {
		return t, done, err
	}
	t.Lead = f.Shape[:len(f.Shape)-1]
	if bits, unmap, err := f.MapF16(); err == nil {
		t.Half = bits
		return t, func() { unmap() }, nil
	}
	if bits, unmap, err := f.MapBF16(); err == nil { // a .pt's
		t.Half, t.BF16 = bits, true
		return t, func() { unmap() }, nil
	}
	t.F32 = make([]float32, t.Rows*t.Cols)
	return t, done, f.Rows(t.F32, 0, t.Rows)
}

// Tensor is a 2-D tensor, rows × cols row-major, in its file's element
// type: F32 holds a float32 one, Half the 16-bit elements of a bfloat16
// (BF16 true) or float16 one. Lead is the file's shape less its last
// dimension: [Rows] for a 2-D tensor, [batch, sequence] for the rows of
// a [batch × sequence × cols] one (ReadRows, MapRows).
type Tensor struct {
	Rows, Cols int
	Lead       []int
	F32        []float32
	Half       []uint16
	BF16       bool
}

// ReadSafetensors reads the tensor spec names ("file.safetensors[:name]",
// def when the file holds several and none is named) in its own element
// type, checked as Matrix checks it, into memory of its own (writable).
func ReadSafetensors(spec, def string) (Tensor, error) {
	t, done, err := safetensorsTensor(spec, def, false, false)
	done()
	return t, err
}

// MapSafetensors is ReadSafetensors without the copy where it can: the
// file is mapped and the tensor's elements are the mapping's bytes
// (read-only: a write faults) when this machine is little-endian and
// they are aligned; done unmaps them (call it when the tensor is no
// longer used). A 2 GB bfloat16 classifier then costs no memory of the
// process's own beyond the page cache.
func MapSafetensors(spec, def string) (t Tensor, done func(), err error) {
	return safetensorsTensor(spec, def, true, false)
}

// MapRows is MapSafetensors for a tensor of rows of any rank ≥ 2 (logits
// [batch × sequence × vocab]), as ReadRows.
func MapRows(spec, def string) (t Tensor, done func(), err error) {
	return safetensorsTensor(spec, def, true, true)
}

// safetensorsTensor maps the file of spec and returns its tensor, aliasing
// the mapping when alias is true and it can (see MapSafetensors), else
// copied out of it, of any rank ≥ 2 with stack true (see MapRows); done
// unmaps what the tensor aliases (nothing when copied).
func safetensorsTensor(spec, def string, alias, stack bool) (Tensor, func(), error) {
	nop := func() {}
	path, name, ok := safetensorsSpec(spec)
	if !ok {
		return Tensor{}, nop, fmt.Errorf("%s: not a .safetensors file", spec)
	}
	b, unmap, err := load(path)
	if err != nil {
		return Tensor{}, nop, err
	}
	t, aliased, err := decodeSafetensors(path, name, def, b, alias, stack)
	if err != nil || !aliased {
		unmap()
		return t, nop, err
	}
	return t, unmap, nil
}

// decodeSafetensors returns tensor name (else def or the only one) of the
// .safetensors bytes b of path, aliasing b when alias is true and it can
// (reported), else copied; 2-D, or with stack of any rank ≥ 2.
func decodeSafetensors(path, name, def string, b []byte, alias, stack bool) (Tensor, bool, error) {
	st, err := safetensors.Deserialize(b)
	if err != nil {
		return Tensor{}, false, fmt.Errorf("%s: not a valid .safetensors file: %v", path, err)
	}
	names := st.Names()
	slices.Sort(names)
	if name == "" && def != "" && len(names) > 1 && slices.Contains(names, def) {
		name = def
	}
	if name == "" {
		if len(names) != 1 {
			return Tensor{}, false, fmt.Errorf("%s: holds %d tensors, name one as %s:NAME (%s)", path, len(names), path, list(names))
		}
		name = names[0]
	}
	tv, ok := st.Tensor(name)
	if !ok {
		return Tensor{}, false, fmt.Errorf("%s: no tensor %q (it holds %s)", path, name, list(names))
	}
	shape := tv.Shape()
	switch {
	case stack && len(shape) < 2:
		return Tensor{}, false, fmt.Errorf("%s:%s: shape %v, expected rows, 2-D [rows × cols] or more ([batch × sequence × cols])", path, name, shape)
	case !stack && len(shape) != 2:
		return Tensor{}, false, fmt.Errorf("%s:%s: shape %v, expected 2-D [rows × cols]", path, name, shape)
	}
	dt := tv.DType()
	if dt != safetensors.F32 && dt != safetensors.BF16 && dt != safetensors.F16 {
		return Tensor{}, false, fmt.Errorf("%s:%s: dtype %v, expected F32, BF16 or F16", path, name, tv.DType())
	}
	t := Tensor{Rows: 1, Cols: int(min(shape[len(shape)-1], math.MaxInt32+1)), BF16: dt == safetensors.BF16}
	for _, d := range shape[:len(shape)-1] {
		if d > math.MaxInt32 || t.Rows*int(d) > math.MaxInt32 {
			return Tensor{}, false, fmt.Errorf("%s:%s: shape %v is too large", path, name, shape)
		}
		t.Lead = append(t.Lead, int(d))
		t.Rows *= int(d)
	}
	if t.Cols > math.MaxInt32 {
		return Tensor{}, false, fmt.Errorf("%s:%s: shape %v is too large", path, name, shape)
	}
	raw := tv.Data()
	n := t.Rows * t.Cols
	if dt == safetensors.F32 {
		if alias && n > 0 && aligned(raw, 4) {
			t.F32 = unsafe.Slice((*float32)(unsafe.Pointer(&raw[0])), n)
			return t, true, nil
		}
		t.F32 = make([]float32, n)
		for k := range t.F32 {
			t.F32[k] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*k:]))
		}
		return t, false, nil
	}
	if alias && n > 0 && aligned(raw, 2) {
		t.Half = unsafe.Slice((*uint16)(unsafe.Pointer(&raw[0])), n)
		return t, true, nil
	}
	t.Half = make([]uint16, n)
	for k := range t.Half {
		t.Half[k] = binary.LittleEndian.Uint16(raw[2*k:])
	}
	return t, false, nil
}

// aligned reports whether b's elements of size bytes may be read in
// place: this machine is little-endian (the format's order) and b starts
// at a multiple of size.
func aligned(b []byte, size uintptr) bool {
	return binary.NativeEndian.Uint16([]byte{1, 0}) == 1 && uintptr(unsafe.Pointer(unsafe.SliceData(b)))%size == 0
}

// list names up to 8 tensors.
func list(names []string) string {
	if len(names) > 8 {
		return strings.Join(names[:8], ", ") + fmt.Sprintf(", ... (%d in all)", len(names))
	}
	return strings.Join(names, ", ")
}

// intTypes are the integer types of targets: signed or not, and the bytes
// of one.
var intTypes = map[safetensors.DType]struct {
	signed bool
	size   int
}{
	safetensors.I8: {true, 1}, safetensors.I16: {true, 2}, safetensors.I32: {true, 4}, safetensors.I64: {true, 8},
	safetensors.U8: {false, 1}, safetensors.U16: {false, 2}, safetensors.U32: {false, 4}, safetensors.U64: {false, 8},
}

// TargetNames are the tensors Targets looks for, in order.
var TargetNames = []string{"targets", "labels"}

// Targets reads the targets a .safetensors file (a .npz archive, a
// PyTorch file) holds beside its logits: its integer tensor (array; I64,
// I32, U16, any signed or unsigned type) named "targets",
// else "labels" (as a dump of logits and labels from PyTorch has them),
// one a row of the logits: 1-D, or of the logits' leading shape ([batch ×
// sequence] beside [batch × sequence × vocab]), flattened in C order. It
// returns them, the tensor's shape and its spec
// ("file.safetensors:targets") for messages; a value outside int32's
// range is an error naming its index.
func Targets(path string) ([]int32, []int, string, error) {
	if _, _, a := npyfile.ArchiveSpec(path); a != "" {
		names, err := npyfile.Arrays(path)
		if err != nil {
			return nil, nil, "", err
		}
		for _, name := range TargetNames {
			if slices.Contains(names, name) {
				spec := path + ":" + name
				tg, shape, err := npyfile.ReadShaped(spec, (*npyfile.File).Targets)
				return tg, shape, spec, err
			}
		}
		return nil, nil, "", fmt.Errorf("%s: no targets: it holds no array %s (it holds %s)", path, strings.Join(TargetNames, " or "), list(names))
	}
	b, unmap, err := load(path)
	if err != nil {
		return nil, nil, "", err
	}
	defer unmap()
	st, err := safetensors.Deserialize(b)
	if err != nil {
		return nil, nil, "", fmt.Errorf("%s: not a valid .safetensors file: %v", path, err)
	}
	names := st.Names()
	slices.Sort(names)
	for _, name := range TargetNames {
		tv, ok := st.Tensor(name)
		if !ok {
			continue
		}
		spec := path + ":" + name
		var shape []int
		for _, d := range tv.Shape() {
			shape = append(shape, int(d))
		}
		if len(shape) < 1 {
			return nil, nil, spec, fmt.Errorf("%s: a scalar, expected targets, one a row", spec)
		}
		it, ok := intTypes[tv.DType()]
		if !ok {
			return nil, nil, spec, fmt.Errorf("%s: dtype %v, expected integer targets (I64, I32, U16, ...)", spec, tv.DType())
		}
		raw := tv.Data()
		tg := make([]int32, len(raw)/it.size)
		for i := range tg {
			b := raw[it.size*i:]
			v := npyfile.Int(b, binary.LittleEndian, it.size, it.signed)
			if v != int64(int32(v)) {
				return nil, nil, spec, fmt.Errorf("%s: target %s at %s is out of int32's range", spec, npyfile.IntText(b, binary.LittleEndian, it.size, it.signed), npyfile.Place(shape, i))
			}
			tg[i] = int32(v)
		}
		return tg, shape, spec, nil
	}
	return nil, nil, "", fmt.Errorf("%s: no targets: it holds no tensor %s (it holds %s)", path, strings.Join(TargetNames, " or "), list(names))
}
