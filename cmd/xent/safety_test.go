package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"codeberg.org/sbinet/npyio"
	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/internal/seed"
)

// TestMain runs main itself when the test binary is started as the
// command (XENT_TEST_AS_XENT=1): the safety tests run the real process,
// with its exit status and its signals.
func TestMain(m *testing.M) {
	if os.Getenv("XENT_TEST_AS_XENT") == "1" {
		os.Args = append([]string{"xent"}, os.Args[1:]...)
		main()
		return
	}
	os.Exit(m.Run())
}

// xentCmd returns the command that runs xent with args in dir.
func xentCmd(dir string, args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "XENT_TEST_AS_XENT=1")
	return cmd
}

// xent runs xent with args in dir and returns its exit status and output.
func xent(t *testing.T, dir string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := xentCmd(dir, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), o.String(), e.String()
	}
	require.NoError(t, err)
	return 0, o.String(), e.String()
}

// files returns the contents of every regular file under dir, by name.
func files(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range ents {
		if e.Type().IsRegular() {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			require.NoError(t, err)
			m[e.Name()] = string(b)
		}
	}
	return m
}

// noTemps requires that no temporary output is left in dir.
func noTemps(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range ents {
		require.False(t, strings.HasPrefix(e.Name(), ".xent-"), "temporary file %s left behind", e.Name())
	}
}

// safetyDir returns a directory holding logits L.npy (13 × 29), targets
// T.npy, class weights CW.npy, hidden states H.npy (13 × 8), a classifier
// W.npy and W.safetensors (29 × 8) and a bias B.npy.
func safetyDir(t *testing.T) string {
	dir := t.TempDir()
	for _, f := range [][2]string{{"logits_f32.npy", "L.npy"}, {"targets_i64.npy", "T.npy"}} {
		b, err := os.ReadFile(fixture(f[0]))
		require.NoError(t, err)
		writeFile(t, dir, f[1], b)
	}
	r := seed.Rand(t, 24)
	vec := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		return v
	}
	cw := vec(29)
	for i := range cw {
		cw[i] = float32(math.Abs(float64(cw[i])))
	}
	writeNpyFile(t, dir, "CW.npy", cw)
	writeNpyFile(t, dir, "B.npy", vec(29))
	h, w := vec(13*8), vec(29*8)
	writeNpyFile(t, dir, "H.npy", rows2(h, 13, 8))
	writeNpyFile(t, dir, "W.npy", rows2(w, 29, 8))
	writeFile(t, dir, "W.safetensors", safetensorsF32("lm_head.weight", w, 29, 8))
	return dir
}

// rows2 returns v as rows × cols slices (npyio writes them as a 2-D array).
func rows2(v []float32, rows, cols int) [][]float32 {
	m := make([][]float32, rows)
	for i := range m {
		m[i] = v[i*cols : (i+1)*cols]
	}
	return m
}

// safetensorsF32 returns a .safetensors file of one F32 tensor.
func safetensorsF32(name string, v []float32, rows, cols int) []byte {
	hdr, _ := json.Marshal(map[string]any{name: map[string]any{"dtype": "F32", "shape": []int{rows, cols}, "data_offsets": []int{0, 4 * len(v)}}})
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, uint64(len(hdr)))
	b.Write(hdr)
	binary.Write(&b, binary.LittleEndian, v)
	return b.Bytes()
}

// TestOutputsNeverReplaceInputs: an output path that is an input — by
// its name, through a symlink, through a hard link, or another output —
// is refused before any work, naming the flag and the user's path, and
// every file keeps its bytes.
func TestOutputsNeverReplaceInputs(t *testing.T) {
	dir := safetyDir(t)
	require.NoError(t, os.Symlink("L.npy", filepath.Join(dir, "link-to-L.npy")))
	require.NoError(t, os.Link(filepath.Join(dir, "L.npy"), filepath.Join(dir, "hardlink-to-L.npy")))
	require.NoError(t, os.Symlink(filepath.Join(dir, "W.safetensors"), filepath.Join(dir, "link-to-W.safetensors")))
	logits := []string{"eval", "--device", "cpu", "--logits", "L.npy", "--targets", "T.npy", "--weights", "CW.npy"}
	linear := []string{"eval", "--device", "cpu", "--hidden", "H.npy", "--weight", "W.npy", "--bias", "B.npy", "--targets", "T.npy"}
	st := []string{"eval", "--device", "cpu", "--hidden", "H.npy", "--weight", "W.safetensors:lm_head.weight", "--targets", "T.npy"}
	cases := []struct {
		args []string
		want string
	}{
		{append(logits, "--rows-out", "L.npy"), "--rows-out L.npy: the same file as --logits L.npy; an output never replaces an input"},
		{append(logits, "--rows-out", "T.npy"), "--rows-out T.npy: the same file as --targets T.npy"},
		{append(logits, "--rows-out", "CW.npy"), "--rows-out CW.npy: the same file as --weights CW.npy"},
		{append(logits, "--rows-out", "link-to-L.npy"), "--rows-out link-to-L.npy: the same file as --logits L.npy"},
		{append(logits, "--rows-out", "hardlink-to-L.npy"), "--rows-out hardlink-to-L.npy: the same file as --logits L.npy"},
		{append(logits, "--rows-out", "./L.npy"), "--rows-out ./L.npy: the same file as --logits L.npy"},
		{append(linear, "--grad-hidden", "H.npy"), "--grad-hidden H.npy: the same file as --hidden H.npy"},
		{append(linear, "--grad-weight", "W.npy"), "--grad-weight W.npy: the same file as --weight W.npy"},
		{append(linear, "--grad-weight", "B.npy"), "--grad-weight B.npy: the same file as --bias B.npy"},
		{append(linear, "--rows-out", "T.npy"), "--rows-out T.npy: the same file as --targets T.npy"},
		{append(linear, "--grad-hidden", "g.npy", "--grad-weight", "g.npy"), "--grad-weight g.npy: the same file as --grad-hidden g.npy"},
		{append(st, "--grad-weight", "link-to-W.safetensors"), "--grad-weight link-to-W.safetensors: the same file as --weight W.safetensors"},
		{[]string{"demo", "--linear", "--text", "t.svg", "--plot", "t.svg"}, "--plot t.svg: the same file as --text t.svg"},
		{append(logits, "--rows-out", "-"), "--rows-out -: standard output carries the report; name a file"},
	}
	writeFile(t, dir, "t.svg", []byte("some text to learn\n"))
	for _, c := range cases {
		before := files(t, dir)
		code, out, errOut := xent(t, dir, c.args...)
		require.Equal(t, 1, code, "%v: %s", c.args, errOut)
		require.Empty(t, out)
		require.Contains(t, errOut, c.want, "%v", c.args)
		require.Equal(t, 1, strings.Count(errOut, "\n"), "one line: %q", errOut)
		require.Equal(t, before, files(t, dir), "%v: every file keeps its bytes", c.args)
		noTemps(t, dir)
		fi, err := os.Lstat(filepath.Join(dir, "link-to-L.npy"))
		require.NoError(t, err)
		require.NotZero(t, fi.Mode()&os.ModeSymlink, "the link is still a link")
	}
	// bench --plot onto its --from report.
	const report = `{"results": [{"device": "cpu", "op": "lse", "mode": "kernel", "batch": 4, "vocab": 8, "gbps": 1.5}]}`
	rep := writeFile(t, dir, "rep.json", []byte(report))
	code, _, errOut := xent(t, dir, "bench", "--from", rep, "--plot", filepath.Join(dir, "plot.svg"))
	require.Equal(t, 0, code, errOut)
	require.Contains(t, string(must(os.ReadFile(filepath.Join(dir, "plot.svg")))), "<svg")
	require.NoError(t, os.Symlink(rep, filepath.Join(dir, "rep.svg")))
	code, _, errOut = xent(t, dir, "bench", "--from", rep, "--plot", "rep.svg")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "--plot rep.svg: the same file as --from "+rep)
	require.Equal(t, report, string(must(os.ReadFile(rep))))
	// A report with nothing to plot is an error, not a panic, and writes
	// nothing.
	empty := writeFile(t, dir, "empty.json", []byte(`{"results": []}`))
	code, _, errOut = xent(t, dir, "bench", "--from", empty, "--plot", "empty.svg")
	require.Equal(t, 1, code, errOut)
	require.Equal(t, "xent bench: --plot empty.svg: no result with a positive throughput to plot (of 0)\n", errOut)
	require.NoFileExists(t, filepath.Join(dir, "empty.svg"))
	noTemps(t, dir)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestOutputsThroughSymlinks: an output that is a symlink is written
// through: its target is replaced whole (also a dangling link's, which is
// created) and the link stays a link; a replaced file keeps its
// permissions.
func TestOutputsThroughSymlinks(t *testing.T) {
	dir := safetyDir(t)
	other := t.TempDir()
	old := writeFile(t, other, "rows.npy", []byte("old rows"))
	require.NoError(t, os.Chmod(old, 0o600))
	require.NoError(t, os.Symlink(old, filepath.Join(dir, "r.npy")))
	require.NoError(t, os.Symlink(filepath.Join(other, "new.npy"), filepath.Join(dir, "dangling.npy")))
	for _, out := range []string{"r.npy", "dangling.npy"} {
		code, _, errOut := xent(t, dir, "eval", "--device", "cpu", "--logits", "L.npy", "--targets", "T.npy", "--rows-out", out)
		require.Equal(t, 0, code, errOut)
		fi, err := os.Lstat(filepath.Join(dir, out))
		require.NoError(t, err)
		require.NotZero(t, fi.Mode()&os.ModeSymlink, "%s is still a link", out)
		f, err := os.Open(filepath.Join(dir, out))
		require.NoError(t, err)
		var rows []float32
		require.NoError(t, npyio.Read(f, &rows))
		f.Close()
		require.Len(t, rows, 13)
		noTemps(t, dir)
		noTemps(t, other)
	}
	fi, err := os.Stat(old)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "the replaced file keeps its permissions")
}

// TestHelpNamesTypes: every flag's help that takes a file or a number
// says what it takes.
func TestHelpNamesTypes(t *testing.T) {
	_, _, errOut := runCmd("eval", "-h")
	for _, want := range []string{"-hidden H", "float32, float16, float64", "F32, BF16, F16", "int64, int32, uint16", "1-D float32"} {
		require.Contains(t, errOut, want)
	}
	require.NotContains(t, errOut, "(float32): the fused linear")
	code, out, _ := runCmd("help")
	require.Equal(t, 0, code)
	require.Contains(t, out, "hidden states and a classifier")
	require.NotContains(t, out, "a .npy logit dump")
}

// TestQuietLibrary: the library writes nothing to stderr; the command says
// which device runs once, with no timestamp, and nothing with --json
// unless --verbose.
func TestQuietLibrary(t *testing.T) {
	dir := safetyDir(t)
	args := []string{"eval", "--device", "auto", "--logits", "L.npy", "--targets", "T.npy"}
	code, _, errOut := xent(t, dir, append(args, "--json")...)
	require.Equal(t, 0, code, errOut)
	require.Empty(t, errOut)
	code, _, errOut = xent(t, dir, append(args, "--json", "--verbose")...)
	require.Equal(t, 0, code, errOut)
	require.Equal(t, 1, strings.Count(errOut, "\n"), errOut)
	require.Regexp(t, `^xent: device \S+ \(`, errOut, "no timestamp")
	code, _, errOut = xent(t, dir, args...)
	require.Equal(t, 0, code, errOut)
	require.Equal(t, 1, strings.Count(errOut, "xent: device "), errOut)
}

// TestDemoAnywhere: the demo needs no file of the repository: it runs
// from any directory.
func TestDemoAnywhere(t *testing.T) {
	dir := t.TempDir()
	code, out, errOut := xent(t, dir, "demo", "--linear", "--epochs", "3")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "Alice's Adventures in Wonderland")
	require.Contains(t, out, "epoch   0  loss 5.545 nats")
	code, out, errOut = xent(t, dir, "demo")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "perplexity 2.26")
}
