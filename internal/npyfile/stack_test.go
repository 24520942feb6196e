package npyfile

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// writeNpy writes a .npy of dtype descr and shape whose element at index
// (i, j, …) is val(i, j, …), laid out in C or Fortran order.
func writeNpy(t *testing.T, descr string, fortran bool, shape []int, val func(idx []int) float64) string {
	t.Helper()
	dims := make([]string, len(shape))
	n := 1
	for j, d := range shape {
		dims[j] = fmt.Sprint(d)
		n *= d
	}
	tuple := strings.Join(dims, ", ")
	if len(shape) == 1 {
		tuple += ","
	}
	py := map[bool]string{false: "False", true: "True"}[fortran]
	header := fmt.Sprintf("{'descr': '%s', 'fortran_order': %s, 'shape': (%s), }", descr, py, tuple)
	for (10+len(header)+1)%64 != 0 {
		header += " "
	}
	header += "\n"
	b := append([]byte("\x93NUMPY\x01\x00"), byte(len(header)), byte(len(header)>>8))
	b = append(b, header...)
	idx := make([]int, len(shape))
	for k := range n {
		// k is the element's place in the file: its digits, from the first
		// dimension in Fortran order, from the last in C order.
		r := k
		for j := range shape {
			if !fortran {
				j = len(shape) - 1 - j
			}
			idx[j] = r % shape[j]
			r /= shape[j]
		}
		v := val(idx)
		switch descr {
		case "<f4":
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(v)))
		case "<f8":
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
		case "<i4":
			b = binary.LittleEndian.AppendUint32(b, uint32(int32(v)))
		case "<i8", "<u8": // a negative v in "<u8": its two's complement, 2^64 + v
			b = binary.LittleEndian.AppendUint64(b, uint64(int64(v)))
		case ">i8":
			b = binary.BigEndian.AppendUint64(b, uint64(int64(v)))
		case "<i2", "<u2":
			b = binary.LittleEndian.AppendUint16(b, uint16(int16(v)))
		case ">u2":
			b = binary.BigEndian.AppendUint16(b, uint16(v))
		case "<u4":
			b = binary.LittleEndian.AppendUint32(b, uint32(int64(v)))
		case "|i1", "|u1", "|b1":
			b = append(b, byte(int8(v)))
		default:
			t.Fatalf("descr %s", descr)
		}
	}
	p := filepath.Join(t.TempDir(), "a.npy")
	require.NoError(t, os.WriteFile(p, b, 0o644))
	return p
}

// code is the value at idx: its digits, 100·i + 10·j + k.
func code(idx []int) float64 {
	v := 0.0
	for _, i := range idx {
		v = 10*v + float64(i)
	}
	return v
}

// inC returns code's values of shape in C order, as float64.
func inC(shape []int) []float64 {
	n := 1
	for _, d := range shape {
		n *= d
	}
	out := make([]float64, n)
	idx := make([]int, len(shape))
	for p := range out {
		r := p
		for j := len(shape) - 1; j >= 0; j-- {
			idx[j] = r % shape[j]
			r /= shape[j]
		}
		out[p] = code(idx)
	}
	return out
}

func open(t *testing.T, p string) *File {
	t.Helper()
	f, err := Open(p)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	return f
}

// TestStack: an array of rows of rank ≥ 2 reads as its leading dimensions
// flattened, in C order; Matrix still wants 2-D; a deeper array in
// Fortran order, or one of rank < 2, is refused with its shape named.
func TestStack(t *testing.T) {
	shape := []int{2, 3, 4}
	f := open(t, writeNpy(t, "<f4", false, shape, code))
	rows, cols, err := f.Stack()
	require.NoError(t, err)
	require.Equal(t, [2]int{6, 4}, [2]int{rows, cols})
	got := make([]float32, rows*cols)
	require.NoError(t, f.Rows(got, 0, rows))
	for p, w := range inC(shape) {
		require.Equal(t, float32(w), got[p], "element %d", p)
	}
	part := make([]float32, 2*cols)
	require.NoError(t, f.Rows(part, 3, 5))
	require.Equal(t, got[3*cols:5*cols], part)
	_, _, err = f.Matrix()
	require.ErrorContains(t, err, "expected a 2-D [rows × cols] array, got 3-D shape [2 3 4]")

	v, r, c, err := f.FloatMatrix("the teacher's log-probabilities")
	require.NoError(t, err)
	require.Equal(t, [2]int{6, 4}, [2]int{r, c})
	require.Equal(t, got, v)

	_, _, err = open(t, writeNpy(t, "<f4", true, shape, code)).Stack()
	require.ErrorContains(t, err, "a 3-D array in Fortran order")
	_, _, err = open(t, writeNpy(t, "<f4", false, []int{5}, code)).Stack()
	require.ErrorContains(t, err, "got 1-D shape [5]")
	_, _, err = open(t, writeNpy(t, "<f4", false, []int{2, 3, 0}, code)).Stack()
	require.ErrorContains(t, err, "6 rows of 0 values")

	// A 2-D array in Fortran order is still read as rows.
	f2 := open(t, writeNpy(t, "<f8", true, []int{3, 5}, code))
	rows, cols, err = f2.Stack()
	require.NoError(t, err)
	got = make([]float32, rows*cols)
	require.NoError(t, f2.Rows(got, 0, rows))
	for p, w := range inC([]int{3, 5}) {
		require.Equal(t, float32(w), got[p], "element %d", p)
	}
}

// TestTargetsShapes: targets and integer matrices of any integer type
// (uint16 token ids as a tokenizer's dump holds them) and flat values of
// any rank, in C or Fortran order, come out flattened in C order; a value
// outside int32's range is named by its place in each dimension and its
// own value (a uint64 of 2^64 − 100 is not -100, the ignore index).
func TestTargetsShapes(t *testing.T) {
	for _, shape := range [][]int{{7}, {3, 5}, {2, 3, 4}, {3, 1, 2, 2}} {
		want := inC(shape)
		descrs := []string{"<i4", "<i8", "<i2", "<u2", "<u4", "<u8", ">i8", ">u2"}
		if slices.Max(want) <= math.MaxInt8 {
			descrs = append(descrs, "|i1", "|u1")
		}
		for _, fortran := range []bool{false, true} {
			for _, descr := range descrs {
				name := fmt.Sprintf("%v %s fortran=%v", shape, descr, fortran)
				p := writeNpy(t, descr, fortran, shape, code)
				tg, err := open(t, p).Targets()
				require.NoError(t, err, name)
				require.Len(t, tg, len(want), name)
				for k, w := range want {
					require.Equal(t, int32(w), tg[k], "%s: element %d", name, k)
				}
				if len(shape) >= 2 {
					v, rows, cols, err := open(t, p).IntMatrix("the teacher's classes")
					require.NoError(t, err, name)
					require.Equal(t, [2]int{len(want) / shape[len(shape)-1], shape[len(shape)-1]}, [2]int{rows, cols}, name)
					require.Equal(t, tg, v, name)
				}
			}
			name := fmt.Sprintf("%v fortran=%v", shape, fortran)
			w, err := open(t, writeNpy(t, "<f8", fortran, shape, code)).Flat()
			require.NoError(t, err, name)
			for k, x := range want {
				require.Equal(t, float32(x), w[k], "%s: element %d", name, k)
			}
		}
	}
	far := func(idx []int) float64 {
		if idx[0] == 1 && idx[1] == 2 {
			return 1 << 32
		}
		return 0
	}
	_, err := open(t, writeNpy(t, "<i8", true, []int{2, 3}, far)).Targets()
	require.ErrorContains(t, err, "target 4294967296 at [1, 2] is outside the int32 range")
	_, err = open(t, writeNpy(t, "<i8", false, []int{4}, func(idx []int) float64 { return float64(idx[0]) * (1 << 31) })).Targets()
	require.ErrorContains(t, err, "target 2147483648 at row 1 is outside the int32 range")
	_, err = open(t, writeNpy(t, "<i8", false, nil, code)).Targets()
	require.ErrorContains(t, err, "got a scalar")
	_, err = open(t, writeNpy(t, "<u8", false, []int{2}, func(idx []int) float64 { return -100 * float64(idx[0]) })).Targets()
	require.ErrorContains(t, err, "target 18446744073709551516 at row 1 is outside the int32 range")
	_, _, _, err = open(t, writeNpy(t, "<u4", false, []int{2, 2}, func(idx []int) float64 { return float64(idx[1]) * (1 << 31) })).IntMatrix("the teacher's classes")
	require.ErrorContains(t, err, "the teacher's classes 2147483648 at [0, 1] is outside the int32 range")
	_, err = open(t, writeNpy(t, "<i2", false, []int{3}, func(idx []int) float64 { return -100 })).Targets()
	require.NoError(t, err, "a signed type's -100 is the ignore index")
	_, err = open(t, writeNpy(t, "<f4", false, []int{3}, code)).Targets()
	require.ErrorContains(t, err, "targets must be integers (int64, int32, uint16, ...), got float32")
	_, err = open(t, writeNpy(t, "|b1", false, []int{3}, code)).Targets()
	require.ErrorContains(t, err, "targets must be integers (int64, int32, uint16, ...), got bool")
	_, err = open(t, writeNpy(t, "<f4", false, []int{2, 3}, code)).Vector()
	require.ErrorContains(t, err, "expected a 1-D float array")

	// Flat takes integers and bools too (an attention mask as it is).
	mask := func(idx []int) float64 { return float64(idx[len(idx)-1]%2) - 3*float64(idx[0]) }
	for _, descr := range []string{"|b1", "|u1", "|i1", "<i2", "<i4", "<i8", "<u8"} {
		for _, fortran := range []bool{false, true} {
			shape := []int{2, 3}
			want := func(idx []int) float64 {
				v := mask(idx)
				switch descr {
				case "|b1", "|u1":
					v = float64(uint8(int8(v)))
				case "<u8": // its value, not its bits as an int64's
					v = float64(uint64(int64(v)))
				}
				return v
			}
			w, err := open(t, writeNpy(t, descr, fortran, shape, mask)).Flat()
			require.NoError(t, err, descr)
			for p := range w {
				idx := []int{p / 3, p % 3}
				require.Equal(t, float32(want(idx)), w[p], "%s fortran=%v: element %v", descr, fortran, idx)
			}
		}
	}
}

// TestWriteF32: what WriteF32 writes reads back with its shape and
// values, and an array of rows maps (its data aligned).
func TestWriteF32(t *testing.T) {
	for _, shape := range [][]int{{}, {0}, {5}, {2, 3}, {2, 3, 4}, {1, 70000}} {
		n := 1
		for _, d := range shape {
			n *= d
		}
		want := make([]float32, n)
		for k := range want {
			want[k] = float32(k)*0.5 - 3
		}
		p := filepath.Join(t.TempDir(), "w.npy")
		out, err := os.Create(p)
		require.NoError(t, err)
		require.NoError(t, WriteF32(out, shape, want))
		require.NoError(t, out.Close())
		f := open(t, p)
		require.Equal(t, len(shape), len(f.Shape), "%v", shape)
		if len(shape) > 0 {
			require.Equal(t, shape, f.Shape)
		}
		got, err := f.floats()
		require.NoError(t, err)
		require.Equal(t, want, got, "%v", shape)
		if len(shape) >= 2 && runtime.GOOS != "windows" && runtime.GOOS != "plan9" {
			m, unmap, err := f.Map()
			require.NoError(t, err, "%v maps", shape)
			require.Equal(t, want, m)
			require.NoError(t, unmap())
		}
	}
	require.ErrorContains(t, WriteF32(io.Discard, []int{2, 2}, make([]float32, 3)), "3 values for shape [2 2]")
}
