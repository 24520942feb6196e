package main

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/internal/spec"
)

// TestEvalBitsPerByte: --bytes N reports the log-loss's sum over the
// text's N bytes in bits, Σ nll / (ln 2 · N), from PyTorch's loss of the
// causal fixture, and the byte perplexity 2^bpb; --words W the word
// perplexity exp(Σ nll / W); the z-loss changes neither. A manifest's
// lines carry their own "bytes" and "words": the run, its shards merged
// and each line's report (--lines-out) give the same. Label smoothing,
// class weights, a negative count, "bytes" on some lines only and --bytes
// beside --manifest are refused, naming what; a run where nothing counts
// reports null (NaN on the text report).
func TestEvalBitsPerByte(t *testing.T) {
	want32, _ := causalGolden(t)
	nll := want32.Mean * float64(want32.Tokens) // PyTorch's, float64
	logits, ids := fixture("causal_logits.npy"), fixture("causal_ids.npy")
	bpbOf := func(got map[string]any) float64 {
		t.Helper()
		v, ok := got["bits_per_byte"].(float64)
		require.True(t, ok, "no bits_per_byte in %v", got)
		bp, ok := got["byte_perplexity"].(float64)
		require.True(t, ok, "no byte_perplexity in %v", got)
		require.InEpsilon(t, math.Exp2(v), bp, 1e-12, "the byte perplexity is 2^bpb")
		return v
	}
	base := []string{"eval", "--device", "cpu", "--json", "--shift", "--logits", logits, "--targets", ids}
	got := evalJSON(t, append(base, "--bytes", "40", "--words", "9")...)
	want := nll / (math.Ln2 * 40)
	require.True(t, spec.LossCloseIn(bpbOf(got), want, spec.LossTol), "bits per byte %v, PyTorch's %v", got["bits_per_byte"], want)
	wp := math.Exp(nll / 9)
	require.True(t, spec.LossCloseIn(math.Log(got["word_perplexity"].(float64)), math.Log(wp), spec.LossTol), "word perplexity %v, PyTorch's %v", got["word_perplexity"], wp)
	plain := evalJSON(t, base...)
	require.NotContains(t, plain, "bits_per_byte", "absent without --bytes")
	require.NotContains(t, plain, "word_perplexity", "absent without --words")
	z := evalJSON(t, append(base, "--bytes", "40", "--words", "9", "--z-loss", "1e-3")...)
	require.Greater(t, z["loss"].(float64), got["loss"].(float64), "the z-loss is in the loss")
	require.InEpsilon(t, bpbOf(got), bpbOf(z), 1e-6, "and not in the bits per byte")
	require.InEpsilon(t, got["word_perplexity"], z["word_perplexity"], 1e-6, "nor in the word perplexity")
	code, out, errOut := runCmd("eval", "--device", "cpu", "--shift", "--logits", logits, "--targets", ids, "--bytes", "40", "--words", "9")
	require.Equal(t, 0, code, errOut)
	require.Regexp(t, `bits/byte   [0-9.]+ \(over 40 bytes; byte perplexity [0-9.]+\)\n`, out)
	require.Regexp(t, `word ppl    [0-9.]+ \(over 9 words\)\n`, out)

	// With --stderr, their errors: the mean loss's over the 3 sequences
	// (two passes over PyTorch's rows), times the tokens over the bytes
	// (over ln 2) or the words; with a z-loss, none.
	s, w := causalClusters(t)
	mean, se := clusteredSE(s, w)
	const t2 = 4.302652729749464 // Student's t's 97.5% quantile, 2 degrees of freedom
	tokens := float64(want32.Tokens)
	se40 := evalJSON(t, append(base, "--bytes", "40", "--words", "9", "--stderr")...)
	require.InEpsilon(t, se*tokens/(math.Ln2*40), se40["bits_per_byte_stderr"], 1e-5)
	lo, hi := max(mean-t2*se, 0), mean+t2*se
	for k, v := range map[string][2]float64{
		"bits_per_byte_95":   {lo * tokens / (math.Ln2 * 40), hi * tokens / (math.Ln2 * 40)},
		"byte_perplexity_95": {math.Exp2(lo * tokens / (math.Ln2 * 40)), math.Exp2(hi * tokens / (math.Ln2 * 40))},
		"word_perplexity_95": {math.Exp(lo * tokens / 9), math.Exp(hi * tokens / 9)},
	} {
		ci := se40[k].([]any)
		require.InEpsilon(t, v[0], ci[0], 1e-5, k)
		require.InEpsilon(t, v[1], ci[1], 1e-5, k)
	}
	zse := evalJSON(t, append(base, "--bytes", "40", "--words", "9", "--stderr", "--z-loss", "1e-3")...)
	require.Contains(t, zse, "loss_stderr")
	for _, k := range []string{"bits_per_byte_stderr", "bits_per_byte_95", "byte_perplexity_95", "word_perplexity_95"} {
		require.NotContains(t, zse, k, "the loss's error has the z-loss in it")
	}
	code, out, errOut = runCmd("eval", "--device", "cpu", "--shift", "--logits", logits, "--targets", ids, "--bytes", "40", "--words", "9", "--stderr")
	require.Equal(t, 0, code, errOut)
	require.Regexp(t, `bits/byte   [0-9.]+ \(over 40 bytes; byte perplexity [0-9.]+\); 95% \[[0-9.]+, [0-9.]+\]\n`, out)
	require.Regexp(t, `word ppl    [0-9.]+ \(over 9 words\); 95% \[[0-9.]+, [0-9.]+\]\n`, out)

	dir := t.TempDir()
	cw := writeNpyFile(t, dir, "cw.npy", make([]float32, 29))
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--bytes", "40", "--label-smoothing", "0.1"}, "the text's measures (40 bytes) are of the log-loss, and --label-smoothing changes it"},
		{[]string{"--bytes", "40", "--words", "9", "--weights", cw}, "the text's measures (40 bytes, 9 words) are of the log-loss, and --weights (class weights) changes it"},
		{[]string{"--words", "9", "--label-smoothing", "0.1"}, "the text's measures (9 words) are of the log-loss"},
		{[]string{"--bytes", "-3"}, "--bytes -3: want the text's length in bytes, > 0 (0: none)"},
		{[]string{"--words", "-1"}, "--words -1: want the text's length in words, > 0 (0: none)"},
	} {
		code, out, errOut := runCmd(append([]string{"eval", "--device", "cpu", "--shift", "--logits", logits, "--targets", ids}, c.args...)...)
		require.Equal(t, 1, code, out)
		require.Contains(t, errOut, c.want)
	}

	al, err := filepath.Abs(logits)
	require.NoError(t, err)
	ai, err := filepath.Abs(ids)
	require.NoError(t, err)
	line := func(n string) string {
		return `{"logits": "` + al + `", "targets": "` + ai + `"` + n + "}\n"
	}
	m := filepath.Join(dir, "m.jsonl")
	require.NoError(t, os.WriteFile(m, []byte(line(`, "bytes": 40, "words": 9`)+line(`, "bytes": 60, "words": 11`)), 0o644))
	lines := filepath.Join(dir, "lines.jsonl")
	got = evalJSON(t, "eval", "--device", "cpu", "--json", "--shift", "--manifest", m, "--lines-out", lines)
	want = 2 * nll / (math.Ln2 * 100)
	require.True(t, spec.LossCloseIn(bpbOf(got), want, spec.LossTol), "a manifest: %v, PyTorch's %v", got["bits_per_byte"], want)
	require.True(t, spec.LossCloseIn(math.Log(got["word_perplexity"].(float64)), 2*nll/20, spec.LossTol), "a manifest: word perplexity %v", got["word_perplexity"])
	each := readLines(t, lines)
	require.Len(t, each, 2)
	for k, n := range [][2]float64{{40, 9}, {60, 11}} {
		require.True(t, spec.LossCloseIn(bpbOf(each[k]), nll/(math.Ln2*n[0]), spec.LossTol), "line %d", k+1)
		require.True(t, spec.LossCloseIn(math.Log(each[k]["word_perplexity"].(float64)), nll/n[1], spec.LossTol), "line %d", k+1)
	}
	var parts []string
	for i, s := range []string{"0/2", "1/2"} {
		p := filepath.Join(dir, []string{"s0.json", "s1.json"}[i])
		evalJSON(t, "eval", "--device", "cpu", "--json", "--shift", "--manifest", m, "--shard", s, "--stats-out", p)
		parts = append(parts, p)
	}
	merged := evalJSON(t, append([]string{"merge", "--json"}, parts...)...)
	require.InEpsilon(t, bpbOf(got), bpbOf(merged), 1e-12, "2 shards merged")
	require.InEpsilon(t, got["word_perplexity"], merged["word_perplexity"], 1e-12, "2 shards merged")
	// Their errors over both lines' 6 sequences and 100 bytes, whole and
	// from the shards merged.
	_, se6 := clusteredSE(append(s, s...), append(w, w...))
	for i, s := range []string{"0/2", "1/2"} {
		evalJSON(t, "eval", "--device", "cpu", "--json", "--shift", "--stderr", "--manifest", m, "--shard", s, "--stats-out", parts[i])
	}
	for _, r := range []map[string]any{
		evalJSON(t, "eval", "--device", "cpu", "--json", "--shift", "--stderr", "--manifest", m),
		evalJSON(t, append([]string{"merge", "--json"}, parts...)...),
	} {
		require.InEpsilon(t, se6*2*tokens/(math.Ln2*100), r["bits_per_byte_stderr"], 1e-5)
	}

	for _, c := range []struct {
		text, want string
	}{
		{line(`, "bytes": 40`) + line(""), `m.jsonl:2: "bytes" on some lines only (line 1 has them): a measure of the whole text needs every line's`},
		{line(`, "bytes": -5`), `m.jsonl:1: "bytes" -5: want the text's length in bytes, > 0 (or no "bytes")`},
	} {
		require.NoError(t, os.WriteFile(m, []byte(c.text), 0o644))
		code, out, errOut := runCmd("eval", "--device", "cpu", "--shift", "--manifest", m)
		require.Equal(t, 1, code, out)
		require.Contains(t, errOut, c.want)
	}
	code, _, errOut = runCmd("eval", "--device", "cpu", "--manifest", m, "--bytes", "40")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "--bytes and --words (a line's \"bytes\", \"words\")")

	none := writeNpyFile(t, dir, "none.npy", []int64{-100, -100})
	null := evalJSON(t, "eval", "--device", "cpu", "--json", "--logits", writeNpyFile(t, dir, "z.npy", [2][3]float32{}), "--targets", none, "--bytes", "7", "--words", "2")
	for _, k := range []string{"bits_per_byte", "byte_perplexity", "word_perplexity"} {
		require.Contains(t, null, k)
		require.Nil(t, null[k], "%s: nothing counts", k)
	}
	code, out, errOut = runCmd("eval", "--device", "cpu", "--stderr", "--logits", filepath.Join(dir, "z.npy"), "--targets", none, "--bytes", "7", "--words", "2")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "bits/byte   NaN (over 7 bytes; byte perplexity NaN); 95% [NaN, NaN]\n", "the text's NaN, as the report's null")
	require.Contains(t, out, "word ppl    NaN (over 2 words); 95% [NaN, NaN]\n")
}
