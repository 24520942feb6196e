package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/internal/spec"
)

// TestEvalByPosition: the loss by position takes the sequences' length
// from the files' shapes (--by-position, or --plot alone): the causal
// fixture's [3 × 6] ids give PyTorch's rows averaged position by
// position, and what --seq-len 6 gives, bit for bit. A manifest of that
// file and of a [2 × 4] one merges position by position (the shorter has
// nothing at 4 and 5). Rows of no sequence are an error naming the file.
func TestEvalByPosition(t *testing.T) {
	want, _ := causalGolden(t)
	rows := want.Rows
	require.Len(t, rows, 18)
	dir := t.TempDir()
	logits, ids := fixture("causal_logits.npy"), fixture("causal_ids.npy")
	x := readNpy[float32](t, logits)
	tg := readNpy[int64](t, ids)

	// want's position t: the mean of PyTorch's rows (b, t) of the first
	// nb sequences cut to length n, counted where the next id is no -100.
	var sum, den [6]float64
	add := func(nb, n int) {
		for b := range nb {
			for t := range n - 1 {
				if tg[b*6+t+1] != -100 {
					sum[t] += rows[b*6+t]
					den[t]++
				}
			}
		}
	}
	check := func(name string, got map[string]any, n int) {
		t.Helper()
		bp, ok := got["by_position"].([]any)
		require.True(t, ok, "%s: no by_position in %v", name, got)
		require.Len(t, bp, n, name)
		for k, v := range bp {
			if den[k] == 0 {
				require.Nil(t, v, "%s: position %d counts nothing", name, k)
				continue
			}
			require.True(t, spec.LossCloseIn(v.(float64), sum[k]/den[k], spec.LossTol), "%s: position %d: %v, PyTorch %v", name, k, v, sum[k]/den[k])
		}
	}
	add(3, 6)
	got := evalJSON(t, "eval", "--device", "cpu", "--json", "--shift", "--by-position", "--logits", logits, "--targets", ids)
	check("--by-position", got, 6)
	given := evalJSON(t, "eval", "--device", "cpu", "--json", "--shift", "--seq-len", "6", "--logits", logits, "--targets", ids)
	require.Equal(t, given["by_position"], got["by_position"], "the same as --seq-len 6")
	plot := filepath.Join(dir, "pos.svg")
	got = evalJSON(t, "eval", "--device", "cpu", "--json", "--shift", "--plot", plot, "--logits", logits, "--targets", ids)
	check("--plot", got, 6)
	st, err := os.Stat(plot)
	require.NoError(t, err)
	require.Positive(t, st.Size())

	// The first 4 positions of the first 2 sequences, a file of their own.
	var x4 [2][4][29]float32
	var t4 [2][4]int64
	for b := range 2 {
		for p := range 4 {
			copy(x4[b][p][:], x[(b*6+p)*29:])
			t4[b][p] = tg[b*6+p]
		}
	}
	l4, i4 := writeNpyFile(t, dir, "l4.npy", x4), writeNpyFile(t, dir, "i4.npy", t4)
	al, err := filepath.Abs(logits)
	require.NoError(t, err)
	ai, err := filepath.Abs(ids)
	require.NoError(t, err)
	m := filepath.Join(dir, "m.jsonl")
	require.NoError(t, os.WriteFile(m, []byte(`{"logits": "`+l4+`", "targets": "`+i4+`"}`+"\n"+`{"logits": "`+al+`", "targets": "`+ai+`"}`+"\n"), 0o644))
	add(2, 4)
	got = evalJSON(t, "eval", "--device", "cpu", "--json", "--shift", "--by-position", "--manifest", m)
	check("a manifest of [2 × 4] and [3 × 6]", got, 6)
	// Its shards' partials merge into the same.
	var parts []string
	for i, s := range []string{"0/2", "1/2"} {
		p := filepath.Join(dir, []string{"p0.json", "p1.json"}[i])
		evalJSON(t, "eval", "--device", "cpu", "--json", "--shift", "--by-position", "--manifest", m, "--shard", s, "--stats-out", p)
		parts = append(parts, p)
	}
	merged := evalJSON(t, append([]string{"merge", "--json"}, parts...)...)
	for k, v := range merged["by_position"].([]any) {
		if v == nil {
			require.Nil(t, got["by_position"].([]any)[k])
			continue
		}
		require.InEpsilon(t, got["by_position"].([]any)[k].(float64), v.(float64), 1e-12, "merged position %d", k)
	}

	// 1-D rows and targets: no sequence to take a length from.
	flatIDs := writeNpyFile(t, dir, "flat_ids.npy", tg[:13])
	for _, flag := range [][]string{{"--by-position"}, {"--plot", filepath.Join(dir, "no.svg")}} {
		code, out, errOut := runCmd(append([]string{"eval", "--device", "cpu", "--logits", fixture("logits_f32.npy"), "--targets", flatIDs}, flag...)...)
		require.Equal(t, 1, code, out)
		require.Contains(t, errOut, flatIDs+": the loss by position (--by-position, or --plot without --calibration) needs the sequences' length")
		require.NoFileExists(t, filepath.Join(dir, "no.svg"))
	}
}
