package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/internal/corpus"
	"github.com/xentlab/xent/internal/corpus/corpustest"
	"github.com/xentlab/xent/internal/seed"
)

// readLines reads a --lines-out file: a JSON object a line.
func readLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var o map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &o), sc.Text())
		out = append(out, o)
	}
	require.NoError(t, sc.Err())
	return out
}

// TestEvalLinesOut: --lines-out writes each line's own report, in the
// manifest's order, each the report xent eval gives that line's files
// alone (every key, bit for bit), with its number and rows' file; their
// counts add up to the run's and their sums to its sum. With --shard,
// the shard's lines. Without --manifest it is a usage error; over an
// input, or when a line fails, nothing is written.
func TestEvalLinesOut(t *testing.T) {
	dir := t.TempDir()
	m, weight, _ := corpustest.Write(t, dir, seed.New(t))
	out := filepath.Join(dir, "L.jsonl")
	total := evalJSON(t, "eval", "--manifest", m, "--weight", weight, "--device", "cpu", "--json", "--lines-out", out, "--topk", "1,5")
	man, err := corpus.ReadManifest(m, weight)
	require.NoError(t, err)
	got := readLines(t, out)
	require.Len(t, got, len(man.Lines))
	var tokens, ignored, sum float64
	for k, l := range man.Lines {
		args := []string{"eval", "--device", "cpu", "--json", "--topk", "1,5"}
		for _, f := range [][2]string{{"--logits", l.Logits}, {"--hidden", l.Hidden}, {"--weight", l.Weight}, {"--bias", l.Bias}, {"--targets", l.Targets}, {"--token-weights", l.Weights}} {
			if f[1] != "" {
				args = append(args, f[0], f[1])
			}
		}
		alone := evalJSON(t, args...)
		g := got[k]
		require.EqualValues(t, l.N, g["line"])
		require.Equal(t, l.RowsFile(), g["file"])
		delete(g, "line")
		delete(g, "file")
		require.Equal(t, alone, g, "line %d: its report, as xent eval gives its files alone", l.N)
		tokens += g["tokens"].(float64)
		ignored += g["ignored"].(float64)
		sum += g["sum"].(float64)
	}
	require.Equal(t, total["tokens"], tokens)
	require.Equal(t, total["ignored"], ignored)
	require.InEpsilon(t, total["sum"], sum, 1e-12)

	shard := filepath.Join(dir, "L1.jsonl")
	evalJSON(t, "eval", "--manifest", m, "--weight", weight, "--device", "cpu", "--json", "--shard", "1/2", "--lines-out", shard)
	var ns, want []float64
	for _, o := range readLines(t, shard) {
		ns = append(ns, o["line"].(float64))
	}
	for _, l := range man.Shard(1, 2) {
		want = append(want, float64(l.N))
	}
	require.Len(t, want, 3)
	require.Equal(t, want, ns, "shard 1/2: the lines of odd index")

	code, _, errOut := runCmd("eval", "--logits", filepath.Join(dir, "l1.npy"), "--targets", filepath.Join(dir, "t1.npy"), "--lines-out", filepath.Join(dir, "x.jsonl"))
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "--shard, --stats-out and --lines-out go with --manifest")
	before, err := os.ReadFile(m)
	require.NoError(t, err)
	code, _, errOut = runCmd("eval", "--manifest", m, "--weight", weight, "--device", "cpu", "--lines-out", m)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "--lines-out "+m+": the same file as --manifest")
	after, err := os.ReadFile(m)
	require.NoError(t, err)
	require.Equal(t, before, after)
	// A line that fails (its targets out of bounds): no lines written.
	bad := filepath.Join(dir, "bad.jsonl")
	require.NoError(t, os.WriteFile(bad, append(before, []byte(`{"logits": "l1.npy", "targets": "t1.npy"}`+"\n"+`{"logits": "l1.npy", "targets": "t2.npy"}`+"\n")...), 0o644))
	fresh := filepath.Join(dir, "fresh.jsonl")
	code, _, errOut = runCmd("eval", "--manifest", bad, "--weight", weight, "--device", "cpu", "--lines-out", fresh)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "bad.jsonl:10: "+filepath.Join(dir, "t2.npy")+": expected 37 targets")
	require.NoFileExists(t, fresh)
}
