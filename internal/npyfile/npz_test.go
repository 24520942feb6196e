package npyfile

import (
	"archive/zip"
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestNpz: an array of NumPy's .npz archives (testdata/npy/gen.py) reads
// as its .npy file: np.savez's in place (mapped), np.savez_compressed's
// decompressed into a temporary file that Close removes; a bad archive,
// entry or name is an error naming the archive and the array.
func TestNpz(t *testing.T) {
	tmp := t.TempDir()
	for _, v := range []string{"TMPDIR", "TMP", "TEMP"} { // os.TempDir's: Unix's, Windows's
		t.Setenv(v, tmp)
	}
	fix := fixture
	want := func(spec string) ([]float32, []int) { return readRows(t, spec) }
	x, shape := want(fix("causal_logits.npy"))
	ids, err := Read(fix("causal_ids.npy"), (*File).Targets)
	require.NoError(t, err)
	for _, spec := range []string{fix("causal.npz") + ":logits", fix("causal_z.npz") + ":logits"} {
		got, gshape := want(spec)
		require.Equal(t, shape, gshape, spec)
		require.Equal(t, x, got, spec)
		tg, err := Read(spec[:len(spec)-len("logits")]+"labels", (*File).Targets)
		require.NoError(t, err)
		require.Equal(t, ids, tg, spec)
	}
	requireMapped(t, fix("causal.npz"), x, "np.savez's float32 array is aligned: mapped in place")

	f, err := Open(fix("causal_z.npz") + ":labels")
	require.NoError(t, err)
	left, err := filepath.Glob(filepath.Join(tmp, "xent-npz-*"))
	require.NoError(t, err)
	require.Len(t, left, 1, "the decompressed array")
	require.NoError(t, f.Close())
	left, err = filepath.Glob(filepath.Join(tmp, "xent-npz-*"))
	require.NoError(t, err)
	require.Empty(t, left, "removed by Close")

	names, err := Arrays(fix("causal_z.npz"))
	require.NoError(t, err)
	require.Equal(t, []string{"logits", "labels", "mask"}, names)

	dir := t.TempDir()
	archive := func(name string, method uint16, entries ...string) string {
		var b bytes.Buffer
		w := zip.NewWriter(&b)
		for k := 0; k < len(entries); k += 2 {
			e, err := w.CreateHeader(&zip.FileHeader{Name: entries[k], Method: method})
			require.NoError(t, err)
			_, err = e.Write([]byte(entries[k+1]))
			require.NoError(t, err)
		}
		require.NoError(t, w.Close())
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, b.Bytes(), 0o644))
		return p
	}
	npy, err := os.ReadFile(fix("causal_ids.npy"))
	require.NoError(t, err)
	two := archive("two.npz", zip.Store, "a.npy", string(npy), "b.npy", string(npy))
	corrupt := archive("corrupt.npz", zip.Deflate, "a.npy", string(npy))
	b, err := os.ReadFile(corrupt)
	require.NoError(t, err)
	i := bytes.Index(b, []byte("a.npy")) + len("a.npy") + 40 // inside the deflated data
	b[i] ^= 0xff
	require.NoError(t, os.WriteFile(corrupt, b, 0o644))
	truncated := archive("truncated.npz", zip.Store, "a.npy", string(npy))
	b, err = os.ReadFile(truncated)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(truncated, b[:len(b)/2], 0o644)) // a copy cut short: no central directory
	for _, c := range []struct{ spec, want string }{
		{two, two + ": holds 2 arrays (a, b): name one, " + two + ":NAME"},
		{two + ":c", two + `: no array "c" (it holds a, b)`},
		{archive("empty.npz", zip.Store), "empty.npz: holds no array"},
		{archive("text.npz", zip.Store, "a.npy", "not an array"), "text.npz:a: not a .npy file (no NumPy magic string)"},
		{corrupt, "corrupt.npz:a: decompressing"},
		{truncated, truncated + ": not a .npz archive: zip: not a valid zip file"},
		{dir + "/x.npz", "x.npz"},
	} {
		_, err := Open(c.spec)
		require.ErrorContains(t, err, c.want, c.spec)
	}
	_, err = Open(dir + "/x.npz")
	require.ErrorIs(t, err, fs.ErrNotExist) // in the system's words
	require.NoError(t, os.WriteFile(filepath.Join(dir, "npy.npz"), npy, 0o644))
	_, err = Open(filepath.Join(dir, "npy.npz"))
	require.ErrorContains(t, err, filepath.Join(dir, "npy.npz")+": not a .npz archive")
	left, err = filepath.Glob(filepath.Join(tmp, "xent-npz-*"))
	require.NoError(t, err)
	require.Empty(t, left, "no decompressed file left by an error")
}

// readRows reads the rows of the array spec names (Stack) and returns
// them with its shape.
func readRows(t *testing.T, spec string) ([]float32, []int) {
	t.Helper()
	f, err := Open(spec)
	require.NoError(t, err)
	defer f.Close()
	rows, cols, err := f.Stack()
	require.NoError(t, err)
	x := make([]float32, rows*cols)
	require.NoError(t, f.Rows(x, 0, rows))
	return x, f.Shape
}

// requireMapped requires the float32 array of an archive, its "logits"
// when it holds several, to be mapped in place and hold want (where
// files are mapped).
func requireMapped(t *testing.T, archive string, want []float32, why string) {
	t.Helper()
	if runtime.GOOS == "windows" || runtime.GOOS == "plan9" {
		return
	}
	f, err := OpenOr(archive, "logits")
	require.NoError(t, err)
	defer f.Close()
	_, _, err = f.Stack()
	require.NoError(t, err)
	m, unmap, err := f.Map()
	require.NoError(t, err, why)
	require.Equal(t, want, m)
	require.NoError(t, unmap())
}
