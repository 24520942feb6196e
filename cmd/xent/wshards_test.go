package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// splitClassifier writes the classifier w (rows of d features) in three
// shards, in class order: a float32 .npy of classes [0, c1), a
// .safetensors tensor "lm_head.weight" of the one class c1 and a float64
// .npy of the rest, and returns their --weight-shard arguments and paths.
func splitClassifier(t *testing.T, dir, name string, w []float32, d, c1 int) (args, paths []string) {
	v := len(w) / d
	a := make([][]float32, c1)
	for c := range a {
		a[c] = w[c*d : (c+1)*d]
	}
	c := make([][]float64, v-c1-1)
	for k := range c {
		for _, x := range w[(c1+1+k)*d : (c1+2+k)*d] {
			c[k] = append(c[k], float64(x))
		}
	}
	p0, p2 := writeNpyFile(t, dir, name+"_w0.npy", a), writeNpyFile(t, dir, name+"_w2.npy", c)
	p1 := filepath.Join(dir, name+"_w1.safetensors")
	writeSafetensors(t, p1, map[string][]float32{"lm_head.weight": w[c1*d : (c1+1)*d]}, map[string][]uint64{"lm_head.weight": {1, uint64(d)}})
	paths = []string{p0, p1, p2}
	return []string{"--weight-shard", p0, "--weight-shard", p1, "--weight-shard", p2}, paths
}

// TestEvalWeightShards: hidden states through a classifier split by
// vocabulary across files (--weight-shard, "weight_shards") give PyTorch's
// loss and gradients (dL/dW the shards' rows in class order), on the CPU
// and on OpenCL where it is; the unsplit classifier's report key by key
// with every option; a teacher's KL as PyTorch's; and the refusals.
func TestEvalWeightShards(t *testing.T) {
	dir := t.TempDir()
	c := plainCase(t)
	shards, paths := splitClassifier(t, dir, "plain", readNpy[float32](t, golden("plain_w.npy")), c.D, 100)
	den := counted(t, golden("plain_targets.npy"))
	devs := linearDevices()
	base := []string{"eval", "--hidden", golden("plain_h.npy"), "--bias", golden("plain_b.npy"), "--targets", golden("plain_targets.npy"), "--json"}
	for _, dev := range devs {
		dh, dw := filepath.Join(dir, "dh.npy"), filepath.Join(dir, "dw.npy")
		got := evalJSON(t, append(append(base, "--grad-hidden", dh, "--grad-weight", dw, "--device", dev, "--budget", "4096"), shards...)...)
		require.InDelta(t, c.Mean, got["loss"], 1e-5*c.Mean, dev)
		require.Equal(t, []int{c.V, c.D}, npyShape(t, dw))
		requirePlainGrads(t, dh, dw, den, dev)
	}

	// The unsplit classifier's report, key by key, with every option.
	tw := make([]float32, 13)
	cw := make([]float32, c.V)
	for i := range tw {
		tw[i] = float32(i%4) * 0.5
	}
	for k := range cw {
		cw[k] = float32(1 + k%3)
	}
	twp, cwp := writeNpyFile(t, dir, "tw.npy", tw), writeNpyFile(t, dir, "cw.npy", cw)
	for _, opts := range [][]string{
		{"--topk", "1,3,10", "--calibration", "--stderr"},
		{"--token-weights", twp, "--label-smoothing", "0.1", "--z-loss", "1e-3", "--softcap", "5", "--temperature", "1.5", "--topk", "5"},
		{"--weights", cwp, "--label-smoothing", "0.05", "--calibration"},
	} {
		args := append(append([]string{}, base...), append(opts, "--device", "cpu")...)
		whole := evalJSON(t, append(args, "--weight", golden("plain_w.npy"))...)
		split := evalJSON(t, append(args, shards...)...)
		require.Equal(t, keysOf(whole), keysOf(split), "%v", opts)
		for k, w := range whole {
			checkClose(t, k, w, split[k], opts)
		}
	}

	// A teacher's KL over the shards: PyTorch's, and the unsplit one's.
	g, cases := distillGolden(t)
	lc := cases["linear_plain"]
	lshards, _ := splitClassifier(t, dir, "distill", readNpy[float32](t, g("linear_plain_w.npy")), int(lc["d"].(float64)), 70)
	n := counted(t, g("linear_plain_targets.npy"))
	dargs := []string{"eval", "--hidden", g("linear_plain_h.npy"), "--bias", g("linear_plain_b.npy"), "--targets", g("linear_plain_targets.npy"),
		"--teacher-ids", g("linear_plain_ids.npy"), "--teacher-logprobs", g("linear_plain_logprobs.npy"), "--topk", "1,5", "--stderr", "--json"}
	for _, dev := range devs {
		split := evalJSON(t, append(append(dargs, "--device", dev), lshards...)...)
		require.InEpsilon(t, lc["kl"].(float64)/n, split["kl"], 1e-5, "PyTorch's KL on %s", dev)
	}
	dargs = append(dargs, "--device", "cpu")
	split := evalJSON(t, append(dargs, lshards...)...)
	whole := evalJSON(t, append(dargs, "--weight", g("linear_plain_w.npy"))...)
	for k, w := range whole {
		checkClose(t, k, w, split[k], nil)
	}

	// A manifest line of the shards.
	m := filepath.Join(dir, "m.jsonl")
	line, err := json.Marshal(map[string]any{"hidden": mustAbs(t, golden("plain_h.npy")), "weight_shards": paths,
		"bias": mustAbs(t, golden("plain_b.npy")), "targets": mustAbs(t, golden("plain_targets.npy"))})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(m, append(line, '\n'), 0o644))
	one := evalJSON(t, "eval", "--manifest", m, "--device", "cpu", "--json", "--weight", golden("plain_w.npy"))
	direct := evalJSON(t, append(append(base, "--device", "cpu"), shards...)...)
	require.Equal(t, direct["loss"], one["loss"], "a manifest line of the shards (its shards, not --weight)")

	// Refusals: usage, features apart, a bias of another length, a
	// teacher with class weights, an output over a shard.
	narrow := writeNpyFile(t, dir, "narrow.npy", [][]float32{{1, 2}, {3, 4}})
	short := writeNpyFile(t, dir, "short_b.npy", []float32{1, 2, 3})
	rows := filepath.Join(dir, "rows.npy")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--weight-shard", paths[0]}, 2, "--weight-shard, given once for each of two or more shards"},
		{append([]string{"--weight", golden("plain_w.npy")}, shards...), 2, "without --logits and --weight"},
		{[]string{"--weight-shard", paths[0], "--weight-shard", narrow}, 1, narrow + ": 2 features per class, the hidden states of " + golden("plain_h.npy") + " have 33"},
		{append([]string{"--bias", short}, shards...), 1, short + ": expected 257 bias values to match the 257 classes of " + paths[0] + " + " + paths[1] + " + " + paths[2] + ", got 3"},
		{append([]string{"--weights", cwp, "--teacher-ids", g("linear_plain_ids.npy"), "--teacher-logprobs", g("linear_plain_logprobs.npy")}, shards...), 1, "a teacher's KL over a classifier's shards takes no class weights"},
		{append([]string{"--grad-weight", paths[2]}, shards...), 1, "--grad-weight " + paths[2] + ": the same file as --weight-shard " + paths[2]},
	} {
		args := append([]string{"eval", "--device", "cpu", "--hidden", golden("plain_h.npy"), "--targets", golden("plain_targets.npy"), "--rows-out", rows}, c.args...)
		code, out, errOut := runCmd(args...)
		require.Equal(t, c.code, code, "%v: %s", c.args, out)
		require.Contains(t, errOut, c.want)
		require.NoFileExists(t, rows, "nothing written")
	}
}
