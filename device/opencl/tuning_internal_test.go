package opencl

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestTuningTable: the table in the tree parses and every entry is in
// range; a user's table wins over it; the entry naming the most of a
// device wins; XENT_OPENCL_* override a field and a bad value is an error
// naming it; a bad table names its file and entry.
func TestTuningTable(t *testing.T) {
	tree, err := parseTable("tuning.json", shipped)
	require.NoError(t, err)
	for _, e := range tree {
		require.NotEmpty(t, e.Measured, "an entry in the tree says where it was measured")
		require.NotEmpty(t, e.Device+e.Platform, "an entry in the tree names what it tunes")
	}

	dir := t.TempDir()
	path := filepath.Join(dir, "tuning.json")
	t.Setenv("XENT_TUNING", path)
	for _, v := range []string{"WG", "UNROLL", "UNROLL_HALF", "REGS", "RC", "REV", "ALIGN", "FLIGHT", "LIN_TILE", "SPLIT"} {
		t.Setenv("XENT_OPENCL_"+v, "")
	}
	h := handle{kind: "gpu", name: "Card X", driver: "1.2", platName: "Vendor OpenCL"}
	tn, src, err := tuningOf(h)
	require.NoError(t, err)
	require.Equal(t, kindDefault("gpu"), tn)
	require.Equal(t, "default for gpu", src)

	plat := Entry{Platform: "Vendor", Tuning: Tuning{WG: 64, Unroll: 1, UnrollHalf: 1, Rev: 1}, Measured: "platform"}
	exact := Entry{Device: "Card X", Driver: "1.2", Tuning: Tuning{WG: 128, Unroll: 2, UnrollHalf: 4, Rev: 0, Flight: 8}, Measured: "exact"}
	other := Entry{Device: "Card Y", Tuning: Tuning{WG: 32, Unroll: 1, UnrollHalf: 1}, Measured: "other"}
	for _, e := range []Entry{plat, exact, other} {
		require.NoError(t, SaveEntry(path, e))
	}
	es, err := ReadTable(path)
	require.NoError(t, err)
	require.Len(t, es, 3)
	tn, src, err = tuningOf(h)
	require.NoError(t, err)
	require.Equal(t, exact.Tuning, tn, "the entry naming device and driver wins")
	require.Contains(t, src, "exact")

	h.driver = "1.3" // another driver: the platform's entry
	tn, _, err = tuningOf(h)
	require.NoError(t, err)
	require.Equal(t, plat.Tuning, tn)

	exact.Driver, exact.Tuning.WG = "1.3", 512 // replaced, not added
	require.NoError(t, SaveEntry(path, exact))
	exact.Driver = "1.2"
	require.NoError(t, SaveEntry(path, exact))
	es, err = ReadTable(path)
	require.NoError(t, err)
	require.Len(t, es, 4)
	tn, _, err = tuningOf(h)
	require.NoError(t, err)
	require.Equal(t, 512, tn.WG)

	t.Setenv("XENT_OPENCL_WG", "32")
	t.Setenv("XENT_OPENCL_FLIGHT", "0")
	tn, src, err = tuningOf(h)
	require.NoError(t, err)
	require.Equal(t, 32, tn.WG)
	require.Equal(t, 0, tn.Flight)
	require.Contains(t, src, "XENT_OPENCL_WG=32")
	for _, bad := range []string{"48", "0", "x"} {
		t.Setenv("XENT_OPENCL_WG", bad)
		_, _, err = tuningOf(h)
		require.ErrorContains(t, err, "XENT_OPENCL_WG=\""+bad+"\"")
	}
	t.Setenv("XENT_OPENCL_WG", "")
	t.Setenv("XENT_OPENCL_LIN_TILE", "32")
	tn, src, err = tuningOf(h)
	require.NoError(t, err)
	require.Equal(t, 32, tn.LinTile, "the fused linear's own kernels, opt-in")
	require.Contains(t, src, "XENT_OPENCL_LIN_TILE=32")
	t.Setenv("XENT_OPENCL_LIN_TILE", "48")
	_, _, err = tuningOf(h)
	require.ErrorContains(t, err, "lin_tile 48 is not 0, 16, 32 or 64")
	t.Setenv("XENT_OPENCL_LIN_TILE", "")
	t.Setenv("XENT_OPENCL_SPLIT", "-1")
	_, _, err = tuningOf(h)
	require.ErrorContains(t, err, "split -1 is not in [0, 4096]")
	t.Setenv("XENT_OPENCL_SPLIT", "")

	require.Error(t, SaveEntry(path, Entry{Device: "Z", Tuning: Tuning{WG: 3, Unroll: 1, UnrollHalf: 1}}), "an entry out of range is not written")
	require.NoError(t, os.WriteFile(path, []byte(`[{"device": "Z", "wg": 100, "unroll": 1, "unroll_half": 1}]`), 0o644))
	_, _, err = tuningOf(h)
	require.ErrorContains(t, err, path)
	require.ErrorContains(t, err, "entry 0")
	require.ErrorContains(t, err, "wg 100 is not a power of two")
	require.NoError(t, os.WriteFile(path, []byte(`[{"device": "Z", "wgs": 64}]`), 0o644))
	_, _, err = tuningOf(h)
	require.ErrorContains(t, err, `unknown field "wgs"`)
	require.NoError(t, os.WriteFile(path, []byte(`[{"device": `), 0o644))
	_, _, err = tuningOf(h)
	require.ErrorContains(t, err, path)
	require.NoError(t, SaveEntry(path+".new", plat))
	b, err := os.ReadFile(path + ".new")
	require.NoError(t, err)
	require.True(t, strings.HasSuffix(string(b), "}\n]\n"))
	left, err := filepath.Glob(filepath.Join(dir, ".tuning-*"))
	require.NoError(t, err)
	require.Empty(t, left, "no temporary file left beside the table")
}
