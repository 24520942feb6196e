package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/internal/seed"
)

// rowLoss returns the cross-entropy of a row of logits against target t,
// in float64.
func rowLoss(row []float32, t int64) float64 { return rowLSE(row) - float64(row[t]) }

// rowLSE returns log Σ_j exp(row_j) in float64.
func rowLSE(row []float32) float64 {
	mx := math.Inf(-1)
	for _, v := range row {
		mx = max(mx, float64(v))
	}
	e := 0.0
	for _, v := range row {
		e += math.Exp(float64(v) - mx)
	}
	return mx + math.Log(e)
}

// hit returns 1 when target t is row's first maximum (its argmax), else
// 0.
func hit(row []float32, t int64) float64 {
	am := 0
	for j, v := range row {
		if v > row[am] {
			am = j
		}
	}
	if int64(am) == t {
		return 1
	}
	return 0
}

// plainLogits returns the logits of the golden case "plain", h·Wᵀ + b in
// float64, each rounded to float32 once.
func plainLogits(t *testing.T) [][]float32 {
	c := plainCase(t)
	h, wt, bias := readNpy[float32](t, golden("plain_h.npy")), readNpy[float32](t, golden("plain_w.npy")), readNpy[float32](t, golden("plain_b.npy"))
	z32 := make([][]float32, len(h)/c.D)
	for i := range z32 {
		z32[i] = make([]float32, c.V)
		for k := range c.V {
			s := float64(bias[k])
			for j := range c.D {
				s += float64(h[i*c.D+j]) * float64(wt[k*c.D+j])
			}
			z32[i][k] = float32(s)
		}
	}
	return z32
}

// inTop returns 1 when fewer than k classes of row are above target t
// (its top-k, as --topk counts ties), else 0.
func inTop(row []float32, t int64, k int) float64 {
	if above(row, t) < float64(k) {
		return 1
	}
	return 0
}

// tTwoSided returns P(|T| > z) of Student's t with nu > 1 degrees of
// freedom: 2∫_z^∞ of its density, as 2∫₀¹ f(z/u)·z/u² du (smooth on
// [0, 1]), by Simpson's rule: the tail itself, to its own relative
// precision.
func tTwoSided(z float64, nu int) float64 {
	v := float64(nu)
	lg1, _ := math.Lgamma((v + 1) / 2)
	lg2, _ := math.Lgamma(v / 2)
	c := math.Exp(lg1-lg2) / math.Sqrt(v*math.Pi)
	g := func(u float64) float64 {
		if u == 0 {
			return 0
		}
		x := z / u
		return c * math.Pow(1+x*x/v, -(v+1)/2) * z / (u * u)
	}
	const n = 20000
	h, s := 1.0/n, g(0)+g(1)
	for i := 1; i < n; i++ {
		s += float64(2+2*(i%2)) * g(float64(i)*h)
	}
	return 2 * s * h / 3
}

// TestCompare: xent compare of two models' random logits [12 × 10 × 40]
// (B a little better on some rows) on the same targets and token weights
// gives each model's xent eval report, and B − A's mean loss with the
// paired standard error over the sequences computed here in two passes
// from float64 losses, its interval, z, p-value and the clusters B wins;
// the same of B's top-1 accuracy less A's (each cluster's correct rows
// less A's over its counted rows, token weights aside); manifests of two
// lines each, and their shards merged, give the same; a hidden-states line pairs
// with the logits it makes; rows, targets, weights or lines apart and
// bad usage are refused (a teacher: TestCompareTeacher).
func TestCompare(t *testing.T) {
	r := seed.Rand(t, 2)
	const B, T, V = 12, 10, 40
	xa, xb := make([][][]float32, B), make([][][]float32, B)
	tg, tw := make([][]int64, B), make([][]float32, B)
	for b := range B {
		xa[b], xb[b], tg[b], tw[b] = make([][]float32, T), make([][]float32, T), make([]int64, T), make([]float32, T)
		for p := range T {
			tg[b][p], tw[b][p] = int64(r.IntN(V)), float32(1+r.IntN(3))
			if r.IntN(6) == 0 {
				tg[b][p] = -100
			}
			xa[b][p], xb[b][p] = make([]float32, V), make([]float32, V)
			for c := range V {
				xa[b][p][c] = float32(r.NormFloat64() * 2)
				xb[b][p][c] = xa[b][p][c] + float32(r.NormFloat64()*0.3)
			}
			if tg[b][p] >= 0 && r.IntN(2) == 0 {
				xb[b][p][tg[b][p]] += 1
			}
		}
	}
	for b := range 3 { // B right where A is wrong: the accuracies differ
		tg[b][0] = 3
		xa[b][0][3], xb[b][0][3] = -10, 10
	}
	for b := 3; b < 5; b++ { // and A right where B is wrong, so that A's rows count in the paired error, whatever the seed
		tg[b][0] = 4
		xa[b][0][4], xb[b][0][4] = 10, -10
	}
	// The random rows may cancel the forced ones: B's top-1 and top-5
	// hits less A's, net, are made non-zero by settling further rows
	// one way or the other (each row's share is -1, 0 or 1 of each).
	share := func(b, p int) (h1, h5 float64) {
		if tg[b][p] < 0 {
			return 0, 0
		}
		return hit(xb[b][p], tg[b][p]) - hit(xa[b][p], tg[b][p]), inTop(xb[b][p], tg[b][p], 5) - inTop(xa[b][p], tg[b][p], 5)
	}
	var net1, net5 float64
	for b := range B {
		for p := range T {
			h1, h5 := share(b, p)
			net1, net5 = net1+h1, net5+h5
		}
	}
	for b := 5; b < B && (net1 == 0 || net5 == 0); b++ {
		h1, h5 := share(b, 0)
		for _, s := range []float64{1, -1} { // B's way, else A's
			if net1-h1+s != 0 && net5-h5+s != 0 {
				tg[b][0] = 6
				xa[b][0][6], xb[b][0][6] = float32(-10*s), float32(10*s)
				net1, net5 = net1-h1+s, net5-h5+s
				break
			}
		}
	}
	dir := t.TempDir()
	pa, pb := writeNpyFile(t, dir, "a.npy", xa), writeNpyFile(t, dir, "b.npy", xb)
	pt, pw := writeNpyFile(t, dir, "t.npy", tg), writeNpyFile(t, dir, "w.npy", tw)
	var d, w, hd, hn, t5, rr []float64
	lower := 0
	for b := range B {
		var db, wb, hb, nb, h5, rb float64
		any := false
		for p := range T {
			if tg[b][p] < 0 {
				continue
			}
			v := float64(tw[b][p])
			db, wb, any = db+v*(rowLoss(xb[b][p], tg[b][p])-rowLoss(xa[b][p], tg[b][p])), wb+v, true
			hb, nb = hb+hit(xb[b][p], tg[b][p])-hit(xa[b][p], tg[b][p]), nb+1
			h5 += inTop(xb[b][p], tg[b][p], 5) - inTop(xa[b][p], tg[b][p], 5)
			rb += 1/(1+above(xb[b][p], tg[b][p])) - 1/(1+above(xa[b][p], tg[b][p]))
		}
		if any {
			d, w, hd, hn, t5, rr = append(d, db), append(w, wb), append(hd, hb), append(hn, nb), append(t5, h5), append(rr, rb)
			if db < 0 {
				lower++
			}
		}
	}
	diff, se := clusteredSE(d, w)
	adiff, ase := clusteredSE(hd, hn)
	require.NotZero(t, adiff, "the accuracies differ")

	got := evalJSON(t, "compare", "--a", pa, "--b", pb, "--targets", pt, "--token-weights", pw, "--device", "cpu", "--json", "--topk", "1,5")
	for _, m := range []struct{ key, logits string }{{"a", pa}, {"b", pb}} {
		want := evalJSON(t, "eval", "--logits", m.logits, "--targets", pt, "--token-weights", pw, "--device", "cpu", "--json", "--topk", "1,5")
		require.Equal(t, want, got[m.key], "model %s: xent eval's report", m.key)
	}
	require.InEpsilon(t, diff, got["diff"], 1e-5)
	require.InEpsilon(t, got["b"].(map[string]any)["loss"].(float64)-got["a"].(map[string]any)["loss"].(float64), got["diff"], 1e-12)
	require.InEpsilon(t, se, got["diff_stderr"], 1e-5, "the paired standard error over the sequences")
	require.EqualValues(t, len(d), got["clusters"])
	require.InEpsilon(t, float64(lower)/float64(len(d)), got["b_lower"], 1e-12)
	z := got["diff"].(float64) / got["diff_stderr"].(float64)
	require.InEpsilon(t, z, got["z"], 1e-12)
	require.EqualValues(t, B, got["clusters"])
	require.InEpsilon(t, tTwoSided(math.Abs(z), B-1), got["p_value"], 1e-9, "Student's t, 11 degrees of freedom")
	ci, ratio := got["diff_95"].([]any), got["perplexity_ratio_95"].([]any)
	const t11 = 2.200985160082949 // Student's t's 97.5% quantile, 11 degrees of freedom
	// Each end within 1e-5 of its terms' size (diff and se are within 1e-5
	// of theirs): relative to the end itself it fails where the two
	// nearly cancel (seed 2781963634699319269: 1.3e-4).
	require.InDelta(t, diff-t11*se, ci[0], 1e-5*(math.Abs(diff)+t11*se))
	require.InDelta(t, diff+t11*se, ci[1], 1e-5*(math.Abs(diff)+t11*se))
	require.InEpsilon(t, math.Exp(ci[0].(float64)), ratio[0], 1e-12)
	require.InEpsilon(t, math.Exp(got["diff"].(float64)), got["perplexity_ratio"], 1e-12)
	// The accuracy's: counts, so to rounding alone.
	require.InDelta(t, adiff, got["accuracy_diff"], 1e-12)
	require.InDelta(t, got["b"].(map[string]any)["accuracy"].(float64)-got["a"].(map[string]any)["accuracy"].(float64), got["accuracy_diff"], 1e-15)
	require.InEpsilon(t, ase, got["accuracy_diff_stderr"], 1e-9, "the accuracy's paired standard error over the sequences")
	require.InEpsilon(t, tTwoSided(math.Abs(adiff/ase), B-1), got["accuracy_p_value"], 1e-9)
	aci := got["accuracy_diff_95"].([]any)
	require.InDelta(t, adiff-t11*ase, aci[0], 1e-9)
	require.InDelta(t, adiff+t11*ase, aci[1], 1e-9)
	// Each top-k accuracy's (--topk 1,5): top-1 by rank is the argmax
	// here (no ties); top-5 of each row's classes above its target.
	tk := got["topk_diff"].(map[string]any)
	require.Equal(t, map[string]any{"diff": got["accuracy_diff"], "stderr": got["accuracy_diff_stderr"], "diff_95": got["accuracy_diff_95"], "p_value": got["accuracy_p_value"]}, tk["1"])
	d5, se5 := clusteredSE(t5, hn)
	require.NotZero(t, d5, "the top-5 accuracies differ (the rows forced above)")
	top5 := tk["5"].(map[string]any)
	require.InDelta(t, d5, top5["diff"], 1e-12)
	require.InEpsilon(t, se5, top5["stderr"], 1e-9)
	require.InEpsilon(t, tTwoSided(math.Abs(d5/se5), B-1), top5["p_value"], 1e-9)
	// The MRR's, of each row's 1/rank.
	dr, ser := clusteredSE(rr, hn)
	mrr := got["mrr_diff"].(map[string]any)
	require.InDelta(t, dr, mrr["diff"], 1e-12)
	require.InEpsilon(t, got["b"].(map[string]any)["mrr"].(float64)-got["a"].(map[string]any)["mrr"].(float64), mrr["diff"], 1e-9)
	require.InEpsilon(t, ser, mrr["stderr"], 1e-9, "1/rank, paired over the sequences")
	require.InEpsilon(t, tTwoSided(math.Abs(dr/ser), B-1), mrr["p_value"], 1e-9)
	ci5 := top5["diff_95"].([]any)
	require.InDelta(t, d5-t11*se5, ci5[0], 1e-9)
	require.InDelta(t, d5+t11*se5, ci5[1], 1e-9)

	// Manifests of two lines each (sequences 0–6 and 7–11), of 700 and
	// 500 bytes: the same, and the bits per byte's difference.
	bytes := []int{700, 500}
	manifest := func(name string, x [][][]float32, bytes []int) string {
		var lines []string
		for k, c := range [][2]int{{0, 7}, {7, B}} {
			s := string(rune('0' + k))
			b, err := json.Marshal(map[string]any{"logits": writeNpyFile(t, dir, name+s+".npy", x[c[0]:c[1]]),
				"targets": writeNpyFile(t, dir, "t"+s+".npy", tg[c[0]:c[1]]), "weights": writeNpyFile(t, dir, "w"+s+".npy", tw[c[0]:c[1]]),
				"bytes": bytes[k]})
			require.NoError(t, err)
			lines = append(lines, string(b))
		}
		p := filepath.Join(dir, name+".jsonl")
		require.NoError(t, os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644))
		return p
	}
	ma, mb := manifest("ma", xa, bytes), manifest("mb", xb, bytes)
	lo := filepath.Join(dir, "pairs.jsonl")
	lines := evalJSON(t, "compare", "--a", ma, "--b", mb, "--device", "cpu", "--json", "--lines-out", lo)
	require.InEpsilon(t, got["diff_stderr"], lines["diff_stderr"], 1e-12)
	sw := 0.0
	for _, v := range w {
		sw += v
	}
	perByte := sw / (math.Ln2 * 1200) // the loss's sum over the bytes, in bits
	require.InEpsilon(t, diff*perByte, lines["bits_per_byte_diff"], 1e-5)
	require.InEpsilon(t, lines["b"].(map[string]any)["bits_per_byte"].(float64)-lines["a"].(map[string]any)["bits_per_byte"].(float64), lines["bits_per_byte_diff"], 1e-9)
	require.InEpsilon(t, se*perByte, lines["bits_per_byte_diff_stderr"], 1e-5)
	bci := lines["bits_per_byte_diff_95"].([]any)
	require.InDelta(t, (diff-t11*se)*perByte, bci[0], 1e-5*(math.Abs(diff)+t11*se)*perByte)
	require.InDelta(t, (diff+t11*se)*perByte, bci[1], 1e-5*(math.Abs(diff)+t11*se)*perByte)
	require.NotContains(t, got, "bits_per_byte_diff", "files without bytes")
	apart := evalJSON(t, "compare", "--a", ma, "--b", manifest("mx", xb, []int{700, 501}), "--device", "cpu", "--json")
	require.NotContains(t, apart, "bits_per_byte_diff", "bytes apart")
	require.Contains(t, apart["b"], "bits_per_byte")
	require.InEpsilon(t, got["accuracy_diff_stderr"], lines["accuracy_diff_stderr"], 1e-12)
	require.Equal(t, got["clusters"], lines["clusters"])
	require.Equal(t, got["b_lower"], lines["b_lower"])
	// Each line pair's own comparison: its models' reports as xent eval's
	// of its files, its clusters adding up.
	b, err := os.ReadFile(lo)
	require.NoError(t, err)
	clusters := 0.0
	for k, text := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var each map[string]any
		require.NoError(t, json.Unmarshal([]byte(text), &each))
		s := string(rune('0' + k))
		require.EqualValues(t, k+1, each["line"])
		require.Equal(t, filepath.Join(dir, "ma"+s+".npy"), each["file_a"])
		require.Equal(t, filepath.Join(dir, "mb"+s+".npy"), each["file_b"])
		for _, m := range []string{"a", "b"} {
			want := evalJSON(t, "eval", "--logits", filepath.Join(dir, "m"+m+s+".npy"), "--targets", filepath.Join(dir, "t"+s+".npy"),
				"--token-weights", filepath.Join(dir, "w"+s+".npy"), "--device", "cpu", "--json", "--bytes", strconv.Itoa(bytes[k]))
			require.Equal(t, want, each[m], "line %d, model %s", k+1, m)
		}
		clusters += each["clusters"].(float64)
	}
	require.Equal(t, lines["clusters"], clusters)

	// The manifests' two shards, merged: the same comparison; not merged
	// with an evaluation's statistics.
	var parts []string
	for i, sh := range []string{"0/2", "1/2"} {
		p := filepath.Join(dir, "P"+string(rune('0'+i))+".json")
		evalJSON(t, "compare", "--a", ma, "--b", mb, "--device", "cpu", "--json", "--shard", sh, "--stats-out", p)
		parts = append(parts, p)
	}
	merged := evalJSON(t, append([]string{"merge", "--json"}, parts...)...)
	require.Equal(t, keysOf(lines), keysOf(merged))
	for k, v := range lines {
		checkClose(t, k, v, merged[k], nil)
	}
	// With --by-position, each position's difference over the sequences.
	bp := evalJSON(t, "compare", "--a", pa, "--b", pb, "--targets", pt, "--token-weights", pw, "--device", "cpu", "--json", "--by-position")
	for p := range T {
		var ps, pws []float64
		for b := range B {
			if tg[b][p] >= 0 {
				v := float64(tw[b][p])
				ps, pws = append(ps, v*(rowLoss(xb[b][p], tg[b][p])-rowLoss(xa[b][p], tg[b][p]))), append(pws, v)
			}
		}
		pd, pse := clusteredSE(ps, pws)
		require.InDelta(t, pd, bp["diff_by_position"].([]any)[p], 1e-5*max(1, math.Abs(pd)), "position %d", p)
		require.InEpsilon(t, pse, bp["diff_by_position_stderr"].([]any)[p], 1e-4, "position %d", p)
	}
	// With --topk and --by-position, the shards merged too.
	parts5 := []string{filepath.Join(dir, "K0.json"), filepath.Join(dir, "K1.json")}
	for i, sh := range []string{"0/2", "1/2"} {
		evalJSON(t, "compare", "--a", ma, "--b", mb, "--device", "cpu", "--json", "--topk", "1,5", "--by-position", "--shard", sh, "--stats-out", parts5[i])
	}
	whole5 := evalJSON(t, "compare", "--a", ma, "--b", mb, "--device", "cpu", "--json", "--topk", "1,5", "--by-position")
	merged5 := evalJSON(t, append([]string{"merge", "--json"}, parts5...)...)
	for _, k := range []string{"topk_diff", "mrr_diff", "diff_by_position", "diff_by_position_stderr"} {
		require.Contains(t, merged5, k)
		checkClose(t, k, whole5[k], merged5[k], nil)
	}
	checkClose(t, "diff_by_position", bp["diff_by_position"], whole5["diff_by_position"], nil)
	require.InEpsilon(t, se5, merged5["topk_diff"].(map[string]any)["5"].(map[string]any)["stderr"], 1e-9)
	ev := filepath.Join(dir, "E.json")
	evalJSON(t, "eval", "--manifest", ma, "--device", "cpu", "--json", "--shard", "1/2", "--stats-out", ev)
	code, _, errOut := runCmd("merge", parts[0], ev)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, ev+": an evaluation's statistics, "+parts[0]+" a comparison's: they do not merge")
	code, _, errOut = runCmd("compare", "--a", pa, "--b", pb, "--targets", pt, "--shard", "0/2")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "--shard, --stats-out and --lines-out go with manifests")
	code, _, errOut = runCmd("compare", "--a", ma, "--b", mb, "--stats-out", filepath.Join(dir, "t0.npy"))
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "--stats-out "+filepath.Join(dir, "t0.npy")+": the same file as")

	// A model against itself: no difference, no z.
	same := evalJSON(t, "compare", "--a", pa, "--b", pa, "--targets", pt, "--device", "cpu", "--json")
	require.EqualValues(t, 0, same["diff"])
	require.EqualValues(t, 0, same["diff_stderr"])
	require.Nil(t, same["z"])
	require.Nil(t, same["p_value"])
	require.EqualValues(t, 0, same["accuracy_diff"])
	require.EqualValues(t, 0, same["accuracy_diff_stderr"])
	require.Nil(t, same["accuracy_p_value"])

	// The text report.
	code, out, errOut := runCmd("compare", "--a", pa, "--b", pb, "--targets", pt, "--device", "cpu")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "B − A")
	require.Contains(t, out, "as clusters: B's loss below A's in ")
	require.Contains(t, out, "(top-1; 95% [")
	code, out, errOut = runCmd("compare", "--a", pa, "--b", pb, "--targets", pt, "--device", "cpu", "--topk", "1,5")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "\ntop-5       ")
	require.Regexp(t, `\nMRR         [0-9.]+ +[0-9.]+ +[-+][0-9.]+ \(95% \[`, out)
	require.NotContains(t, out, "bits/byte")
	code, out, errOut = runCmd("compare", "--a", ma, "--b", mb, "--device", "cpu")
	require.Equal(t, 0, code, errOut)
	require.Regexp(t, `\nbits/byte   [0-9.]+ +[0-9.]+ +[-+][0-9.]+ \(95% \[[-+][0-9.]+, [-+][0-9.]+\], over 1200 bytes\)\n`, out)

	// A hidden-states line pairs with the logits it makes (h·Wᵀ + b in
	// float64): a difference within rounding.
	c := plainCase(t)
	z32 := plainLogits(t)
	hl, err := json.Marshal(map[string]string{"hidden": mustAbs(t, golden("plain_h.npy")), "weight": mustAbs(t, golden("plain_w.npy")),
		"bias": mustAbs(t, golden("plain_b.npy")), "targets": mustAbs(t, golden("plain_targets.npy"))})
	require.NoError(t, err)
	ll, err := json.Marshal(map[string]string{"logits": writeNpyFile(t, dir, "z.npy", z32), "targets": mustAbs(t, golden("plain_targets.npy"))})
	require.NoError(t, err)
	mh, mz := filepath.Join(dir, "h.jsonl"), filepath.Join(dir, "z.jsonl")
	require.NoError(t, os.WriteFile(mh, append(hl, '\n'), 0o644))
	require.NoError(t, os.WriteFile(mz, append(ll, '\n'), 0o644))
	hz := evalJSON(t, "compare", "--a", mh, "--b", mz, "--device", "cpu", "--json")
	require.InDelta(t, 0, hz["diff"], 1e-5*c.Mean)
	require.InEpsilon(t, c.Mean, hz["a"].(map[string]any)["loss"], 1e-5)

	// Refusals.
	other := make([][]int64, B)
	for b := range other {
		other[b] = append([]int64(nil), tg[b]...)
	}
	other[4][3] = (other[4][3] + 1) % V
	if other[4][3] < 0 {
		other[4][3] = 7
	}
	mo := filepath.Join(dir, "mo.jsonl")
	b, err = os.ReadFile(mb)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(mo, []byte(strings.Replace(string(b), filepath.Join(dir, "t0.npy"), writeNpyFile(t, dir, "o0.npy", other[:7]), 1)), 0o644))
	one := filepath.Join(dir, "one.jsonl")
	require.NoError(t, os.WriteFile(one, []byte(strings.SplitAfter(string(b), "\n")[0]), 0o644))
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--a", pa}, 2, "--a and --b name the two models' manifests or logits files"},
		{[]string{"--a", ma, "--b", mo}, 1, "mo.jsonl:1: row 43: target"},
		{[]string{"--a", ma, "--b", one}, 1, "--a has 2 lines, --b 1: a comparison pairs them line by line"},
		{[]string{"--a", ma, "--b", mb, "--targets", pt}, 1, "--a: " + ma + ": a manifest names its lines' targets, token weights and teacher"},
		{[]string{"--a", pa, "--b", writeNpyFile(t, dir, "short.npy", xb[:5]), "--targets", pt}, 1, "expected 50 targets to match the 50 rows of"},
		{[]string{"--a", mh, "--b", mz, "--weights", writeNpyFile(t, dir, "cw.npy", make([]float32, 9))}, 1, "cw.npy: expected 257 class weights to match the 257 classes of "},
	} {
		code, out, errOut := runCmd(append([]string{"compare", "--device", "cpu"}, c.args...)...)
		require.Equal(t, c.code, code, "%v: %s", c.args, out)
		require.Contains(t, errOut, c.want, "%v", c.args)
	}
}

// rowKL returns KL(teacher ‖ student) of a row of logits over the
// teacher's classes ids (log-probabilities lp) and one tail bin, in
// float64: Σ_j p_j·(log p_j − log q_j) + P·(log P − log Q).
func rowKL(row []float32, ids []int64, lp []float32) float64 {
	lse := rowLSE(row)
	var kl, p, q float64
	for j, c := range ids {
		lq := float64(row[c]) - lse
		kl += math.Exp(float64(lp[j])) * (float64(lp[j]) - lq)
		p, q = p+math.Exp(float64(lp[j])), q+math.Exp(lq)
	}
	if tail := 1 - p; tail > 0 {
		kl += tail * (math.Log(tail) - math.Log(1-q))
	}
	return kl
}

// TestCompareTeacher: with a teacher (--teacher-ids, --teacher-logprobs;
// a manifest line's), each model's report has its "kl" and the
// comparison B − A's, paired over the rows ("kl_diff": the difference,
// its error, interval and p-value), of float64 KLs computed here (checked
// against PyTorch's rows of the golden case "near" for model A) with
// token weights; manifests where only A's lines name the teacher, and
// their shards merged, give the same; lines naming other teachers are
// refused, naming both.
func TestCompareTeacher(t *testing.T) {
	g, _ := distillGolden(t)
	x, tg := readNpy[float32](t, g("near_logits.npy")), readNpy[int64](t, g("near_targets.npy"))
	ids, lp, pkl := readNpy[int64](t, g("near_ids.npy")), readNpy[float32](t, g("near_logprobs.npy")), readNpy[float64](t, g("near_kl.npy"))
	n, v, k := len(tg), len(x)/len(tg), len(ids)/len(tg)
	r := seed.Rand(t, 3)
	xb, tw := slices.Clone(x), make([]float32, n)
	for i := range xb {
		xb[i] += float32(r.NormFloat64() * 0.5)
	}
	var s, w []float64
	for i := range n {
		tw[i] = float32(1 + r.IntN(3))
		if tg[i] != -100 {
			ka := rowKL(x[i*v:(i+1)*v], ids[i*k:(i+1)*k], lp[i*k:(i+1)*k])
			require.InEpsilon(t, pkl[i], ka, 1e-6, "row %d: the test's KL is PyTorch's", i)
			kb := rowKL(xb[i*v:(i+1)*v], ids[i*k:(i+1)*k], lp[i*k:(i+1)*k])
			s, w = append(s, float64(tw[i])*(kb-ka)), append(w, float64(tw[i]))
		}
	}
	d, se := clusteredSE(s, w)
	dir := t.TempDir()
	pa, pb := g("near_logits.npy"), writeNpyFile(t, dir, "b.npy", matrixRows(xb, v))
	pw := writeNpyFile(t, dir, "w.npy", tw)
	teacher := []string{"--teacher-ids", g("near_ids.npy"), "--teacher-logprobs", g("near_logprobs.npy")}
	got := evalJSON(t, append([]string{"compare", "--a", pa, "--b", pb, "--targets", g("near_targets.npy"), "--token-weights", pw, "--device", "cpu", "--json"}, teacher...)...)
	for _, m := range []struct{ key, logits string }{{"a", pa}, {"b", pb}} {
		want := evalJSON(t, append([]string{"eval", "--logits", m.logits, "--targets", g("near_targets.npy"), "--token-weights", pw, "--device", "cpu", "--json"}, teacher...)...)
		require.Equal(t, want, got[m.key], "model %s: xent eval's report", m.key)
	}
	kd := got["kl_diff"].(map[string]any)
	require.InEpsilon(t, d, kd["diff"], 1e-5)
	require.InEpsilon(t, got["b"].(map[string]any)["kl"].(float64)-got["a"].(map[string]any)["kl"].(float64), kd["diff"], 1e-12)
	require.InEpsilon(t, se, kd["stderr"], 1e-4, "paired over the rows, token-weighted")
	require.InEpsilon(t, tTwoSided(math.Abs(kd["diff"].(float64)/kd["stderr"].(float64)), len(s)-1), kd["p_value"], 1e-9)
	without := evalJSON(t, "compare", "--a", pa, "--b", pb, "--targets", g("near_targets.npy"), "--device", "cpu", "--json")
	require.NotContains(t, without, "kl_diff")
	code, out, errOut := runCmd(append([]string{"compare", "--a", pa, "--b", pb, "--targets", g("near_targets.npy"), "--token-weights", pw, "--device", "cpu"}, teacher...)...)
	require.Equal(t, 0, code, errOut)
	require.Regexp(t, `\nKL          [0-9.]+ +[0-9.]+ +[-+][0-9.]+ nats \(the teacher's; 95% \[`, out)

	// Manifests of two lines each, the teacher on A's lines only: B's
	// lines take it. Their shards merged give the same.
	manifest := func(name string, x []float32, withTeacher bool, ip string) string {
		var lines []string
		for s, c := range [][2]int{{0, n / 2}, {n / 2, n}} {
			f := func(p string) string { return fmt.Sprintf("%s%s%d.npy", name, p, s) }
			l := map[string]string{"logits": writeNpyFile(t, dir, f("x"), matrixRows(x[c[0]*v:c[1]*v], v)),
				"targets": writeNpyFile(t, dir, f("t"), tg[c[0]:c[1]]), "weights": writeNpyFile(t, dir, f("w"), tw[c[0]:c[1]])}
			if withTeacher {
				l["teacher_ids"] = writeNpyFile(t, dir, fmt.Sprintf("%s%d.npy", ip, s), matrixRows(ids[c[0]*k:c[1]*k], k))
				l["teacher_logprobs"] = writeNpyFile(t, dir, fmt.Sprintf("lp%d.npy", s), matrixRows(lp[c[0]*k:c[1]*k], k))
			}
			b, err := json.Marshal(l)
			require.NoError(t, err)
			lines = append(lines, string(b))
		}
		p := filepath.Join(dir, name+".jsonl")
		require.NoError(t, os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644))
		return p
	}
	ma, mb := manifest("ma", x, true, "i"), manifest("mb", xb, false, "")
	lines := evalJSON(t, "compare", "--a", ma, "--b", mb, "--device", "cpu", "--json")
	checkClose(t, "kl_diff", got["kl_diff"], lines["kl_diff"], nil)
	var parts []string
	for i, sh := range []string{"0/2", "1/2"} {
		p := filepath.Join(dir, fmt.Sprintf("K%d.json", i))
		evalJSON(t, "compare", "--a", ma, "--b", mb, "--device", "cpu", "--json", "--shard", sh, "--stats-out", p)
		parts = append(parts, p)
	}
	merged := evalJSON(t, append([]string{"merge", "--json"}, parts...)...)
	checkClose(t, "kl_diff", lines["kl_diff"], merged["kl_diff"], nil)
	// Another teacher's files on B's lines: refused, naming both.
	mo := manifest("mo", xb, true, "other")
	code, _, errOut = runCmd("compare", "--a", ma, "--b", mo, "--device", "cpu")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, mo+":1: the teacher ("+filepath.Join(dir, "other0.npy"))
	require.Contains(t, errOut, "is not model A's ("+filepath.Join(dir, "i0.npy"))
	code, _, errOut = runCmd(append([]string{"compare", "--a", ma, "--b", mb}, teacher...)...)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "--teacher-* go with logits files")
}
