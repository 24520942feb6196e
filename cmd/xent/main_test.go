package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"codeberg.org/sbinet/npyio"
	"github.com/stretchr/testify/require"
	"github.com/xentlab/xent/batch"
	"github.com/xentlab/xent/internal/corpus"
)

func fixture(name string) string { return filepath.Join("..", "..", "testdata", "npy", name) }

// writeFile writes b to dir/name and returns the path.
func writeFile(t *testing.T, dir, name string, b []byte) string {
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, b, 0o644))
	return p
}

func runCmd(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(context.Background(), args, &o, &e)
	return code, o.String(), e.String()
}

func TestDemo(t *testing.T) {
	code, out, _ := runCmd("demo")
	require.Equal(t, 0, code)
	for _, want := range []string{"1.609", "0.511", "0.916", "0.223", "mean loss  0.815", "perplexity 2.26", "0.200", "0.600", "0.400", "0.800"} {
		require.Contains(t, out, want)
	}
}

func TestEvalMatchesPyTorch(t *testing.T) {
	var exp struct {
		Mean     float64   `json:"mean"`
		Accuracy float64   `json:"accuracy"`
		Tokens   int64     `json:"tokens"`
		Rows     []float64 `json:"rows"`
	}
	b, err := os.ReadFile(fixture("expected.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &exp))
	for _, logits := range []string{"logits_f32.npy", "logits_f16.npy", "logits_f64.npy", "logits_f32_fortran.npy", "logits_f32_bigendian.npy"} {
		for _, targets := range []string{"targets_i64.npy", "targets_i32.npy"} {
			rowsOut := filepath.Join(t.TempDir(), "rows.npy")
			code, out, errOut := runCmd("eval", "--logits", fixture(logits), "--targets", fixture(targets), "--device", "cpu", "--json", "--rows-out", rowsOut)
			require.Equal(t, 0, code, errOut)
			var got map[string]any
			require.NoError(t, json.Unmarshal([]byte(out), &got))
			require.Equal(t, 1, strings.Count(strings.TrimSpace(out), "\n")+1, "exactly one JSON line")
			for _, k := range []string{"loss", "sum", "tokens", "ignored", "perplexity", "accuracy", "z_loss", "device"} {
				require.Contains(t, got, k)
			}
			require.InDelta(t, exp.Mean, got["loss"], 1e-5*exp.Mean, logits)
			require.InDelta(t, exp.Accuracy, got["accuracy"], 1e-12)
			require.EqualValues(t, exp.Tokens, got["tokens"])
			require.EqualValues(t, 2, got["ignored"])
			f, err := os.Open(rowsOut)
			require.NoError(t, err)
			var rows []float32
			require.NoError(t, npyio.Read(f, &rows))
			f.Close()
			require.Len(t, rows, len(exp.Rows))
			for i := range rows {
				require.InDelta(t, exp.Rows[i], rows[i], 1e-5*max(1, exp.Rows[i]))
			}
		}
	}
}

func writeNpyFile(t *testing.T, dir, name string, v any) string {
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	require.NoError(t, err)
	require.NoError(t, npyio.Write(f, v))
	require.NoError(t, f.Close())
	return p
}

// TestEvalRowsOfMoreDims: the fixture's 13 rows as [1 × 13 × 29] logits
// with [1 × 13] targets (and as 13 × 29 with [13 × 1] targets) give the
// loss and rows of the 2-D file, the rows written in the logits' leading
// shape.
func TestEvalRowsOfMoreDims(t *testing.T) {
	dir := t.TempDir()
	data, err := os.ReadFile(fixture("logits_f32.npy"))
	require.NoError(t, err)
	tg := readNpy[int64](t, fixture("targets_i64.npy"))
	var t2 [1][13]int64
	copy(t2[0][:], tg)
	args := func(logits, targets string) []string {
		return []string{"eval", "--logits", logits, "--targets", targets, "--device", "cpu", "--json", "--rows-out", filepath.Join(dir, "rows.npy")}
	}
	want := evalJSON(t, args(fixture("logits_f32.npy"), fixture("targets_i64.npy"))...)
	wantRows := readNpy[float32](t, filepath.Join(dir, "rows.npy"))
	for _, c := range [][2]string{
		{writeFile(t, dir, "l3.npy", reshaped(t, data, "(1, 13, 29)", false)), writeNpyFile(t, dir, "t2.npy", t2)},
		{fixture("logits_f32.npy"), fixture("targets_2d.npy")},
	} {
		require.NoError(t, os.Remove(filepath.Join(dir, "rows.npy")))
		got := evalJSON(t, args(c[0], c[1])...)
		require.Equal(t, want, got, c)
		lead := []int{13}
		if c[0] != fixture("logits_f32.npy") {
			lead = []int{1, 13}
		}
		require.Equal(t, lead, npyShape(t, filepath.Join(dir, "rows.npy")), "the rows in the logits' leading shape")
		require.Equal(t, wantRows, readNpy[float32](t, filepath.Join(dir, "rows.npy")), c)
	}
}

// reshaped returns the float32 .npy file b with a header (version 1) of
// shape (a Python tuple) in C or Fortran order, its data unchanged.
func reshaped(t *testing.T, b []byte, shape string, fortran bool) []byte {
	t.Helper()
	require.Equal(t, "\x93NUMPY", string(b[:6]))
	data := b[10+int(b[8])+int(b[9])<<8:]
	if b[6] >= 2 {
		data = b[12+int(binary.LittleEndian.Uint32(b[8:12])):]
	}
	h := fmt.Sprintf("{'descr': '<f4', 'fortran_order': %s, 'shape': %s, }", map[bool]string{false: "False", true: "True"}[fortran], shape)
	for (10+len(h)+1)%64 != 0 {
		h += " "
	}
	h += "\n"
	out := append([]byte("\x93NUMPY\x01\x00"), byte(len(h)), byte(len(h)>>8))
	return append(append(out, h...), data...)
}

func TestEvalAllIgnoredIsNull(t *testing.T) {
	dir := t.TempDir()
	l := writeNpyFile(t, dir, "l.npy", [2][3]float32{})
	tg := writeNpyFile(t, dir, "t.npy", []int64{-100, -100})
	code, out, errOut := runCmd("eval", "--logits", l, "--targets", tg, "--device", "cpu", "--json")
	require.Equal(t, 0, code, errOut)
	var got map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &got))
	require.Nil(t, got["loss"])
	require.Nil(t, got["perplexity"])
	require.Nil(t, got["accuracy"])
	require.EqualValues(t, 0, got["sum"])
	require.EqualValues(t, 2, got["ignored"])
}

// TestEvalHostileFiles: each bad file exits 1 with one line naming the file
// and the problem, and leaves the rows output alone.
func TestEvalHostileFiles(t *testing.T) {
	dir := t.TempDir()
	good, goodT := fixture("logits_f32.npy"), fixture("targets_i64.npy")
	data, err := os.ReadFile(good)
	require.NoError(t, err)
	mk := func(name string, b []byte) string { return writeFile(t, dir, name, b) }
	truncated := mk("truncated.npy", data[:len(data)-7])
	lying := mk("lying.npy", bytes.Replace(data, []byte("(13, 29)"), []byte("(99, 29)"), 1))
	garbage := mk("garbage.npy", []byte("this is not a numpy file at all, just text\n"))
	empty := mk("empty.npy", nil)
	noNewline := mk("nonl.npy", append([]byte("\x93NUMPY\x01\x00\x10\x00"), []byte("{'descr': '<f4'}")...))
	badT := writeNpyFile(t, dir, "badt.npy", []int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 29})
	shortT := writeNpyFile(t, dir, "shortt.npy", []int64{0, 1})
	flat := writeNpyFile(t, dir, "flat.npy", make([]float32, 13))
	// The 13 × 29 logits as one batch of 13 positions; its targets 1 × 13.
	stacked := mk("stacked.npy", reshaped(t, data, "(1, 13, 29)", false))
	fortran3 := mk("fortran3.npy", reshaped(t, data, "(1, 13, 29)", true))
	var t2 [1][13]int64
	t2[0][6] = 29
	badT2 := writeNpyFile(t, dir, "badt2.npy", t2)
	cases := []struct {
		logits, targets, want string
	}{
		{truncated, goodT, "truncated"},
		{lying, goodT, "truncated"},
		{garbage, goodT, "not a .npy file"},
		{empty, goodT, "empty file"},
		{noNewline, goodT, "malformed .npy header"},
		{fixture("logits_i8.npy"), goodT, "expected float16, float32 or float64 values, got int8"},
		{fixture("logits_3d.npy"), goodT, "expected 377 targets to match the 377 rows"}, // 13 × 29 × 1: rows of one class
		{flat, goodT, "expected rows of values, 2-D [rows × cols] or more ([batch × sequence × cols]), got 1-D shape [13]"},
		{fortran3, goodT, "a 3-D array in Fortran order"},
		{good, fixture("targets_f32.npy"), "targets must be integers (int64, int32, uint16, ...), got float32"},
		{stacked, fixture("targets_2d.npy"), "targets of shape [13 1], the rows of " + stacked + " are [1 13]: they must match one for one"},
		{good, badT, "target 29 out of bounds [0, 29) at row 12"},
		{stacked, badT2, "target 29 out of bounds [0, 29) at [0, 6]"},
		{good, shortT, "expected 13 targets to match the 13 rows"},
		{filepath.Join(dir, "missing.npy"), goodT, "no such file"},
		{dir, goodT, "is a directory"},
	}
	for _, c := range cases {
		rowsOut := filepath.Join(dir, "rows.npy")
		require.NoError(t, os.WriteFile(rowsOut, []byte("keep"), 0o644))
		code, out, errOut := runCmd("eval", "--logits", c.logits, "--targets", c.targets, "--device", "cpu", "--rows-out", rowsOut)
		require.Equal(t, 1, code, "%s: %s", c.want, errOut)
		require.Empty(t, out)
		require.Equal(t, 1, strings.Count(errOut, "\n"), errOut)
		require.Contains(t, errOut, c.want)
		named := strings.Contains(errOut, filepath.Base(c.logits)) || strings.Contains(errOut, filepath.Base(c.targets))
		require.True(t, named, "the message names the file: %s", errOut)
		b, err := os.ReadFile(rowsOut)
		require.NoError(t, err)
		require.Equal(t, "keep", string(b), "rows output untouched")
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			require.False(t, strings.HasSuffix(e.Name(), ".tmp"), "temporary file left: %s", e.Name())
		}
	}
}

func TestUsage(t *testing.T) {
	code, _, errOut := runCmd()
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "usage")
	code, _, errOut = runCmd("frobnicate")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "unknown command")
	code, _, errOut = runCmd("eval", "--logits", "x.npy")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "--targets are required")
}

// TestEvalChunked: streaming in chunks of one or a few rows gives the same
// result as one chunk.
func TestEvalChunked(t *testing.T) {
	args := []string{"eval", "--logits", fixture("logits_f32.npy"), "--targets", fixture("targets_i64.npy"), "--device", "cpu", "--json"}
	code, whole, _ := runCmd(args...)
	require.Equal(t, 0, code)
	defer func(old int) { corpus.ChunkBytes = old }(corpus.ChunkBytes)
	for _, cb := range []int{1, 29 * 4, 3 * 29 * 4} {
		corpus.ChunkBytes = cb
		code, out, errOut := runCmd(args...)
		require.Equal(t, 0, code, errOut)
		var a, b map[string]any
		require.NoError(t, json.Unmarshal([]byte(whole), &a))
		require.NoError(t, json.Unmarshal([]byte(out), &b))
		require.InDelta(t, a["loss"], b["loss"], 1e-12)
		require.Equal(t, a["tokens"], b["tokens"])
	}
}

// TestEvalTokenWeights: --token-weights gives Σ w_i·loss_i / Σ w_i over
// the counted rows, the per-row losses of an unweighted run weighted,
// whole and streamed in chunks of one row; a bad weight names its file
// and row, and nothing is written.
func TestEvalTokenWeights(t *testing.T) {
	dir := t.TempDir()
	l, tg := fixture("logits_f32.npy"), fixture("targets_i64.npy")
	rowsOut := filepath.Join(dir, "rows.npy")
	code, _, errOut := runCmd("eval", "--logits", l, "--targets", tg, "--device", "cpu", "--rows-out", rowsOut)
	require.Equal(t, 0, code, errOut)
	losses := readNpy[float32](t, rowsOut)
	targets := readNpy[int64](t, tg)
	w := make([]float32, len(losses))
	num, den := 0.0, 0.0
	for i := range w {
		w[i] = float32(i%4) * 0.5
		if targets[i] != batch.DefaultIgnoreIndex {
			num += float64(w[i]) * float64(losses[i])
			den += float64(w[i])
		}
	}
	tw := writeNpyFile(t, dir, "tw.npy", w)
	args := []string{"eval", "--logits", l, "--targets", tg, "--token-weights", tw, "--device", "cpu", "--json"}
	defer func(old int) { corpus.ChunkBytes = old }(corpus.ChunkBytes)
	for _, cb := range []int{corpus.ChunkBytes, 1} {
		corpus.ChunkBytes = cb
		code, out, errOut := runCmd(args...)
		require.Equal(t, 0, code, errOut)
		var doc map[string]any
		require.NoError(t, json.Unmarshal([]byte(out), &doc))
		require.InDelta(t, num/den, doc["loss"], 1e-12*num/den, "chunk bytes %d", cb)
	}
	w[2] = -1
	bad := writeNpyFile(t, dir, "bad.npy", w)
	code, _, errOut = runCmd("eval", "--logits", l, "--targets", tg, "--token-weights", bad, "--device", "cpu", "--rows-out", filepath.Join(dir, "r2.npy"))
	require.Equal(t, 1, code)
	require.Contains(t, errOut, bad+": token weight -1 at row 2 must be finite and ≥ 0")
	require.NoFileExists(t, filepath.Join(dir, "r2.npy"))
	short := writeNpyFile(t, dir, "short.npy", w[:3])
	code, _, errOut = runCmd("eval", "--logits", l, "--targets", tg, "--token-weights", short, "--device", "cpu")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "expected "+strconv.Itoa(len(w))+" token weights to match the")
}

// TestEvalTemperature: --temperature τ gives PyTorch's loss of
// softmax(z/τ) (testdata/golden's temperature cases, written by gen.py),
// for logits and for hidden states with the soft cap first; τ = 1 is the
// loss without; a τ that is not a finite positive number is refused,
// naming the flag, with nothing written.
func TestEvalTemperature(t *testing.T) {
	dir := t.TempDir()
	type gcase struct {
		Name string
		Mean float64
	}
	var doc, ldoc struct{ Cases []gcase }
	mean := func(cs []gcase, name string) float64 {
		for _, c := range cs {
			if c.Name == name {
				return c.Mean
			}
		}
		t.Fatalf("no golden case %s", name)
		return 0
	}
	g := func(name string) string { return filepath.Join("..", "..", "testdata", "golden", name) }
	for _, d := range []struct {
		file string
		doc  any
	}{{g("cases.json"), &doc}, {golden("cases.json"), &ldoc}} {
		b, err := os.ReadFile(d.file)
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal([]byte(strings.ReplaceAll(string(b), "NaN", "null")), d.doc))
	}
	var res struct{ Loss float64 }
	rowsOut := filepath.Join(dir, "rows.npy")
	code, out, errOut := runCmd("eval", "--logits", g("temperature_logits.npy"), "--targets", g("temperature_targets.npy"),
		"--temperature", "0.6", "--device", "cpu", "--json", "--rows-out", rowsOut)
	require.Equal(t, 0, code, errOut)
	require.NoError(t, json.Unmarshal([]byte(out), &res))
	want := mean(doc.Cases, "temperature")
	require.InDelta(t, want, res.Loss, 1e-5*want)
	wantRows := readNpy[float64](t, g("temperature_rows.npy"))
	for i, v := range readNpy[float32](t, rowsOut) {
		require.InDelta(t, wantRows[i], v, 1e-5*max(1, wantRows[i]), "row %d", i)
	}
	code, out, errOut = runCmd("eval", "--hidden", golden("temperature_h.npy"), "--weight", golden("temperature_w.npy"), "--bias", golden("temperature_b.npy"),
		"--targets", golden("temperature_targets.npy"), "--softcap", "6", "--label-smoothing", "0.1", "--temperature", "0.7", "--device", "cpu", "--json")
	require.Equal(t, 0, code, errOut)
	require.NoError(t, json.Unmarshal([]byte(out), &res))
	want = mean(ldoc.Cases, "temperature")
	require.InDelta(t, want, res.Loss, 1e-5*want)

	plain := []string{"eval", "--logits", fixture("logits_f32.npy"), "--targets", fixture("targets_i64.npy"), "--device", "cpu", "--json"}
	code, base, errOut := runCmd(plain...)
	require.Equal(t, 0, code, errOut)
	code, one, errOut := runCmd(append(plain, "--temperature", "1")...)
	require.Equal(t, 0, code, errOut)
	require.Equal(t, base, one, "τ = 1 is no temperature")
	for _, bad := range []string{"0", "-2", "NaN", "+Inf"} {
		code, out, errOut := runCmd(append(plain, "--temperature", bad, "--rows-out", rowsOut+bad)...)
		require.NotEqual(t, 0, code, bad)
		require.Empty(t, out)
		require.Contains(t, errOut, "--temperature", bad)
		require.NoFileExists(t, rowsOut+bad)
	}
}
