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
	"os"
	"slices"
	"strings"

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
	f, err := npyfile.Open(spec)
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

// FilePath returns the file a spec names: the path of a .safetensors
// spec without its ":tensor", any other spec as it is.
func FilePath(spec string) string {
	if path, _, ok := safetensorsSpec(spec); ok {
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
// type where it is a half-precision one: a .safetensors BF16 or F16
// tensor, or a native-order C float16 .npy, which is mapped (done unmaps
// it; call it when the tensor is no longer used). Other .npy dtypes are
// read as float32.
func Read(spec, def string) (t Tensor, done func(), err error) {
	done = func() {}
	if IsSafetensors(spec) {
		t, err = ReadSafetensors(spec, def)
		return t, done, err
	}
	f, err := npyfile.Open(spec)
	if err != nil {
		return t, done, err
	}
	defer f.Close()
	if t.Rows, t.Cols, err = f.Matrix(); err != nil {
		return t, done, err
	}
	if bits, unmap, err := f.MapF16(); err == nil {
		t.Half = bits
		return t, func() { unmap() }, nil
	}
	t.F32 = make([]float32, t.Rows*t.Cols)
	return t, done, f.Rows(t.F32, 0, t.Rows)
}

// Tensor is a 2-D tensor, rows × cols row-major, in its file's element
// type: F32 holds a float32 one, Half the 16-bit elements of a bfloat16
// (BF16 true) or float16 one.
type Tensor struct {
	Rows, Cols int
	F32        []float32
	Half       []uint16
	BF16       bool
}

// ReadSafetensors reads the tensor spec names ("file.safetensors[:name]",
// def when the file holds several and none is named) in its own element
// type, checked as Matrix checks it.
func ReadSafetensors(spec, def string) (Tensor, error) {
	path, name, ok := safetensorsSpec(spec)
	if !ok {
		return Tensor{}, fmt.Errorf("%s: not a .safetensors file", spec)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return Tensor{}, err
	}
	st, err := safetensors.Deserialize(b)
	if err != nil {
		return Tensor{}, fmt.Errorf("%s: not a valid .safetensors file: %v", path, err)
	}
	names := st.Names()
	slices.Sort(names)
	if name == "" && def != "" && len(names) > 1 && slices.Contains(names, def) {
		name = def
	}
	if name == "" {
		if len(names) != 1 {
			return Tensor{}, fmt.Errorf("%s: holds %d tensors, name one as %s:NAME (%s)", path, len(names), path, list(names))
		}
		name = names[0]
	}
	tv, ok := st.Tensor(name)
	if !ok {
		return Tensor{}, fmt.Errorf("%s: no tensor %q (it holds %s)", path, name, list(names))
	}
	shape := tv.Shape()
	if len(shape) != 2 {
		return Tensor{}, fmt.Errorf("%s:%s: shape %v, expected 2-D [rows × cols]", path, name, shape)
	}
	dt := tv.DType()
	if dt != safetensors.F32 && dt != safetensors.BF16 && dt != safetensors.F16 {
		return Tensor{}, fmt.Errorf("%s:%s: dtype %v, expected F32, BF16 or F16", path, name, tv.DType())
	}
	if shape[0] > math.MaxInt32 || shape[1] > math.MaxInt32 {
		return Tensor{}, fmt.Errorf("%s:%s: shape %v is too large", path, name, shape)
	}
	t := Tensor{Rows: int(shape[0]), Cols: int(shape[1]), BF16: dt == safetensors.BF16}
	raw := tv.Data()
	if dt == safetensors.F32 {
		t.F32 = make([]float32, t.Rows*t.Cols)
		for k := range t.F32 {
			t.F32[k] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*k:]))
		}
		return t, nil
	}
	t.Half = make([]uint16, t.Rows*t.Cols)
	for k := range t.Half {
		t.Half[k] = binary.LittleEndian.Uint16(raw[2*k:])
	}
	return t, nil
}

// list names up to 8 tensors.
func list(names []string) string {
	if len(names) > 8 {
		return strings.Join(names[:8], ", ") + fmt.Sprintf(", ... (%d in all)", len(names))
	}
	return strings.Join(names, ", ")
}
