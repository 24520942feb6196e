package main

import (
	"encoding/json"
	"fmt"
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
		want := cases[c.name]["kl"].(float64) / counted(t, g(c.name+"_targets.npy"))
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
		{[]string{"--teacher-ids", filepath.Join(dir, "flat.npy"), "--teacher-logprobs", pl}, "must be an integer array of rows (int64, int32, ...), 2-D or more, got int64 of shape [3]"},
		{[]string{"--teacher-ids", pl, "--teacher-logprobs", pl}, "must be an integer array of rows (int64, int32, ...), 2-D or more, got float32"},
	} {
		code, _, errOut := runCmd(append([]string{"eval", "--logits", g("near_logits.npy"), "--targets", g("near_targets.npy"), "--device", "cpu", "--rows-out", rows}, c.args...)...)
		require.NotEqual(t, 0, code, c.want)
		require.Contains(t, errOut, c.want)
		require.NoFileExists(t, rows)
	}
}

// TestEvalTeacherShards: a teacher's KL over logits split by vocabulary
// (--logits-shard, "logits_shards") is PyTorch's, and the unsplit file's
// report key by key, with the student's options, beside the ranks and the
// calibration; a bad teacher row names the files and the row.
func TestEvalTeacherShards(t *testing.T) {
	g, cases := distillGolden(t)
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		args []string
	}{
		{"near", []string{"--stderr"}}, {"confident", []string{"--topk", "1,5", "--calibration"}}, {"kl_only", []string{"--temperature", "2"}},
		{"options", []string{"--softcap", "25", "--temperature", "0.7", "--label-smoothing", "0.1", "--z-loss", "1e-4"}},
	} {
		x, shape := readNpy[float32](t, g(c.name+"_logits.npy")), npyShape(t, g(c.name+"_logits.npy"))
		v := shape[1]
		cuts := []int{0, v / 3, v/3 + 1, v} // a shard of one class
		var shards []string
		for k := range len(cuts) - 1 {
			s := make([][]float32, shape[0])
			for i := range s {
				s[i] = x[i*v+cuts[k] : i*v+cuts[k+1]]
			}
			p := filepath.Join(dir, c.name+"_s"+string(rune('0'+k))+".npy")
			corpustest.SaveNpy(t, p, s)
			shards = append(shards, "--logits-shard", p)
		}
		base := append([]string{"eval", "--targets", g(c.name + "_targets.npy"), "--teacher-ids", g(c.name + "_ids.npy"),
			"--teacher-logprobs", g(c.name + "_logprobs.npy"), "--device", "cpu", "--json"}, c.args...)
		split := evalJSON(t, append(base, shards...)...)
		require.InEpsilon(t, cases[c.name]["kl"].(float64)/counted(t, g(c.name+"_targets.npy")), split["kl"], 1e-5, "%s: PyTorch's KL", c.name)
		whole := evalJSON(t, append(base, "--logits", g(c.name+"_logits.npy"))...)
		require.Equal(t, keysOf(whole), keysOf(split), c.name)
		for k, w := range whole {
			checkClose(t, k, w, split[k], c.args)
		}
		if c.name != "near" {
			continue
		}
		// A manifest line of the shards with the teacher.
		m := filepath.Join(dir, "m.jsonl")
		b, err := json.Marshal(map[string]any{"logits_shards": []string{shards[1], shards[3], shards[5]}, "targets": mustAbs(t, g("near_targets.npy")),
			"teacher_ids": mustAbs(t, g("near_ids.npy")), "teacher_logprobs": mustAbs(t, g("near_logprobs.npy"))})
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(m, append(b, '\n'), 0o644))
		line := evalJSON(t, "eval", "--manifest", m, "--device", "cpu", "--json")
		require.Equal(t, split["kl"], line["kl"], "a manifest line of the shards")

		// A teacher class out of the shards' vocabulary, and one twice.
		flat := readNpy[int64](t, g("near_ids.npy"))
		ids := make([][]int64, len(flat)/7)
		for i := range ids {
			ids[i] = flat[i*7 : (i+1)*7]
		}
		ids[5][2] = int64(v)
		bad := filepath.Join(dir, "bad_ids.npy")
		corpustest.SaveNpy(t, bad, ids)
		rows := filepath.Join(dir, "rows.npy")
		code, _, errOut := runCmd(append([]string{"eval", "--targets", g("near_targets.npy"), "--teacher-ids", bad,
			"--teacher-logprobs", g("near_logprobs.npy"), "--device", "cpu", "--rows-out", rows}, shards...)...)
		require.Equal(t, 1, code)
		require.Contains(t, errOut, bad)
		require.Contains(t, errOut, "teacher row 5, entry 2: class 97 is out of bounds [0, 97)")
		require.NoFileExists(t, rows, "nothing written")
	}
}

// TestEvalKLStdErr: --stderr with a teacher reports the mean KL's
// standard error over the clusters ("kl_stderr") and its 95% interval
// ("kl_95"): of PyTorch's per-row KL (1-D rows: each its own cluster) of
// the golden cases "near" (logits) and "linear_plain" (hidden states
// through the fused linear), the interval's t that of Student's t's two
// tails of 5%; token-weighted; a manifest of the logits in two lines and
// its shards merged give the same.
func TestEvalKLStdErr(t *testing.T) {
	g, _ := distillGolden(t)
	for _, c := range []struct{ name, rows string }{{"near", "--logits"}, {"linear_plain", "--hidden"}} {
		args := []string{"eval", c.rows, g(c.name + map[string]string{"--logits": "_logits.npy", "--hidden": "_h.npy"}[c.rows]),
			"--targets", g(c.name + "_targets.npy"), "--teacher-ids", g(c.name + "_ids.npy"), "--teacher-logprobs", g(c.name + "_logprobs.npy"),
			"--device", "cpu", "--json", "--stderr"}
		if c.rows == "--hidden" {
			args = append(args, "--weight", g(c.name+"_w.npy"), "--bias", g(c.name+"_b.npy"))
		}
		got := evalJSON(t, args...)
		kls, tg := readNpy[float64](t, g(c.name+"_kl.npy")), readNpy[int64](t, g(c.name+"_targets.npy"))
		var rows []float64
		for i, v := range tg {
			if v != -100 {
				rows = append(rows, kls[i])
			}
		}
		m, se := clusteredSE(rows, ones(len(rows)))
		require.InEpsilon(t, m, got["kl"], 1e-5, c.name)
		require.InEpsilon(t, se, got["kl_stderr"], 1e-4, "%s: PyTorch's rows", c.name)
		ci := got["kl_95"].([]any)
		kl := got["kl"].(float64)
		tq := (ci[1].(float64) - kl) / got["kl_stderr"].(float64)
		require.InDelta(t, 0.05, tTwoSided(tq, len(rows)-1), 1e-9, "%s: Student's t's 97.5%% quantile, %d degrees of freedom", c.name, len(rows)-1)
		require.InDelta(t, max(kl-tq*got["kl_stderr"].(float64), 0), ci[0], 1e-12)
	}

	// With token weights: of each row's w·KL and w.
	dir := t.TempDir()
	tg := readNpy[int64](t, g("near_targets.npy"))
	kls, tw := readNpy[float64](t, g("near_kl.npy")), make([]float32, len(tg))
	var s, w []float64
	for i, v := range tg {
		tw[i] = float32(1+i%4) / 2
		if v != -100 {
			s, w = append(s, float64(tw[i])*kls[i]), append(w, float64(tw[i]))
		}
	}
	m, se := clusteredSE(s, w)
	got := evalJSON(t, "eval", "--logits", g("near_logits.npy"), "--targets", g("near_targets.npy"), "--token-weights", writeNpyFile(t, dir, "tw.npy", tw),
		"--teacher-ids", g("near_ids.npy"), "--teacher-logprobs", g("near_logprobs.npy"), "--device", "cpu", "--json", "--stderr")
	require.InEpsilon(t, m, got["kl"], 1e-5)
	require.InEpsilon(t, se, got["kl_stderr"], 1e-4, "token-weighted")

	// A manifest of "near" in two lines, and its two shards merged.
	x := readNpy[float32](t, g("near_logits.npy"))
	ids, lp := readNpy[int64](t, g("near_ids.npy")), readNpy[float32](t, g("near_logprobs.npy"))
	n, v, k := len(tg), len(x)/len(tg), len(ids)/len(tg)
	var lines []string
	for s, r := range [][2]int{{0, n / 2}, {n / 2, n}} {
		name := func(f string) string { return fmt.Sprintf("%s%d.npy", f, s) }
		line, err := json.Marshal(map[string]string{
			"logits":           writeNpyFile(t, dir, name("x"), matrixRows(x[r[0]*v:r[1]*v], v)),
			"targets":          writeNpyFile(t, dir, name("t"), tg[r[0]:r[1]]),
			"teacher_ids":      writeNpyFile(t, dir, name("i"), matrixRows(ids[r[0]*k:r[1]*k], k)),
			"teacher_logprobs": writeNpyFile(t, dir, name("p"), matrixRows(lp[r[0]*k:r[1]*k], k))})
		require.NoError(t, err)
		lines = append(lines, string(line))
	}
	mf := filepath.Join(dir, "m.jsonl")
	require.NoError(t, os.WriteFile(mf, []byte(strings.Join(lines, "\n")+"\n"), 0o644))
	base := []string{"eval", "--device", "cpu", "--json", "--stderr"}
	whole := evalJSON(t, append(base, "--logits", g("near_logits.npy"), "--targets", g("near_targets.npy"),
		"--teacher-ids", g("near_ids.npy"), "--teacher-logprobs", g("near_logprobs.npy"))...)
	var parts []string
	for i, sh := range []string{"0/2", "1/2"} {
		p := filepath.Join(dir, fmt.Sprintf("S%d.json", i))
		evalJSON(t, append(base, "--manifest", mf, "--shard", sh, "--stats-out", p)...)
		parts = append(parts, p)
	}
	merged := evalJSON(t, append([]string{"merge", "--json"}, parts...)...)
	require.InEpsilon(t, whole["kl_stderr"], merged["kl_stderr"], 1e-9)
	require.InEpsilon(t, whole["kl_stderr"], evalJSON(t, append(base, "--manifest", mf)...)["kl_stderr"], 1e-9)
}

// ones returns n ones.
func ones(n int) []float64 {
	w := make([]float64, n)
	for i := range w {
		w[i] = 1
	}
	return w
}

// matrixRows returns x as rows of n.
func matrixRows[T any](x []T, n int) [][]T {
	r := make([][]T, len(x)/n)
	for i := range r {
		r[i] = x[i*n : (i+1)*n]
	}
	return r
}
