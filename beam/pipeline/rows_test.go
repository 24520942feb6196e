package pipeline

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/internal/corpus"
)

// TestRows: Commit renames the staged rows of every line into place, or
// none when a line's are missing (naming it); Discard removes what a run
// staged and nothing else.
func TestRows(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "rows [*?]") // no pattern
	require.NoError(t, os.Mkdir(dir, 0o755))
	m := corpus.Manifest{Lines: []corpus.Line{{N: 1}, {N: 2}, {N: 10}}}
	r, err := NewRows(dir, m)
	require.NoError(t, err)
	other, err := NewRows(dir, m)
	require.NoError(t, err)
	require.NotEqual(t, r.Run, other.Run)
	stage := func(r Rows, n int) {
		require.NoError(t, writeFile(r.staged(n), func(w io.Writer) error {
			_, err := w.Write([]byte{byte(n)})
			return err
		}))
	}
	names := func() []string {
		ents, err := os.ReadDir(dir)
		require.NoError(t, err)
		var ns []string
		for _, e := range ents {
			ns = append(ns, e.Name())
		}
		return ns
	}
	stage(r, 1)
	stage(r, 10)
	stage(other, 2)
	require.ErrorContains(t, r.Commit(m), "line 2's rows were not written")
	require.Len(t, names(), 3, "nothing renamed")
	stage(r, 2)
	require.NoError(t, r.Commit(m))
	for _, l := range m.Lines {
		b, err := os.ReadFile(filepath.Join(dir, corpus.RowsName(l.N, 2)))
		require.NoError(t, err)
		require.Equal(t, []byte{byte(l.N)}, b)
	}
	stage(r, 1)
	require.NoError(t, r.Discard())
	require.Equal(t, []string{".xent-beam-" + other.Run + "-line-02.npy", "line-01.npy", "line-02.npy", "line-10.npy"}, names(), "another run's staged file kept")
}
