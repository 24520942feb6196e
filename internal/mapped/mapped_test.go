package mapped

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestMap: a file's first bytes and the whole of it, mapped, are the
// bytes read; the file closed after mapping leaves them there; nothing to
// map is an error, and so is a file not open.
func TestMap(t *testing.T) {
	if !Supported {
		t.Skipf("no mapping on %s", runtime.GOOS)
	}
	path := filepath.Join("..", "..", "testdata", "npy", "logits_f32.npy")
	want, err := os.ReadFile(path)
	require.NoError(t, err)
	for _, size := range []int{1, 100, len(want)} {
		f, err := os.Open(path)
		require.NoError(t, err)
		b, unmap, err := Map(f, size, size == len(want))
		require.NoError(t, err)
		require.NoError(t, f.Close())
		require.Equal(t, want[:size], b)
		require.NoError(t, unmap())
	}
	f, err := os.Open(path)
	require.NoError(t, err)
	_, _, err = Map(f, 0, false)
	require.ErrorContains(t, err, "nothing to map")
	require.NoError(t, f.Close())
	_, _, err = Map(f, 10, false)
	require.Error(t, err, "a closed file")
}
