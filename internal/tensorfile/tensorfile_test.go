package tensorfile

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// raw is a .safetensors file: the header's length, the header, the bytes.
func raw(header string, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	return append(append(b, header...), data...)
}

func write(t *testing.T, name string, b []byte) string {
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, b, 0o644))
	return p
}

// TestSafetensorsTypes: F32, BF16 and F16 tensors read as the float32
// values their bits are.
func TestSafetensorsTypes(t *testing.T) {
	want := []float32{1, -2, 0.5, 3.140625, 0, 65280}
	var f32, bf16, f16 []byte
	for _, v := range want {
		f32 = binary.LittleEndian.AppendUint32(f32, math.Float32bits(v))
		bf16 = binary.LittleEndian.AppendUint16(bf16, uint16(math.Float32bits(v)>>16)) // each is exact in bfloat16
	}
	for _, h := range []uint16{0x3c00, 0xc000, 0x3800, 0x4248, 0x0000, 0x7bf8} { // the same values in float16
		f16 = binary.LittleEndian.AppendUint16(f16, h)
	}
	for _, c := range []struct {
		dtype string
		data  []byte
	}{{"F32", f32}, {"BF16", bf16}, {"F16", f16}} {
		h := `{"logits":{"dtype":"` + c.dtype + `","shape":[2,3],"data_offsets":[0,` + itoa(len(c.data)) + `]}}`
		p := write(t, "x.safetensors", raw(h, c.data))
		got, rows, cols, err := Matrix(p)
		require.NoError(t, err, c.dtype)
		require.Equal(t, 2, rows)
		require.Equal(t, 3, cols)
		require.Equal(t, want, got, c.dtype)
	}
}

func itoa(n int) string {
	b := []byte{}
	for {
		b = append([]byte{byte('0' + n%10)}, b...)
		if n /= 10; n == 0 {
			return string(b)
		}
	}
}

// TestSafetensorsNames: a file of several tensors takes a name, or the
// default one when it holds it.
func TestSafetensorsNames(t *testing.T) {
	d := make([]byte, 8)
	h := `{"a":{"dtype":"F32","shape":[1,1],"data_offsets":[0,4]},"logits":{"dtype":"F32","shape":[1,1],"data_offsets":[4,8]}}`
	p := write(t, "two.safetensors", raw(h, d))
	_, _, _, err := Matrix(p)
	require.ErrorContains(t, err, "holds 2 tensors, name one as")
	_, _, _, err = MatrixOr(p, "logits")
	require.NoError(t, err)
	_, _, _, err = Matrix(p + ":a")
	require.NoError(t, err)
	_, _, _, err = Matrix(p + ":b")
	require.ErrorContains(t, err, `no tensor "b" (it holds a, logits)`)
	require.True(t, IsSafetensors(p+":a"))
	require.False(t, IsSafetensors("x.npy"))
}

// TestSafetensorsHostile: each bad file gets one error naming the file
// and the problem.
func TestSafetensorsHostile(t *testing.T) {
	four := make([]byte, 4)
	for _, c := range []struct {
		name string
		file []byte
		want string
	}{
		{"header past the file", append(binary.LittleEndian.AppendUint64(nil, 1<<20), "{}"...), "not a valid .safetensors file"},
		{"short", []byte{1, 2, 3}, "not a valid .safetensors file"},
		{"offsets past the data", raw(`{"x":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]}}`, four), "not a valid .safetensors file"},
		{"overlapping", raw(`{"a":{"dtype":"F32","shape":[1,1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1,1],"data_offsets":[0,4]}}`, four), "not a valid .safetensors file"},
		{"unknown dtype", raw(`{"x":{"dtype":"F9","shape":[1,1],"data_offsets":[0,4]}}`, four), "not a valid .safetensors file"},
		{"shape against bytes", raw(`{"x":{"dtype":"F32","shape":[3,1],"data_offsets":[0,4]}}`, four), "not a valid .safetensors file"},
		{"not 2-D", raw(`{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, four), "expected 2-D"},
		{"integers", raw(`{"x":{"dtype":"I32","shape":[1,1],"data_offsets":[0,4]}}`, four), "dtype I32, expected F32, BF16 or F16"},
		{"bad JSON", raw(`{"x":`, nil), "not a valid .safetensors file"},
	} {
		p := write(t, "bad.safetensors", c.file)
		_, _, _, err := Matrix(p)
		require.ErrorContains(t, err, c.want, c.name)
		require.ErrorContains(t, err, p, c.name)
	}
}

// FuzzSafetensors: arbitrary bytes as a .safetensors file give a matrix
// or an error naming the file, never a panic.
func FuzzSafetensors(f *testing.F) {
	f.Add(raw(`{"x":{"dtype":"BF16","shape":[1,2],"data_offsets":[0,4]}}`, make([]byte, 4)))
	f.Add(raw(`{"x":{"dtype":"F32","shape":[2,1],"data_offsets":[0,8]},"__metadata__":{"a":"b"}}`, make([]byte, 8)))
	f.Add(raw(`{"x":{"dtype":"F16","shape":[0,3],"data_offsets":[0,0]}}`, nil))
	f.Add(raw(`{"x":{"dtype":"F32","shape":[1,2,1],"data_offsets":[0,8]}}`, make([]byte, 8)))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(dir, "f.safetensors")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if tr, done, err := ReadRows(p, ""); err != nil {
			require.Contains(t, err.Error(), p)
		} else {
			require.Equal(t, tr.Rows*tr.Cols, len(tr.F32)+len(tr.Half))
			done()
		}
		data, rows, cols, err := Matrix(p)
		if err != nil {
			require.Contains(t, err.Error(), p)
			return
		}
		require.Len(t, data, rows*cols)
	})
}

// TestTargets: a .safetensors of logits holds its targets as "targets"
// (else "labels"), any integer type, of any rank (returned with their shape);
// anything else is refused naming the file.
func TestTargets(t *testing.T) {
	i64 := func(vs ...int64) []byte {
		var b []byte
		for _, v := range vs {
			b = binary.LittleEndian.AppendUint64(b, uint64(v))
		}
		return b
	}
	i32 := binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, 3), uint32(0xffffff9c)) // 3, -100
	for _, c := range []struct {
		header string
		data   []byte
		want   []int32
		shape  []int
		name   string
		err    string
	}{
		{`{"labels":{"dtype":"I64","shape":[3],"data_offsets":[0,24]}}`, i64(1, -100, 7), []int32{1, -100, 7}, []int{3}, "labels", ""},
		{`{"labels":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},"targets":{"dtype":"I32","shape":[2],"data_offsets":[8,16]}}`, append(i64(5), i32...), []int32{3, -100}, []int{2}, "targets", ""},
		{`{"labels":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}}`, i64(1, 1<<40), nil, nil, "labels", "target 1099511627776 at row 1 is out of int32's range"},
		{`{"labels":{"dtype":"I64","shape":[2,2],"data_offsets":[0,32]}}`, i64(1, 2, 1<<40, 4), nil, nil, "labels", "target 1099511627776 at [1, 0] is out of int32's range"},
		{`{"labels":{"dtype":"I64","shape":[2,1,2],"data_offsets":[0,32]}}`, i64(1, 2, -100, 4), []int32{1, 2, -100, 4}, []int{2, 1, 2}, "labels", ""},
		{`{"labels":{"dtype":"I64","shape":[],"data_offsets":[0,8]}}`, i64(1), nil, nil, "labels", "a scalar, expected targets"},
		{`{"targets":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, i64(0), nil, nil, "targets", "dtype F32, expected integer targets (I64, I32, U16, ...)"},
		// Any integer type: token ids as a tokenizer's dump holds them.
		{`{"labels":{"dtype":"U16","shape":[3],"data_offsets":[0,6]}}`, []byte{0x51, 0xc4, 1, 0, 0xff, 0xff}, []int32{50257, 1, 65535}, []int{3}, "labels", ""},
		{`{"labels":{"dtype":"I16","shape":[2],"data_offsets":[0,4]}}`, []byte{0x9c, 0xff, 7, 0}, []int32{-100, 7}, []int{2}, "labels", ""},
		{`{"labels":{"dtype":"I8","shape":[2],"data_offsets":[0,2]}}`, []byte{0x9c, 7}, []int32{-100, 7}, []int{2}, "labels", ""},
		{`{"labels":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}`, []byte{0x9c, 7}, []int32{156, 7}, []int{2}, "labels", ""},
		{`{"labels":{"dtype":"U32","shape":[2],"data_offsets":[0,8]}}`, []byte{1, 0, 0, 0, 0, 0, 0, 0x80}, nil, nil, "labels", "target 2147483648 at row 1 is out of int32's range"},
		{`{"labels":{"dtype":"U64","shape":[2],"data_offsets":[0,16]}}`, i64(3, -1), nil, nil, "labels", "target 18446744073709551615 at row 1 is out of int32's range"},
		{`{"labels":{"dtype":"U64","shape":[2],"data_offsets":[0,16]}}`, i64(3, 1<<31-1), []int32{3, 1<<31 - 1}, []int{2}, "labels", ""},
		{`{"logits":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]}}`, i64(0), nil, nil, "", "no targets: it holds no tensor targets or labels (it holds logits)"},
	} {
		p := write(t, "x.safetensors", raw(c.header, c.data))
		got, shape, spec, err := Targets(p)
		if c.err != "" {
			require.ErrorContains(t, err, c.err)
			require.Contains(t, err.Error(), p)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, c.want, got)
		require.Equal(t, c.shape, shape)
		require.Equal(t, p+":"+c.name, spec)
	}
}

// TestRows: ReadRows and MapRows take a tensor of rank ≥ 2 as rows, its
// leading dimensions flattened (Lead keeps them), from a .safetensors or
// a .npy file; Read, MapSafetensors and Matrix still want 2-D; a shape
// whose rows overflow is refused.
func TestRows(t *testing.T) {
	vals := make([]float32, 2*3*4)
	for k := range vals {
		vals[k] = float32(k) - 7
	}
	p := write(t, "x.safetensors", raw(`{"logits":{"dtype":"F32","shape":[2,3,4],"data_offsets":[0,96]}}`, f32s(vals...)))
	for name, fn := range map[string]func(string, string) (Tensor, func(), error){"ReadRows": ReadRows, "MapRows": MapRows} {
		got, done, err := fn(p, "")
		require.NoError(t, err, name)
		require.Equal(t, 6, got.Rows, name)
		require.Equal(t, 4, got.Cols, name)
		require.Equal(t, []int{2, 3}, got.Lead, name)
		require.Equal(t, vals, got.F32, name)
		done()
	}
	_, _, err := Read(p, "")
	require.ErrorContains(t, err, "shape [2 3 4], expected 2-D")
	_, _, err = MapSafetensors(p, "")
	require.ErrorContains(t, err, "shape [2 3 4], expected 2-D")
	_, _, err = ReadRows(write(t, "v.safetensors", raw(`{"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`, f32s(1, 2, 3, 4))), "")
	require.ErrorContains(t, err, "shape [4], expected rows")
	_, _, err = MapRows(write(t, "big.safetensors", raw(`{"x":{"dtype":"F32","shape":[65536,65536,0],"data_offsets":[0,0]}}`, nil)), "")
	require.ErrorContains(t, err, "is too large")

	h := make([]uint16, 12)
	for k := range h {
		h[k] = uint16(0x3c00 + k) // float16 values near 1
	}
	var b []byte
	for _, v := range h {
		b = binary.LittleEndian.AppendUint16(b, v)
	}
	header := "{'descr': '<f2', 'fortran_order': False, 'shape': (3, 2, 2), }"
	for (10+len(header)+1)%64 != 0 {
		header += " "
	}
	npy := append([]byte("\x93NUMPY\x01\x00"), byte(len(header)+1), 0)
	npy = append(append(append(npy, header...), '\n'), b...)
	pn := write(t, "h.npy", npy)
	got, done, err := ReadRows(pn, "")
	require.NoError(t, err)
	require.Equal(t, Tensor{Rows: 6, Cols: 2, Lead: []int{3, 2}, Half: h}, got)
	done()
	_, _, err = Read(pn, "")
	require.ErrorContains(t, err, "expected a 2-D [rows × cols] array, got 3-D shape [3 2 2]")
}
