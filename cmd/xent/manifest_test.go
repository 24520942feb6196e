package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"codeberg.org/sbinet/npyio"
	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/batch"
	"github.com/xentlab/xent/internal/corpus/corpustest"
	"github.com/xentlab/xent/internal/seed"
)

// evalJSON runs a command that prints xent eval --json's object and
// returns it.
func evalJSON(t *testing.T, args ...string) map[string]any {
	t.Helper()
	code, out, errOut := runCmd(args...)
	require.Equal(t, 0, code, errOut)
	var got map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &got), out)
	return got
}

// TestEvalManifest: the seven files of corpustest in one run, and in 1, 2
// and 7 shards merged by xent merge, give the float64 reference's report,
// with the keys of xent eval --json; --rows-out writes each line's rows.
func TestEvalManifest(t *testing.T) {
	dir := t.TempDir()
	m, weight, want := corpustest.Write(t, dir, seed.New(t))
	one := evalJSON(t, "eval", "--manifest", m, "--weight", weight, "--device", "cpu", "--json")
	keys := func(o map[string]any) []string {
		var ks []string
		for k := range o {
			ks = append(ks, k)
		}
		slices.Sort(ks)
		return ks
	}
	single := evalJSON(t, "eval", "--logits", filepath.Join(dir, "l1.npy"), "--targets", filepath.Join(dir, "t1.npy"), "--device", "cpu", "--json")
	require.Equal(t, keys(single), keys(one), "the keys of xent eval --json")
	st := batch.Stats{Rows: want.Rows, Counted: int64(one["tokens"].(float64)), Sum: one["sum"].(float64), Correct: int64(one["accuracy"].(float64)*float64(want.Counted) + 0.5)}
	st.Rows = st.Counted + int64(one["ignored"].(float64))
	st.Denom = st.Sum / one["loss"].(float64)
	want.Check(t, st, 1e-5)

	for _, n := range []int{1, 2, 7} {
		var parts []string
		for i := range n {
			p := filepath.Join(dir, fmt.Sprintf("S%d_%d.json", n, i))
			got := evalJSON(t, "eval", "--manifest", m, "--weight", weight, "--device", "cpu", "--json", "--shard", fmt.Sprintf("%d/%d", i, n), "--stats-out", p)
			require.Equal(t, keys(one), keys(got))
			parts = append(parts, p)
		}
		slices.Reverse(parts)
		merged := evalJSON(t, append([]string{"merge", "--json"}, parts...)...)
		require.Equal(t, one["tokens"], merged["tokens"], "%d shards", n)
		require.Equal(t, one["ignored"], merged["ignored"], "%d shards", n)
		require.Equal(t, one["accuracy"], merged["accuracy"], "%d shards", n)
		require.InEpsilon(t, one["sum"], merged["sum"], 1e-12, "%d shards", n)
		require.InEpsilon(t, one["loss"], merged["loss"], 1e-12, "%d shards", n)
		require.Equal(t, keys(one), keys(merged))
		// The text report too.
		code, out, errOut := runCmd(append([]string{"merge"}, parts...)...)
		require.Equal(t, 0, code, errOut)
		require.Contains(t, out, "perplexity")
	}

	// The loss by position: in the one run, and in 2 shards merged.
	plotFile := filepath.Join(dir, "pos.svg")
	byPos := evalJSON(t, "eval", "--manifest", m, "--weight", weight, "--device", "cpu", "--json", "--seq-len", "5", "--plot", plotFile)
	ref := want.ByPosition(5)
	got := byPos["by_position"].([]any)
	require.Len(t, got, 5)
	for k := range ref {
		require.InEpsilon(t, ref[k], got[k].(float64), 1e-5, "position %d", k)
	}
	svg, err := os.ReadFile(plotFile)
	require.NoError(t, err)
	require.Contains(t, string(svg), "<svg")
	var parts []string
	for i := range 2 {
		p := filepath.Join(dir, fmt.Sprintf("P_%d.json", i))
		evalJSON(t, "eval", "--manifest", m, "--weight", weight, "--device", "cpu", "--json", "--seq-len", "5", "--shard", fmt.Sprintf("%d/2", i), "--stats-out", p)
		parts = append(parts, p)
	}
	merged := evalJSON(t, append([]string{"merge", "--json"}, parts...)...)
	for k, v := range merged["by_position"].([]any) {
		require.InEpsilon(t, got[k].(float64), v.(float64), 1e-12, "position %d", k)
	}
	drawn, err := os.ReadFile(plotFile)
	require.NoError(t, err)
	code, _, errOut := runCmd("eval", "--manifest", m, "--weight", weight, "--device", "cpu", "--plot", plotFile)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, m+":1: "+filepath.Join(dir, "t1.npy")+": the loss by position (--by-position, or --plot without --calibration) needs the sequences' length")
	after, err := os.ReadFile(plotFile)
	require.NoError(t, err)
	require.Equal(t, drawn, after, "the plot of the run before left as it was")
	// One file: 41 rows at positions 0..40 mod 64, the rest null.
	one41 := evalJSON(t, "eval", "--hidden", filepath.Join(dir, "h7.npy"), "--weight", weight, "--targets", filepath.Join(dir, "t7.npy"),
		"--token-weights", filepath.Join(dir, "w7.npy"), "--device", "cpu", "--json", "--seq-len", "64")
	bp := one41["by_position"].([]any)
	require.Len(t, bp, 64)
	require.Nil(t, bp[41])
	code, out, errOut := runCmd("eval", "--logits", filepath.Join(dir, "l1.npy"), "--targets", filepath.Join(dir, "t1.npy"), "--device", "cpu", "--seq-len", "4")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "by position 4 positions")

	// A .safetensors of logits and labels needs no --targets; a .npy does,
	// and a .safetensors without them says so.
	l3 := evalJSON(t, "eval", "--logits", filepath.Join(dir, "l3.safetensors"), "--token-weights", filepath.Join(dir, "w3.npy"), "--device", "cpu", "--json")
	require.EqualValues(t, 11, l3["tokens"].(float64)+l3["ignored"].(float64))
	code, _, errOut = runCmd("eval", "--logits", filepath.Join(dir, "l1.npy"), "--device", "cpu")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "--logits and --targets are required")
	code, _, errOut = runCmd("eval", "--logits", filepath.Join(dir, "h5.safetensors"), "--device", "cpu")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, filepath.Join(dir, "h5.safetensors")+": no targets: it holds no tensor targets or labels (it holds hidden)")

	rows := filepath.Join(dir, "rows")
	require.NoError(t, os.Mkdir(rows, 0o755))
	evalJSON(t, "eval", "--manifest", m, "--weight", weight, "--device", "cpu", "--json", "--rows-out", rows)
	ents, err := os.ReadDir(rows)
	require.NoError(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	require.Equal(t, []string{"line-1.npy", "line-2.npy", "line-3.npy", "line-5.npy", "line-6.npy", "line-7.npy", "line-8.npy"}, names)
	f, err := os.Open(filepath.Join(rows, "line-8.npy"))
	require.NoError(t, err)
	defer f.Close()
	var r8 []float32
	require.NoError(t, npyio.Read(f, &r8))
	require.Len(t, r8, 41)
}

// TestEvalManifestHostile: a bad line fails the run naming the manifest,
// the line and the file, before anything is computed, and nothing is
// written; so do bad shards, flags that name files beside a manifest, and
// merges of the wrong partials.
func TestEvalManifestHostile(t *testing.T) {
	dir := t.TempDir()
	m, weight, _ := corpustest.Write(t, dir, seed.New(t))
	text, err := os.ReadFile(m)
	require.NoError(t, err)
	stats := filepath.Join(dir, "S.json")
	rows := filepath.Join(dir, "rows")
	require.NoError(t, os.Mkdir(rows, 0o755))
	bad := filepath.Join(dir, "bad.npy")
	f, err := os.Create(bad)
	require.NoError(t, err)
	require.NoError(t, npyio.Write(f, []int64{0, 1, 99}))
	require.NoError(t, f.Close())
	for _, c := range []struct {
		line, want string
	}{
		{`{"logits": "l1.npy", "targets": "bad.npy"}`, "M.jsonl:9: " + bad + ": expected 37 targets to match the 37 rows of " + filepath.Join(dir, "l1.npy") + ", got 3"},
		{`{"logits": "l1.npy", "targets": "missing.npy"}`, "M.jsonl:9: open " + filepath.Join(dir, "missing.npy")},
		{`{"hidden": "h4.npy", "weight": "l2.npy", "targets": "t4.npy"}`, "M.jsonl:9: " + filepath.Join(dir, "l2.npy") + ": 53 features per class"},
		{`{"logits": "l1.npy", "targets": "t1.npy", "rows": 3}`, `M.jsonl:9: not a manifest line`},
	} {
		require.NoError(t, os.WriteFile(m, append(slices.Clone(text), c.line+"\n"...), 0o644))
		code, out, errOut := runCmd("eval", "--manifest", m, "--weight", weight, "--device", "cpu", "--stats-out", stats, "--rows-out", rows)
		require.Equal(t, 1, code, errOut)
		require.Empty(t, out)
		require.Contains(t, errOut, c.want)
		require.NoFileExists(t, stats)
		ents, err := os.ReadDir(rows)
		require.NoError(t, err)
		require.Empty(t, ents, "no rows written")
		ents, err = os.ReadDir(dir)
		require.NoError(t, err)
		for _, e := range ents {
			require.False(t, strings.HasSuffix(e.Name(), ".tmp"), "temporary file left: %s", e.Name())
		}
	}
	require.NoError(t, os.WriteFile(m, text, 0o644))

	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--shard", "2/2"}, 1, `--shard: shard "2/2": want i/n with 0 ≤ i < n`},
		{[]string{"--stats-out", m}, 1, "the same file as --manifest"},
		{[]string{"--stats-out", filepath.Join(dir, "l1.npy")}, 1, "an output never replaces an input"},
		{[]string{"--stats-out", filepath.Join(dir, "l1.npy"), "--shard", "1/2"}, 1, "an output never replaces an input"}, // another shard's file
		{[]string{"--logits", filepath.Join(dir, "l1.npy")}, 2, "--manifest names the files"},
		{[]string{"--rows-out", filepath.Join(dir, "nodir")}, 1, "nodir"},
	} {
		code, _, errOut := runCmd(append([]string{"eval", "--manifest", m, "--weight", weight, "--device", "cpu"}, c.args...)...)
		require.Equal(t, c.code, code, errOut)
		require.Contains(t, errOut, c.want)
	}
	code, _, errOut := runCmd("eval", "--logits", filepath.Join(dir, "l1.npy"), "--targets", filepath.Join(dir, "t1.npy"), "--shard", "0/2")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "--shard, --stats-out and --lines-out go with --manifest")

	// Merges: a missing shard, a repeated one, another manifest's, other flags.
	s := func(name string, args ...string) string {
		p := filepath.Join(dir, name)
		code, _, errOut := runCmd(append([]string{"eval", "--manifest", m, "--weight", weight, "--device", "cpu", "--stats-out", p}, args...)...)
		require.Equal(t, 0, code, errOut)
		return p
	}
	s0, s1 := s("s0.json", "--shard", "0/2"), s("s1.json", "--shard", "1/2")
	z1 := s("z1.json", "--shard", "1/2", "--z-loss", "1e-4")
	other := filepath.Join(dir, "other.jsonl")
	require.NoError(t, os.WriteFile(other, text[:len(text)/2+strings.Index(string(text[len(text)/2:]), "\n")+1], 0o644))
	o1 := filepath.Join(dir, "o1.json")
	code, _, errOut = runCmd("eval", "--manifest", other, "--weight", weight, "--device", "cpu", "--stats-out", o1, "--shard", "1/2")
	require.Equal(t, 0, code, errOut)
	// A shard of 10^14 (a hostile file's count is not allocated).
	b, err := os.ReadFile(s0)
	require.NoError(t, err)
	huge := filepath.Join(dir, "huge.json")
	require.NoError(t, os.WriteFile(huge, regexp.MustCompile(`"shards": *2`).ReplaceAll(b, []byte(`"shards": 100000000000000`)), 0o644))
	for _, c := range []struct {
		files []string
		want  string
	}{
		{[]string{s0}, "shard 1/2 is missing"},
		{[]string{s0, s1, s1}, "s1.json: shard 1/2 again"},
		{[]string{s0, z1}, "z1.json: flags"},
		{[]string{s0, o1}, "o1.json: of another manifest"},
		{[]string{s0, m}, "M.jsonl: not partial statistics"},
		{[]string{huge}, "shard 1/100000000000000 is missing (1 of 100000000000000 given)"},
	} {
		code, out, errOut := runCmd(append([]string{"merge"}, c.files...)...)
		require.Equal(t, 1, code, errOut)
		require.Empty(t, out)
		require.Contains(t, errOut, c.want)
	}
	code, _, _ = runCmd("merge")
	require.Equal(t, 2, code)
}

// TestEvalCalibration: --calibration adds the ECE and its 15 bins to
// --json (absent without), as the float64 reference gives them, in one
// run and in shards merged, for logits and hidden states; against torch's
// ECE for a golden case; and --plot draws the reliability diagram, below
// the loss by position with --seq-len.
func TestEvalCalibration(t *testing.T) {
	dir := t.TempDir()
	m, weight, want := corpustest.Write(t, dir, seed.New(t))
	base := []string{"eval", "--manifest", m, "--weight", weight, "--device", "cpu", "--json"}
	require.NotContains(t, evalJSON(t, base...), "ece", "no calibration unless asked for")
	one := evalJSON(t, append(base, "--calibration")...)
	slack := 1e-5 + 2*float64(want.Edge+want.Ambiguous)/float64(want.Cal.Binned())
	require.InDelta(t, want.Cal.ECE(), one["ece"].(float64), slack, "ECE (%d rows at a bin's edge, %d ambiguous)", want.Edge, want.Ambiguous)
	bins := one["calibration"].([]any)
	require.Len(t, bins, batch.CalibrationBins)
	var rows float64
	for k, b := range bins {
		b := b.(map[string]any)
		rows += b["rows"].(float64)
		require.InDelta(t, float64(k)/15, b["lo"].(float64), 1e-15)
		if want.Edge == 0 {
			require.EqualValues(t, want.Cal.Rows[k], b["rows"], "bin %d", k)
		}
	}
	require.EqualValues(t, want.Cal.Binned(), rows)
	var parts []string
	for i := range 3 {
		p := filepath.Join(dir, fmt.Sprintf("C_%d.json", i))
		evalJSON(t, append(base, "--calibration", "--shard", fmt.Sprintf("%d/3", i), "--stats-out", p)...)
		parts = append(parts, p)
	}
	merged := evalJSON(t, append([]string{"merge", "--json"}, parts...)...)
	require.InDelta(t, one["ece"].(float64), merged["ece"].(float64), 1e-12)
	for k, b := range merged["calibration"].([]any) { // the same rows; the sums within rounding (added in another order)
		b, o := b.(map[string]any), bins[k].(map[string]any)
		require.Equal(t, o["rows"], b["rows"], "bin %d", k)
		require.Equal(t, o["accuracy"], b["accuracy"], "bin %d", k)
		if o["confidence"] != nil {
			require.InEpsilon(t, o["confidence"], b["confidence"], 1e-12, "bin %d", k)
		}
	}
	// A partial without the calibration does not merge with those with.
	plain := filepath.Join(dir, "plain_1.json")
	evalJSON(t, append(base, "--shard", "1/3", "--stats-out", plain)...)
	code, _, errOut := runCmd("merge", parts[0], plain, parts[2])
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "a total with the calibration merged with one without")

	// torch's ECE (testdata/golden/gen.py) of a golden case, through the
	// fused linear too.
	var doc struct {
		Cases []struct {
			Name string
			ECE  float64
		}
	}
	b, err := os.ReadFile(golden("cases.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal([]byte(strings.ReplaceAll(string(b), "NaN", "null")), &doc))
	require.Equal(t, "plain", doc.Cases[0].Name)
	lin := evalJSON(t, "eval", "--hidden", golden("plain_h.npy"), "--weight", golden("plain_w.npy"), "--bias", golden("plain_b.npy"),
		"--targets", golden("plain_targets.npy"), "--device", "cpu", "--calibration", "--json")
	require.InDelta(t, doc.Cases[0].ECE, lin["ece"].(float64), 1e-5)
	// dL/dH through the partials (Backward) as through ForwardBackward.
	var dhs [][]float32
	for _, cal := range []string{"--calibration=false", "--calibration"} {
		dh := filepath.Join(dir, "dh"+cal+".npy")
		evalJSON(t, "eval", "--hidden", golden("plain_h.npy"), "--weight", golden("plain_w.npy"), "--bias", golden("plain_b.npy"),
			"--targets", golden("plain_targets.npy"), "--device", "cpu", cal, "--grad-hidden", dh, "--json")
		dhs = append(dhs, readNpy[float32](t, dh))
	}
	require.Len(t, dhs[1], len(dhs[0]))
	for k := range dhs[0] {
		require.InDelta(t, dhs[0][k], dhs[1][k], 1e-6*max(1, math.Abs(float64(dhs[0][k]))), "dH[%d]", k)
	}

	plotFile := filepath.Join(dir, "cal.svg")
	code, out, errOut := runCmd("eval", "--manifest", m, "--weight", weight, "--device", "cpu", "--calibration", "--seq-len", "5", "--plot", plotFile)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "ECE ")
	svg, err := os.ReadFile(plotFile)
	require.NoError(t, err)
	require.Contains(t, string(svg), "reliability")
	require.Contains(t, string(svg), "mean loss by position")
}

// TestEvalTopK: --topk adds the top-k accuracies, the mean reciprocal
// rank, the entropy and the calibration to --json (absent without), as
// torch gives them (testdata/golden's gen.py, lossfn.ranks) for logits,
// with a soft cap or a temperature, edge rows, and hidden states; equal in
// a manifest's shards merged; a bad list is refused naming the flag.
func TestEvalTopK(t *testing.T) {
	type gcase struct {
		Name    string
		TopK    map[string]*float64
		MRR     *float64
		Entropy *float64
	}
	read := func(file string) map[string]gcase {
		var doc struct{ Cases []gcase }
		b, err := os.ReadFile(file)
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal([]byte(strings.ReplaceAll(string(b), "NaN", "null")), &doc))
		m := map[string]gcase{}
		for _, c := range doc.Cases {
			m[c.Name] = c
		}
		return m
	}
	check := func(want gcase, got map[string]any) {
		t.Helper()
		for _, k := range []string{"1", "5"} {
			if want.TopK[k] == nil {
				require.Nil(t, got["topk"].(map[string]any)[k], "%s: top-%s", want.Name, k)
				continue
			}
			require.InDelta(t, *want.TopK[k], got["topk"].(map[string]any)[k], 1e-12, "%s: top-%s", want.Name, k)
		}
		for _, m := range []struct {
			key  string
			want *float64
			tol  float64
		}{{"mrr", want.MRR, 1e-12}, {"entropy", want.Entropy, 1e-5}} {
			require.Contains(t, got, m.key)
			if m.want == nil {
				require.Nil(t, got[m.key], "%s: %s", want.Name, m.key)
				continue
			}
			require.InDelta(t, *m.want, got[m.key], m.tol*max(1, *m.want), "%s: %s", want.Name, m.key)
		}
		require.Contains(t, got, "ece")
	}
	g := func(name string) string { return filepath.Join("..", "..", "testdata", "golden", name) }
	cases := read(g("cases.json"))
	for _, c := range []struct {
		name string
		args []string
	}{{"textbook", nil}, {"normal_37x101", nil}, {"softcap", []string{"--softcap", "30"}}, {"temperature", []string{"--temperature", "0.6"}},
		{"edges", nil}, {"ignore_in_range", []string{"--ignore-index", "2"}}, {"all_ignored", nil}} {
		got := evalJSON(t, append([]string{"eval", "--logits", g(c.name + "_logits.npy"), "--targets", g(c.name + "_targets.npy"),
			"--device", "cpu", "--topk", "1,5", "--json"}, c.args...)...)
		check(cases[c.name], got)
	}
	lcases := read(golden("cases.json"))
	got := evalJSON(t, "eval", "--hidden", golden("plain_h.npy"), "--weight", golden("plain_w.npy"), "--bias", golden("plain_b.npy"),
		"--targets", golden("plain_targets.npy"), "--device", "cpu", "--topk", "1,5", "--budget", "4096", "--json")
	check(lcases["plain"], got)

	dir := t.TempDir()
	m, weight, _ := corpustest.Write(t, dir, seed.New(t))
	base := []string{"eval", "--manifest", m, "--weight", weight, "--device", "cpu", "--json"}
	for _, k := range []string{"topk", "mrr", "entropy"} {
		require.NotContains(t, evalJSON(t, base...), k, "no rank metrics unless asked for")
	}
	one := evalJSON(t, append(base, "--topk", "1,3,10")...)
	var parts []string
	for i := range 3 {
		p := filepath.Join(dir, fmt.Sprintf("K_%d.json", i))
		evalJSON(t, append(base, "--topk", "1,3,10", "--shard", fmt.Sprintf("%d/3", i), "--stats-out", p)...)
		parts = append(parts, p)
	}
	merged := evalJSON(t, append([]string{"merge", "--json"}, parts...)...)
	require.Equal(t, one["topk"], merged["topk"])
	require.InEpsilon(t, one["mrr"], merged["mrr"], 1e-12)
	require.InEpsilon(t, one["entropy"], merged["entropy"], 1e-12)
	other := filepath.Join(dir, "K_other.json")
	evalJSON(t, append(base, "--topk", "1,5", "--shard", "1/3", "--stats-out", other)...)
	code, _, errOut := runCmd("merge", parts[0], other, parts[2])
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "flags")

	for _, bad := range []string{"5,1", "0", "1,1", "a", "2,", "2000000"} {
		code, out, errOut := runCmd(append(base, "--topk", bad)...)
		require.NotEqual(t, 0, code, bad)
		require.Empty(t, out)
		require.Contains(t, errOut, "--topk "+bad, bad)
	}
}
