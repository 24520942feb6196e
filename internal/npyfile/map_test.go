package npyfile

import (
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/internal/mapped"
)

func fixture(name string) string { return filepath.Join("..", "..", "testdata", "npy", name) }

// TestMap: a native-order C float32 dump maps to the values Rows reads,
// also as a Stack of rows of more dimensions (logits_3d.npy: the same
// values, 13 × 29 × 1); every other layout is refused (the caller then
// reads).
func TestMap(t *testing.T) {
	if !mapped.Supported {
		t.Skipf("no mapping on %s", runtime.GOOS)
	}
	f, err := Open(fixture("logits_f32.npy"))
	require.NoError(t, err)
	defer f.Close()
	rows, cols, err := f.Matrix()
	require.NoError(t, err)
	want := make([]float32, rows*cols)
	require.NoError(t, f.Rows(want, 0, rows))
	got, unmap, err := f.Map()
	require.NoError(t, err)
	require.Equal(t, want, got)
	require.NoError(t, unmap())
	f3, err := Open(fixture("logits_3d.npy"))
	require.NoError(t, err)
	defer f3.Close()
	rows, cols, err = f3.Stack()
	require.NoError(t, err)
	require.Equal(t, [2]int{13 * 29, 1}, [2]int{rows, cols})
	got, unmap, err = f3.Map()
	require.NoError(t, err)
	require.Equal(t, want, got)
	require.NoError(t, unmap())
	for _, name := range []string{"logits_f64.npy", "logits_f16.npy", "logits_f32_fortran.npy", "logits_f32_bigendian.npy"} {
		f, err := Open(fixture(name))
		require.NoError(t, err, name)
		_, _, err = f.Map()
		require.Error(t, err, "%s maps", name)
		f.Close()
	}
}
