package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/internal/spec"
)

// TestEvalLogitShards: the causal fixture's logits [3 × 6 × 29] split by
// vocabulary into three files of 10, 12 and 7 classes (a mapped float32
// .npy, a .safetensors tensor, a streamed float64 .npy), given as
// --logits-shard in class order, give PyTorch's loss and rows, and what
// the whole file gives with every option (the top-k, the calibration, the
// loss by position, token and class weights, smoothing, z-loss, soft cap
// and temperature), within the shards' merging; so does a manifest line of
// "logits_shards". One shard, shards of other rows, a target past the
// vocabulary they add up to and an output over a shard are refused.
func TestEvalLogitShards(t *testing.T) {
	want, _ := causalGolden(t)
	dir := t.TempDir()
	logits, ids := fixture("causal_logits.npy"), fixture("causal_ids.npy")
	x := readNpy[float32](t, logits)
	cut := func(c0, c1 int) (v []float32) {
		for i := range 18 {
			v = append(v, x[i*29+c0:i*29+c1]...)
		}
		return v
	}
	var s0 [3][6][10]float32
	var s2 [3][6][7]float64
	a, c := cut(0, 10), cut(22, 29)
	for i := range 18 {
		for j := range 10 {
			s0[i/6][i%6][j] = a[i*10+j]
		}
		for j := range 7 {
			s2[i/6][i%6][j] = float64(c[i*7+j])
		}
	}
	p0, p2 := writeNpyFile(t, dir, "s0.npy", s0), writeNpyFile(t, dir, "s2.npy", s2)
	p1 := filepath.Join(dir, "s1.safetensors")
	writeSafetensors(t, p1, map[string][]float32{"logits": cut(10, 22)}, map[string][]uint64{"logits": {3, 6, 12}})
	shards := []string{"--logits-shard", p0, "--logits-shard", p1 + ":logits", "--logits-shard", p2}

	rowsOut := filepath.Join(dir, "rows.npy")
	got := evalJSON(t, append([]string{"eval", "--device", "cpu", "--json", "--shift", "--targets", ids, "--rows-out", rowsOut}, shards...)...)
	require.True(t, spec.LossCloseIn(got["loss"].(float64), want.Mean, spec.LossTol), "loss %v, PyTorch %v", got["loss"], want.Mean)
	require.EqualValues(t, want.Tokens, got["tokens"])
	require.Equal(t, []int{3, 6}, npyShape(t, rowsOut))
	for i, r := range readNpy[float32](t, rowsOut) {
		require.True(t, spec.LossCloseIn(float64(r), want.Rows[i], spec.LossTol), "row %d: %v, PyTorch %v", i, r, want.Rows[i])
	}

	tw := writeNpyFile(t, dir, "tw.npy", [3][6]float32{{1, 2, 0, 1, 3, 1}, {1, 1, 1, 0.5, 1, 1}, {2, 2, 2, 2, 2, 2}})
	var cw [29]float32
	for c := range cw {
		cw[c] = float32(1 + c%5)
	}
	cwp := writeNpyFile(t, dir, "cw.npy", cw)
	for _, opts := range [][]string{
		{"--topk", "1,3,10", "--by-position", "--stderr"},
		{"--token-weights", tw, "--label-smoothing", "0.1", "--z-loss", "1e-3", "--softcap", "5", "--temperature", "1.5"},
		{"--weights", cwp, "--calibration"},
	} {
		base := append([]string{"eval", "--device", "cpu", "--json", "--shift", "--targets", ids}, opts...)
		whole := evalJSON(t, append(base, "--logits", logits)...)
		split := evalJSON(t, append(base, shards...)...)
		require.Equal(t, keysOf(whole), keysOf(split), "%v", opts)
		for k, w := range whole {
			checkClose(t, k, w, split[k], opts)
		}
	}

	// A manifest line of the shards.
	m := filepath.Join(dir, "m.jsonl")
	require.NoError(t, os.WriteFile(m, []byte(`{"logits_shards": ["s0.npy", "s1.safetensors:logits", "s2.npy"], "targets": "`+mustAbs(t, ids)+`"}`+"\n"), 0o644))
	line := evalJSON(t, "eval", "--device", "cpu", "--json", "--shift", "--manifest", m)
	require.Equal(t, got["loss"], line["loss"], "a manifest line of the shards")

	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--logits-shard", p0, "--targets", ids}, 2, "--logits-shard, given once for each of two or more shards"},
		{[]string{"--logits-shard", p0, "--logits-shard", p2, "--logits", logits, "--targets", ids}, 2, "without --logits"},
		{[]string{"--logits-shard", p0, "--logits-shard", fixture("logits_f32.npy"), "--targets", ids}, 1, fixture("logits_f32.npy") + ": rows [13], the first shard's (" + p0 + ") are [3 6]: the shards of a vocabulary hold the same rows"},
		{[]string{"--logits-shard", p0, "--logits-shard", p2, "--targets", ids}, 1, "out of bounds [0, 17)"},
		{[]string{"--logits-shard", p0, "--logits-shard", p2, "--targets", ids, "--rows-out", p2}, 1, "--rows-out " + p2 + ": the same file as --logits-shard " + p2},
	} {
		code, out, errOut := runCmd(append([]string{"eval", "--device", "cpu", "--shift"}, c.args...)...)
		require.Equal(t, c.code, code, "%v: %s", c.args, out)
		require.Contains(t, errOut, c.want)
	}
	require.NoError(t, os.WriteFile(m, []byte(`{"logits_shards": ["s0.npy"], "targets": "t.npy"}`+"\n"), 0o644))
	code, _, errOut := runCmd("eval", "--device", "cpu", "--manifest", m)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, `m.jsonl:1: "logits_shards" names 1 files: a vocabulary split across files names two or more (one is "logits")`)
}

func keysOf(o map[string]any) []string {
	var ks []string
	for k := range o {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func mustAbs(t *testing.T, p string) string {
	a, err := filepath.Abs(p)
	require.NoError(t, err)
	return a
}

// checkClose requires the value of key k in a split run's report to be
// the whole run's: counts equal, floats within 1e-6 relative (the shards'
// partials merge in another order), through arrays and objects.
func checkClose(t *testing.T, k string, whole, split any, opts []string) {
	t.Helper()
	switch w := whole.(type) {
	case float64:
		s, ok := split.(float64)
		require.True(t, ok, "%s: %v, the whole file's %v (%v)", k, split, whole, opts)
		if k == "tokens" || k == "ignored" || strings.HasSuffix(k, ".rows") || w == s {
			require.Equal(t, w, s, "%s (%v)", k, opts)
			return
		}
		require.InEpsilon(t, w, s, 1e-6, "%s (%v)", k, opts)
	case []any:
		s := split.([]any)
		require.Len(t, s, len(w), k)
		for i := range w {
			checkClose(t, k, w[i], s[i], opts)
		}
	case map[string]any:
		s := split.(map[string]any)
		require.Equal(t, keysOf(w), keysOf(s), k)
		for kk := range w {
			checkClose(t, k+"."+kk, w[kk], s[kk], opts)
		}
	default:
		if k == "device" {
			return
		}
		require.Equal(t, whole, split, "%s (%v)", k, opts)
	}
}
