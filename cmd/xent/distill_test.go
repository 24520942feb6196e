package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/internal/corpus/corpustest"
)

// distillGolden returns the file of a case of testdata/golden/distill and
// its cases.json entries by name.
func distillGolden(t *testing.T) (file func(name string) string, cases map[string]map[string]any) {
	file = func(name string) string { return filepath.Join("..", "..", "testdata", "golden", "distill", name) }
	b, err := os.ReadFile(file("cases.json"))
	require.NoError(t, err)
	var doc struct{ Cases []map[string]any }
	require.NoError(t, json.Unmarshal([]byte(strings.ReplaceAll(string(b), "NaN", "null")), &doc))
	cases = map[string]map[string]any{}
	for _, c := range doc.Cases {
		cases[c["name"].(string)] = c
	}
	return file, cases
}

// TestEvalTeacher: --teacher-ids and --teacher-logprobs add "kl", the
// mean of PyTorch's KL over the counted rows, with the options of the
// student (the soft cap, the temperature), beside --topk and
// --calibration in the same run, and through a manifest, its shards and
// xent merge.
func TestEvalTeacher(t *testing.T) {
	g, cases := distillGolden(t)
	for _, c := range []struct {
		name string
		args []string
	}{
		{"near", nil}, {"confident", nil}, {"kl_only", []string{"--temperature", "2"}},
		{"options", []string{"--softcap", "25", "--temperature", "0.7", "--label-smoothing", "0.1", "--z-loss", "1e-4"}},
	} {
		gc := cases[c.name]
		var tg []int64
		corpustest.ReadNpy(t, g(c.name+"_targets.npy"), &tg)
		counted := 0
		for _, v := range tg {
			if v != -100 {
				counted++
			}
		}
		want := gc["kl"].(float64) / float64(counted)
		args := append([]string{"eval", "--logits", g(c.name + "_logits.npy"), "--targets", g(c.name + "_targets.npy"),
			"--teacher-ids", g(c.name + "_ids.npy"), "--teacher-logprobs", g(c.name + "_logprobs.npy"), "--device", "cpu", "--json"}, c.args...)
		got := evalJSON(t, args...)
		require.InEpsilon(t, want, got["kl"], 1e-5, c.name)
		both := evalJSON(t, append(args, "--topk", "1,5", "--calibration")...)
		require.Equal(t, got["kl"], both["kl"], "%s: the KL beside the ranks and the calibration", c.name)
		require.Equal(t, got["loss"], both["loss"])
		require.Contains(t, both, "mrr")
		code, out, errOut := runCmd(args[:len(args)-len(c.args)-1]...)
		require.Equal(t, 0, code, errOut)
		require.Contains(t, out, "KL ")
	}
	// Without a teacher there is no "kl".
	got := evalJSON(t, "eval", "--logits", g("near_logits.npy"), "--targets", g("near_targets.npy"), "--device", "cpu", "--json")
	require.NotContains(t, got, "kl")

	// A manifest of two lines (one file twice), in one run and in two
	// shards merged: the same KL.
	dir := t.TempDir()
	abs := func(name string) string {
		p, err := filepath.Abs(g(name))
		require.NoError(t, err)
		return p
	}
	line := func() string {
		b, err := json.Marshal(map[string]string{"logits": abs("near_logits.npy"), "targets": abs("near_targets.npy"),
			"teacher_ids": abs("near_ids.npy"), "teacher_logprobs": abs("near_logprobs.npy")})
		require.NoError(t, err)
		return string(b)
	}
	m := filepath.Join(dir, "m.jsonl")
	require.NoError(t, os.WriteFile(m, []byte(line()+"\n"+line()+"\n"), 0o644))
	whole := evalJSON(t, "eval", "--manifest", m, "--device", "cpu", "--json")
	single := evalJSON(t, "eval", "--logits", g("near_logits.npy"), "--targets", g("near_targets.npy"),
		"--teacher-ids", g("near_ids.npy"), "--teacher-logprobs", g("near_logprobs.npy"), "--device", "cpu", "--json")
	require.InEpsilon(t, single["kl"], whole["kl"], 1e-12)
	var parts []string
	for i, s := range []string{"0/2", "1/2"} {
		p := filepath.Join(dir, "S"+string(rune('0'+i))+".json")
		evalJSON(t, "eval", "--manifest", m, "--device", "cpu", "--json", "--shard", s, "--stats-out", p)
		parts = append(parts, p)
	}
	merged := evalJSON(t, append([]string{"merge", "--json"}, parts...)...)
	require.Equal(t, whole["kl"], merged["kl"])

	// A manifest naming a teacher on one line only.
	plain, err := json.Marshal(map[string]string{"logits": abs("near_logits.npy"), "targets": abs("near_targets.npy")})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(m, []byte(line()+"\n"+string(plain)+"\n"), 0o644))
	code, _, errOut := runCmd("eval", "--manifest", m, "--device", "cpu")
	require.NotEqual(t, 0, code)
	require.Contains(t, errOut, "m.jsonl:2: a teacher's top-k on some lines only")
}

// TestEvalTeacherErrors: a bad teacher is an error naming the file, the
// row and the entry, and nothing is written.
func TestEvalTeacherErrors(t *testing.T) {
	g, _ := distillGolden(t)
	dir := t.TempDir()
	var ids []int64
	var lp []float32
	corpustest.ReadNpy(t, g("near_ids.npy"), &ids)
	corpustest.ReadNpy(t, g("near_logprobs.npy"), &lp)
	k := 7
	bad := func(name string, f func(ids []int64, lp []float32)) (string, string) {
		i, l := append([]int64(nil), ids...), append([]float32(nil), lp...)
		f(i, l)
		pi, pl := filepath.Join(dir, name+"_ids.npy"), filepath.Join(dir, name+"_lp.npy")
		n := len(i) / k
		i2, l2 := make([][]int64, n), make([][]float32, n)
		for r := range n {
			i2[r], l2[r] = i[r*k:(r+1)*k], l[r*k:(r+1)*k]
		}
		corpustest.SaveNpy(t, pi, i2)
		corpustest.SaveNpy(t, pl, l2)
		return pi, pl
	}
	rows := filepath.Join(dir, "rows.npy")
	for _, c := range []struct {
		name string
		f    func([]int64, []float32)
		want string
	}{
		{"repeat", func(i []int64, _ []float32) { i[3*k+1] = i[3*k] }, "teacher row 3, entry 1: class"},
		{"range", func(i []int64, _ []float32) { i[5*k+2] = 97 }, "teacher row 5, entry 2: class 97 is out of bounds [0, 97)"},
		{"nan", func(_ []int64, l []float32) { l[2*k] = float32(math.NaN()) }, "teacher row 2, entry 0: log-probability NaN"},
		{"mass", func(_ []int64, l []float32) { l[0] = 0 }, "teacher row 0: the probabilities sum to"},
	} {
		pi, pl := bad(c.name, c.f)
		code, _, errOut := runCmd("eval", "--logits", g("near_logits.npy"), "--targets", g("near_targets.npy"),
			"--teacher-ids", pi, "--teacher-logprobs", pl, "--device", "cpu", "--rows-out", rows)
		require.NotEqual(t, 0, code, c.name)
		require.Contains(t, errOut, c.want, c.name)
		require.Contains(t, errOut, pi, c.name)
		require.NoFileExists(t, rows, "nothing written")
	}
	// Shapes: another batch's rows, k apart, a 1-D file, one flag alone.
	pi, pl := bad("ok", func([]int64, []float32) {})
	corpustest.SaveNpy(t, filepath.Join(dir, "short.npy"), [][]float32{{-1}, {-2}})
	corpustest.SaveNpy(t, filepath.Join(dir, "flat.npy"), []int64{1, 2, 3})
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--teacher-ids", pi}, "--teacher-ids and --teacher-logprobs go together"},
		{[]string{"--teacher-ids", pi, "--teacher-logprobs", filepath.Join(dir, "short.npy")}, "the teacher's log-probabilities are 2 × 1"},
		{[]string{"--teacher-ids", filepath.Join(dir, "flat.npy"), "--teacher-logprobs", pl}, "must be an int32 or int64 array of rows, 2-D or more, got int64 of shape [3]"},
		{[]string{"--teacher-ids", pl, "--teacher-logprobs", pl}, "must be an int32 or int64 array of rows, 2-D or more, got float32"},
	} {
		code, _, errOut := runCmd(append([]string{"eval", "--logits", g("near_logits.npy"), "--targets", g("near_targets.npy"), "--device", "cpu", "--rows-out", rows}, c.args...)...)
		require.NotEqual(t, 0, code, c.want)
		require.Contains(t, errOut, c.want)
		require.NoFileExists(t, rows)
	}
}
