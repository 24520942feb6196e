package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/cpu"
	"github.com/xentlab/xent/device"
	"github.com/xentlab/xent/internal/corpus"
	"github.com/xentlab/xent/internal/corpus/corpustest"
	"github.com/xentlab/xent/internal/npyfile"
	"github.com/xentlab/xent/internal/seed"
)

func TestMain(m *testing.M) {
	flag.Parse()
	beam.Init()
	os.Exit(m.Run())
}

// set sets the command's flags for one run.
func set(t *testing.T, kv ...string) {
	for i := 0; i < len(kv); i += 2 {
		old := flag.Lookup(kv[i]).Value.String()
		require.NoError(t, flag.Set(kv[i], kv[i+1]))
		t.Cleanup(func() { flag.Set(kv[i], old) })
	}
}

// TestCommand: xent-beam on prism (no --runner) writes the report of
// the corpustest manifest, the float64 reference's; a bad line and an
// output that is an input are refused before the pipeline runs, and
// nothing is written.
func TestCommand(t *testing.T) {
	dir := t.TempDir()
	m, weight, want := corpustest.Write(t, dir, seed.New(t))
	out := filepath.Join(dir, "R.json")
	set(t, "manifest", m, "weight", weight, "out", out, "device", "cpu")
	require.NoError(t, run(context.Background()))
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	var r corpus.Report
	require.NoError(t, json.Unmarshal(b, &r))
	require.Equal(t, want.Counted, r.Tokens)
	require.Equal(t, want.Rows-want.Counted, r.Ignored)
	require.InEpsilon(t, want.Mean(), *r.Loss, 1e-5)

	// Relative paths, from this working directory: the workers are given
	// them absolute (the pipeline refuses any other).
	require.NoError(t, os.Remove(out))
	t.Chdir(filepath.Dir(dir))
	rel := func(p string) string { return filepath.Join(filepath.Base(dir), filepath.Base(p)) }
	set(t, "manifest", rel(m), "weight", rel(weight), "out", rel(out))
	require.NoError(t, run(context.Background()))
	b, err = os.ReadFile(out)
	require.NoError(t, err)
	var rr corpus.Report
	require.NoError(t, json.Unmarshal(b, &rr))
	require.Equal(t, r, rr)

	require.NoError(t, os.Remove(out))
	set(t, "manifest", m, "weight", weight, "out", dir)
	require.ErrorContains(t, run(context.Background()), "exists and is not a regular file")
	set(t, "out", filepath.Join(dir, "t1.npy"))
	require.ErrorContains(t, run(context.Background()), "the same file as "+filepath.Join(dir, "t1.npy"))
	text, err := os.ReadFile(m)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(m, append(text, `{"logits": "l1.npy", "targets": "t2.npy"}`+"\n"...), 0o644))
	set(t, "out", out)
	require.ErrorContains(t, run(context.Background()), "M.jsonl:9: "+filepath.Join(dir, "t2.npy")+": expected 37 targets")
	require.NoFileExists(t, out)
}

// TestCommandShift: --shift and --by-position reach the workers, and the
// lines' "bytes" and "logits_shards": the causal fixture of testdata/npy,
// in a manifest as it is and split by vocabulary into two files, gives PyTorch's loss of the shifted labels (expected.json's "causal"),
// its rows' mean at each of the 6 positions of its [3 × 6] ids, and its
// log-loss over the lines' bytes in bits.
func TestCommandShift(t *testing.T) {
	dir := t.TempDir()
	fix, err := filepath.Abs(filepath.Join("..", "..", "..", "testdata", "npy"))
	require.NoError(t, err)
	var exp struct {
		Causal struct {
			Mean   float64   `json:"mean"`
			Tokens int64     `json:"tokens"`
			Rows   []float64 `json:"rows"`
		} `json:"causal"`
	}
	b, err := os.ReadFile(filepath.Join(fix, "expected.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &exp))
	line := `{"logits": "` + filepath.Join(fix, "causal_logits.npy") + `", "targets": "` + filepath.Join(fix, "causal_ids.npy") + `", "bytes": 50}` + "\n"
	x, err := npyfile.Read(filepath.Join(fix, "causal_logits.npy"), (*npyfile.File).Flat)
	require.NoError(t, err)
	for k, c := range [][2]int{{0, 13}, {13, 29}} {
		var v []float32
		for i := range 18 {
			v = append(v, x[i*29+c[0]:i*29+c[1]]...)
		}
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("s%d.npy", k)))
		require.NoError(t, err)
		require.NoError(t, npyfile.WriteF32(f, []int{3, 6, c[1] - c[0]}, v))
		require.NoError(t, f.Close())
	}
	split := `{"logits_shards": ["s0.npy", "s1.npy"], "targets": "` + filepath.Join(fix, "causal_ids.npy") + `", "bytes": 50}` + "\n"
	m := filepath.Join(dir, "M.jsonl")
	require.NoError(t, os.WriteFile(m, []byte(line+split), 0o644))
	out := filepath.Join(dir, "R.json")
	set(t, "manifest", m, "weight", "", "out", out, "device", "cpu", "shift", "true", "by-position", "true", "stderr", "true")
	require.NoError(t, run(context.Background()))
	b, err = os.ReadFile(out)
	require.NoError(t, err)
	var r corpus.Report
	require.NoError(t, json.Unmarshal(b, &r))
	require.Equal(t, 2*exp.Causal.Tokens, r.Tokens)
	require.InEpsilon(t, exp.Causal.Mean, *r.Loss, 1e-6)
	require.NotNil(t, r.BitsPerByte)
	require.InEpsilon(t, exp.Causal.Mean*float64(exp.Causal.Tokens)/(math.Ln2*50), float64(*r.BitsPerByte), 1e-6)
	ids, err := npyfile.Read(filepath.Join(fix, "causal_ids.npy"), (*npyfile.File).Targets)
	require.NoError(t, err)
	// The standard error over the two lines' 3 sequences each (the same
	// sums twice), from PyTorch's rows in two passes.
	var sc, wc []float64
	for range 2 {
		for b := range 3 {
			var s, w float64
			for p := range 5 {
				if ids[b*6+p+1] != -100 {
					s, w = s+exp.Causal.Rows[b*6+p], w+1
				}
			}
			sc, wc = append(sc, s), append(wc, w)
		}
	}
	mean, v := exp.Causal.Mean, 0.0
	for c := range sc {
		v += (sc[c] - mean*wc[c]) * (sc[c] - mean*wc[c])
	}
	require.EqualValues(t, 6, r.StdErrClusters)
	require.NotNil(t, r.LossStdErr)
	require.InEpsilon(t, math.Sqrt(v*6/5)/float64(2*exp.Causal.Tokens), float64(*r.LossStdErr), 1e-5)
	require.Len(t, r.ByPosition, 6)
	for p, got := range r.ByPosition {
		sum, n := 0.0, 0.0
		for b := range 3 {
			if p < 5 && ids[b*6+p+1] != -100 {
				sum, n = sum+exp.Causal.Rows[b*6+p], n+1
			}
		}
		if n == 0 {
			require.Nil(t, got, "position %d counts nothing", p)
			continue
		}
		require.NotNil(t, got, "position %d", p)
		require.InEpsilon(t, sum/n, *got, 1e-6, "position %d", p)
	}
}

// TestCommandRowsOut: --rows-out writes each line's per-row losses,
// in the rows' shape, the same bits as the single run on the CPU, and no
// staged file stays; --lines-out each line's report, in the manifest's
// order, the JSON of the single run's (corpus.LineReportOf); a directory
// that is not one, a rows file that is an input or --out, and --lines-out
// over --out or an input, are refused before the pipeline runs.
func TestCommandRowsOut(t *testing.T) {
	dir := t.TempDir()
	path, weight, _ := corpustest.Write(t, dir, seed.New(t))
	rows := filepath.Join(dir, "rows")
	require.NoError(t, os.Mkdir(rows, 0o755))
	out, lines := filepath.Join(dir, "R.json"), filepath.Join(dir, "L.jsonl")
	set(t, "manifest", path, "weight", weight, "out", out, "device", "cpu", "rows-out", rows, "seq-len", "3", "lines-out", lines)
	require.NoError(t, run(context.Background()))

	cfg, err := config()
	require.NoError(t, err)
	cfg.KeepRows = true
	m, err := corpus.ReadManifest(path, weight)
	require.NoError(t, err)
	ev := corpus.New(cfg)
	defer ev.Close()
	var names []string
	dev := device.NewCPU(cpu.Default())
	in := dev.Info()
	each, err := os.ReadFile(lines)
	require.NoError(t, err)
	var want string
	for _, l := range m.Lines {
		r, err := ev.Eval(context.Background(), dev, l)
		require.NoError(t, err)
		b, err := json.Marshal(corpus.LineReportOf(l, r, fmt.Sprintf("%s (%s, %s)", in.Spec, in.Name, in.Kernel)))
		require.NoError(t, err)
		want += string(b) + "\n"
		name := corpus.RowsName(l.N, m.Width())
		names = append(names, name)
		got, shape, err := npyfile.ReadShaped(filepath.Join(rows, name), (*npyfile.File).Flat)
		require.NoError(t, err)
		require.Equal(t, r.Lead, shape, "line %d", l.N)
		require.Equal(t, len(r.Rows), len(got), "line %d", l.N)
		for i, v := range r.Rows {
			require.Equal(t, math.Float32bits(v), math.Float32bits(float32(got[i])), "line %d, row %d", l.N, i)
		}
	}
	ents, err := os.ReadDir(rows)
	require.NoError(t, err)
	var have []string
	for _, e := range ents {
		have = append(have, e.Name())
	}
	require.Equal(t, names, have, "the lines' rows and nothing staged")
	require.Equal(t, want, string(each), "each line's report")

	for _, c := range []struct {
		flags []string
		want  string
	}{
		{[]string{"rows-out", filepath.Join(dir, "t1.npy")}, "--rows-out " + filepath.Join(dir, "t1.npy") + ": not a directory"},
		{[]string{"rows-out", dir, "out", filepath.Join(dir, names[0])}, "--rows-out (line 1) " + filepath.Join(dir, names[0]) + ": the same file as --out"},
		{[]string{"rows-out", rows, "out", out, "lines-out", out}, "--lines-out " + out + ": the same file as --out"},
		{[]string{"lines-out", filepath.Join(dir, "t1.npy")}, "--lines-out " + filepath.Join(dir, "t1.npy") + ": the same file as " + filepath.Join(dir, "t1.npy") + ", an input"},
	} {
		set(t, c.flags...)
		require.ErrorContains(t, run(context.Background()), c.want)
	}
	set(t, "rows-out", rows, "out", out, "lines-out", lines)
	require.NoError(t, os.Remove(filepath.Join(rows, names[1])))
	require.NoError(t, os.Symlink(filepath.Join(dir, "t1.npy"), filepath.Join(rows, names[1])))
	require.ErrorContains(t, run(context.Background()), "--rows-out (line 2) "+filepath.Join(rows, names[1])+": the same file as "+filepath.Join(dir, "t1.npy")+", an input")
}

// TestCommandCompare: --compare on prism compares two models' manifests
// line by line: the report and each line pair's are xent compare's (the
// corpus's Compare in this process, merged), a teacher's KL's difference
// too (the teacher on A's lines only), and a manifest of other length and
// --rows-out are refused before the pipeline runs.
func TestCommandCompare(t *testing.T) {
	dir := t.TempDir()
	r := seed.Rand(t, 3)
	const B, T, V = 3, 5, 23
	write := func(name string, v any) string {
		p := filepath.Join(dir, name)
		corpustest.SaveNpy(t, p, v)
		return p
	}
	var la, lb []string
	for k := range 3 {
		xa, xb, tg := make([][][]float32, B), make([][][]float32, B), make([][]int64, B)
		for b := range B {
			xa[b], xb[b], tg[b] = make([][]float32, T), make([][]float32, T), make([]int64, T)
			for p := range T {
				xa[b][p], xb[b][p] = make([]float32, V), make([]float32, V)
				for c := range V {
					xa[b][p][c] = float32(r.NormFloat64())
					xb[b][p][c] = xa[b][p][c] + float32(r.NormFloat64()*0.5)
				}
				tg[b][p] = int64(r.IntN(V))
			}
		}
		ids, lp := make([][][]int64, B), make([][][]float32, B) // a teacher's top-3: distinct classes, a mass of 0.8
		for b := range B {
			ids[b], lp[b] = make([][]int64, T), make([][]float32, T)
			for p := range T {
				c := r.Perm(V)
				ids[b][p] = []int64{int64(c[0]), int64(c[1]), int64(c[2])}
				lp[b][p] = []float32{float32(math.Log(0.5)), float32(math.Log(0.2)), float32(math.Log(0.1))}
			}
		}
		s := fmt.Sprint(k)
		tp := write("t"+s+".npy", tg)
		la = append(la, fmt.Sprintf(`{"logits": %q, "targets": %q, "teacher_ids": %q, "teacher_logprobs": %q}`, write("a"+s+".npy", xa), tp,
			write("i"+s+".npy", ids), write("lp"+s+".npy", lp)))
		lb = append(lb, fmt.Sprintf(`{"logits": %q, "targets": %q}`, write("b"+s+".npy", xb), tp))
	}
	ma, mb := filepath.Join(dir, "A.jsonl"), filepath.Join(dir, "B.jsonl")
	require.NoError(t, os.WriteFile(ma, []byte(la[0]+"\n"+la[1]+"\n"+la[2]+"\n"), 0o644))
	require.NoError(t, os.WriteFile(mb, []byte(lb[0]+"\n"+lb[1]+"\n"+lb[2]+"\n"), 0o644))
	out, lines := filepath.Join(dir, "R.json"), filepath.Join(dir, "L.jsonl")
	set(t, "manifest", ma, "compare", mb, "weight", "", "out", out, "lines-out", lines, "device", "cpu", "stderr", "true", "by-position", "true", "topk", "1,5")
	require.NoError(t, run(context.Background()))

	cfg, err := config()
	require.NoError(t, err)
	a, err := corpus.ReadManifest(ma, "")
	require.NoError(t, err)
	b, err := corpus.ReadManifest(mb, "")
	require.NoError(t, err)
	require.NoError(t, corpus.PairTeachers(&a, &b))
	cfg.Distill = true
	ev := corpus.New(cfg)
	defer ev.Close()
	dev := device.NewCPU(cpu.Default())
	in := dev.Info()
	name := fmt.Sprintf("%s (%s, %s)", in.Spec, in.Name, in.Kernel)
	var total corpus.Pair
	var want string
	for k := range a.Lines {
		q, err := ev.Compare(context.Background(), dev, a.Lines[k], b.Lines[k])
		require.NoError(t, err)
		require.NoError(t, total.Merge(q))
		j, err := json.Marshal(corpus.PairLineReport{Line: k + 1, FileA: a.Lines[k].RowsFile(), FileB: b.Lines[k].RowsFile(), PairReport: corpus.PairReportOf(q, name)})
		require.NoError(t, err)
		want += string(j) + "\n"
	}
	each, err := os.ReadFile(lines)
	require.NoError(t, err)
	require.Equal(t, want, string(each), "each line pair's comparison")
	got, err := os.ReadFile(out)
	require.NoError(t, err)
	var g, w map[string]any
	require.NoError(t, json.Unmarshal(got, &g))
	wb, err := json.Marshal(corpus.PairReportOf(total, name))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(wb, &w))
	require.Equal(t, w["clusters"], g["clusters"])
	require.EqualValues(t, 3*B, g["clusters"])
	require.Equal(t, w["b_lower"], g["b_lower"])
	for _, k := range []string{"diff", "diff_stderr", "z"} {
		require.InEpsilon(t, w[k], g[k], 1e-12, k)
	}
	for _, k := range []string{"accuracy_diff", "accuracy_diff_stderr"} { // (counts: 0 may be)
		require.NotNil(t, g[k], k)
		require.InDelta(t, w[k], g[k], 1e-12, k)
	}
	for _, m := range []string{"a", "b"} { // each model's errors, the rank statistics' too, merged on the workers as in process
		wm, gm := w[m].(map[string]any), g[m].(map[string]any)
		for _, k := range []string{"accuracy_stderr", "mrr_stderr", "entropy_stderr"} {
			require.NotNil(t, gm[k], "%s: %s", m, k)
			require.InDelta(t, wm[k], gm[k], 1e-12, "%s: %s", m, k)
		}
		require.Equal(t, wm["topk_stderr"], gm["topk_stderr"], m)
	}
	for _, k := range []string{"diff_by_position", "diff_by_position_stderr"} {
		wp, gp := w[k].([]any), g[k].([]any)
		require.Len(t, gp, T, k)
		for p := range wp {
			require.InEpsilon(t, wp[p], gp[p], 1e-12, "%s[%d]", k, p)
		}
	}
	require.Equal(t, w["a"].(map[string]any)["tokens"], g["a"].(map[string]any)["tokens"])
	for _, d := range []string{"kl_diff", "mrr_diff"} {
		wk, gk := w[d].(map[string]any), g[d].(map[string]any)
		for _, k := range []string{"diff", "stderr", "p_value"} {
			require.NotNil(t, gk[k], "%s: %s", d, k)
			require.InEpsilon(t, wk[k], gk[k], 1e-12, "%s: %s", d, k)
		}
	}

	short := filepath.Join(dir, "S.jsonl")
	require.NoError(t, os.WriteFile(short, []byte(lb[0]+"\n"), 0o644))
	rows := filepath.Join(dir, "rows")
	require.NoError(t, os.Mkdir(rows, 0o755))
	for _, c := range []struct {
		flags []string
		want  string
	}{
		{[]string{"compare", short}, "--compare " + short + ": 1 lines, --manifest's 3: a comparison pairs them line by line"},
		{[]string{"compare", mb, "rows-out", rows}, "--rows-out goes without --compare"},
	} {
		set(t, c.flags...)
		require.ErrorContains(t, run(context.Background()), c.want)
		set(t, "rows-out", "")
	}
}
