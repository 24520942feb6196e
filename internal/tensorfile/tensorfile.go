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

// IsSafetensors reports whether spec names a .safetensors file (with or
// without a tensor).
func IsSafetensors(spec string) bool {
	_, _, ok := safetensorsSpec(spec)
	return ok
}

func readSafetensors(path, name, def string) ([]float32, int, int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, 0, err
	}
	st, err := safetensors.Deserialize(b)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("%s: not a valid .safetensors file: %v", path, err)
	}
	names := st.Names()
	slices.Sort(names)
	if name == "" && def != "" && len(names) > 1 && slices.Contains(names, def) {
		name = def
	}
	if name == "" {
		if len(names) != 1 {
			return nil, 0, 0, fmt.Errorf("%s: holds %d tensors, name one as %s:NAME (%s)", path, len(names), path, list(names))
		}
		name = names[0]
	}
	tv, ok := st.Tensor(name)
	if !ok {
		return nil, 0, 0, fmt.Errorf("%s: no tensor %q (it holds %s)", path, name, list(names))
	}
	shape := tv.Shape()
	if len(shape) != 2 {
		return nil, 0, 0, fmt.Errorf("%s:%s: shape %v, expected 2-D [rows × cols]", path, name, shape)
	}
	conv, ok := convert[tv.DType()]
	if !ok {
		return nil, 0, 0, fmt.Errorf("%s:%s: dtype %v, expected F32, BF16 or F16", path, name, tv.DType())
	}
	if shape[0] > math.MaxInt32 || shape[1] > math.MaxInt32 {
		return nil, 0, 0, fmt.Errorf("%s:%s: shape %v is too large", path, name, shape)
	}
	rows, cols := int(shape[0]), int(shape[1])
	data := make([]float32, rows*cols)
	conv(data, tv.Data())
	return data, rows, cols, nil
}

// convert widens a tensor's little-endian bytes into float32, by dtype.
var convert = map[safetensors.DType]func(dst []float32, raw []byte){
	safetensors.F32: func(dst []float32, raw []byte) {
		for k := range dst {
			dst[k] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*k:]))
		}
	},
	safetensors.BF16: func(dst []float32, raw []byte) {
		for k := range dst {
			dst[k] = half.BF16(binary.LittleEndian.Uint16(raw[2*k:]))
		}
	},
	safetensors.F16: func(dst []float32, raw []byte) {
		for k := range dst {
			dst[k] = half.F16(binary.LittleEndian.Uint16(raw[2*k:]))
		}
	},
}

// list names up to 8 tensors.
func list(names []string) string {
	if len(names) > 8 {
		return strings.Join(names[:8], ", ") + fmt.Sprintf(", ... (%d in all)", len(names))
	}
	return strings.Join(names, ", ")
}
