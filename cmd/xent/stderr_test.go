package main

import (
	"cmp"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/internal/seed"
)

// clusteredSE returns the mean and its standard error over clusters of
// loss sums s[c] and denominators w[c], in two passes: the mean first,
// then Σ (s_c − m·w_c)² (the code under test expands it).
func clusteredSE(s, w []float64) (m, se float64) {
	var S, W float64
	for c := range s {
		S, W = S+s[c], W+w[c]
	}
	m = S / W
	v := 0.0
	for c := range s {
		v += (s[c] - m*w[c]) * (s[c] - m*w[c])
	}
	n := float64(len(s))
	return m, math.Sqrt(v*n/(n-1)) / W
}

// above returns how many of row's logits are strictly above its target
// t's.
func above(row []float32, t int64) float64 {
	n := 0.0
	for _, v := range row {
		if v > row[t] {
			n++
		}
	}
	return n
}

// rowEntropy returns the entropy −Σ p·log p of row's softmax, in float64.
func rowEntropy(row []float32) float64 {
	mx := math.Inf(-1)
	for _, v := range row {
		mx = max(mx, float64(v))
	}
	var s, d float64
	for _, v := range row {
		e := math.Exp(float64(v) - mx)
		s, d = s+e, d+e*(float64(v)-mx)
	}
	return math.Log(s) - d/s
}

// causalClusters returns the loss sums and counts of the causal
// fixture's 3 sequences with --shift, of PyTorch's rows.
func causalClusters(t *testing.T) (s, w []float64) {
	want, _ := causalGolden(t)
	ids := readNpy[int64](t, fixture("causal_ids.npy"))
	for b := range 3 {
		var sb, wb float64
		for p := range 5 { // row p against token p+1; the last row of each counts nothing
			if ids[b*6+p+1] != -100 {
				sb, wb = sb+want.Rows[b*6+p], wb+1
			}
		}
		s, w = append(s, sb), append(w, wb)
	}
	return s, w
}

// rowsSE returns s/√n of the losses l (s their sample standard
// deviation): the standard error of their mean, each its own cluster.
func rowsSE(l []float64) float64 {
	_, se := clusteredSE(l, ones(len(l)))
	return se
}

// TestEvalStdErr: --stderr reports the standard error of the mean loss
// over the sequences as clusters (loss_stderr, stderr_clusters) and the
// perplexity's 95% interval, computed here in two passes from PyTorch's
// rows of the causal fixture and from float64 losses of random logits
// [16 × 12 × 50] with ignored rows and token weights; 1-D rows are each
// their own cluster (s/√n); a manifest of the file in two lines, its two
// shards merged, and each line of --lines-out agree; one cluster gives
// null; partials with and without it do not merge. The top-1 accuracy's
// (accuracy_stderr, accuracy_95 within [0, 1]) alike, of each cluster's
// correct and counted rows (float64 argmax here), on the random logits
// and the fused linear; an older partial of the loss's spread alone is
// refused.
func TestEvalStdErr(t *testing.T) {
	got := evalJSON(t, "eval", "--device", "cpu", "--json", "--shift", "--stderr", "--logits", fixture("causal_logits.npy"), "--targets", fixture("causal_ids.npy"))
	s, w := causalClusters(t)
	m, se := clusteredSE(s, w)
	require.InEpsilon(t, m, got["loss"], 1e-6)
	require.InEpsilon(t, se, got["loss_stderr"], 1e-5, "PyTorch's rows, clustered by sequence")
	require.EqualValues(t, 3, got["stderr_clusters"])
	ci := got["perplexity_95"].([]any)
	const t2 = 4.302652729749464 // Student's t's 97.5% quantile, 2 degrees of freedom (3 sequences)
	require.InEpsilon(t, math.Exp(m-t2*se), ci[0], 1e-5)
	require.InEpsilon(t, math.Exp(m+t2*se), ci[1], 1e-5)

	// Random logits [16 × 12 × 50], some targets ignored, token weights.
	r := seed.Rand(t, 1)
	const B, T, V = 16, 12, 50
	x := make([][][]float32, B)
	tg := make([][]int64, B)
	tw := make([][]float32, B)
	for b := range B {
		x[b], tg[b], tw[b] = make([][]float32, T), make([]int64, T), make([]float32, T)
		for p := range T {
			x[b][p] = make([]float32, V)
			for c := range x[b][p] {
				x[b][p][c] = float32(r.NormFloat64() * 3)
			}
			tg[b][p], tw[b][p] = int64(r.IntN(V)), float32(r.IntN(4))*0.5
			if r.IntN(3) == 0 { // a third of the rows right
				tg[b][p] = int64(slices.Index(x[b][p], slices.Max(x[b][p])))
			}
			if r.IntN(5) == 0 {
				tg[b][p] = -100
			}
		}
	}
	tg[3] = []int64{-100, -100, -100, -100, -100, -100, -100, -100, -100, -100, -100, -100} // a sequence of nothing counted
	// Rows ranked exactly at the edges of --topk 1,5 below (one and five
	// classes above the target), whatever the seed: an off-by-one in the
	// ranks' counts changes their sums.
	for k, b := range []int{0, 1} {
		order := make([]int, V)
		for c := range order {
			order[c] = c
		}
		row := x[b][0]
		slices.SortFunc(order, func(i, j int) int { return cmp.Compare(row[j], row[i]) })
		tg[b][0] = int64(order[[]int{1, 5}[k]])
	}
	dir := t.TempDir()
	lp, tp, wp := writeNpyFile(t, dir, "x.npy", x), writeNpyFile(t, dir, "t.npy", tg), writeNpyFile(t, dir, "w.npy", tw)
	s, w = nil, nil
	var hs, hn, h5, rrs, ents []float64
	for b := range B {
		var sb, wb, hb, nb, tb, rb, eb float64
		counted := false
		for p := range T {
			if tg[b][p] == -100 {
				continue
			}
			loss := rowLoss(x[b][p], tg[b][p])
			sb, wb, counted = sb+float64(tw[b][p])*loss, wb+float64(tw[b][p]), true
			hb, nb, tb = hb+hit(x[b][p], tg[b][p]), nb+1, tb+inTop(x[b][p], tg[b][p], 5)
			rb, eb = rb+1/(1+above(x[b][p], tg[b][p])), eb+rowEntropy(x[b][p])
		}
		if counted {
			s, w, hs, hn, h5 = append(s, sb), append(w, wb), append(hs, hb), append(hn, nb), append(h5, tb)
			rrs, ents = append(rrs, rb), append(ents, eb)
		}
	}
	m, se = clusteredSE(s, w)
	acc, ase := clusteredSE(hs, hn)
	base := []string{"eval", "--device", "cpu", "--json", "--stderr"}
	got = evalJSON(t, append(base, "--logits", lp, "--targets", tp, "--token-weights", wp)...)
	require.InEpsilon(t, m, got["loss"], 1e-6)
	require.InEpsilon(t, se, got["loss_stderr"], 1e-5, "float64 losses, clustered by sequence")
	require.EqualValues(t, B-1, got["stderr_clusters"], "the sequence of nothing counted is no cluster")
	const t14 = 2.1447866879169273 // 14 degrees of freedom (15 sequences)
	ci = got["perplexity_95"].([]any)
	require.InEpsilon(t, math.Exp(m-t14*se), ci[0], 1e-5)
	require.InEpsilon(t, math.Exp(m+t14*se), ci[1], 1e-5)
	// The bits per byte's, with token weights: the log-loss's sum is the
	// mean times the weights' sum.
	sw := 0.0
	for _, v := range w {
		sw += v
	}
	bpb := evalJSON(t, append(base, "--logits", lp, "--targets", tp, "--token-weights", wp, "--bytes", "5000")...)
	require.InEpsilon(t, se*sw/(math.Ln2*5000), bpb["bits_per_byte_stderr"], 1e-5, "weighted")
	require.InEpsilon(t, (m+t14*se)*sw/(math.Ln2*5000), bpb["bits_per_byte_95"].([]any)[1], 1e-5, "weighted")
	require.InDelta(t, acc, got["accuracy"], 1e-15)
	require.InEpsilon(t, ase, got["accuracy_stderr"], 1e-9, "correct rows, clustered by sequence; token weights aside")
	aci := got["accuracy_95"].([]any)
	require.InDelta(t, max(acc-t14*ase, 0), aci[0], 1e-12)
	require.InDelta(t, min(acc+t14*ase, 1), aci[1], 1e-12)
	// Three sequences of two rows, 2, 2 and 1 right: 5/6 ± 4.30·(1/6),
	// the interval's high end at 1.
	sure := [][][]float32{{{3, 0, 0}, {0, 3, 0}}, {{0, 0, 3}, {3, 0, 0}}, {{0, 3, 0}, {0, 0, 3}}}
	sureT := [][]int64{{0, 1}, {2, 0}, {1, 0}}
	sg := evalJSON(t, append(base, "--logits", writeNpyFile(t, dir, "sure.npy", sure), "--targets", writeNpyFile(t, dir, "sure_t.npy", sureT))...)
	require.InDelta(t, 5.0/6, sg["accuracy"], 1e-15)
	require.InDelta(t, 1.0/6, sg["accuracy_stderr"], 1e-15)
	// Each position's mean, over the sequences counted there, with
	// --by-position.
	bp := evalJSON(t, append(base, "--logits", lp, "--targets", tp, "--token-weights", wp, "--by-position")...)
	bse := bp["by_position_stderr"].([]any)
	require.Len(t, bse, T)
	for p := range T {
		var ps, pw []float64
		for b := range B {
			if tg[b][p] != -100 {
				ps, pw = append(ps, float64(tw[b][p])*rowLoss(x[b][p], tg[b][p])), append(pw, float64(tw[b][p]))
			}
		}
		pm, pse := clusteredSE(ps, pw)
		require.InEpsilon(t, pm, bp["by_position"].([]any)[p], 1e-6, "position %d", p)
		require.InEpsilon(t, pse, bse[p], 1e-5, "position %d: its sequences' rows", p)
	}
	// --plot draws them as the curve's band.
	svg := filepath.Join(dir, "band.svg")
	evalJSON(t, append(base, "--logits", lp, "--targets", tp, "--token-weights", wp, "--plot", svg)...)
	drawn, err := os.ReadFile(svg)
	require.NoError(t, err)
	require.Contains(t, string(drawn), "95% interval (over the sequences)")
	// Each top-k accuracy's (--topk 1,5), and its shards' merged.
	a5, se5 := clusteredSE(h5, hn)
	k5 := evalJSON(t, append(base, "--logits", lp, "--targets", tp, "--token-weights", wp, "--topk", "1,5")...)
	require.InDelta(t, a5, k5["topk"].(map[string]any)["5"], 1e-15)
	require.Equal(t, k5["accuracy_stderr"], k5["topk_stderr"].(map[string]any)["1"], "top-1 by rank is the argmax here (no ties)")
	require.InEpsilon(t, se5, k5["topk_stderr"].(map[string]any)["5"], 1e-9)
	c5 := k5["topk_95"].(map[string]any)["5"].([]any)
	require.InDelta(t, max(a5-t14*se5, 0), c5[0], 1e-12)
	require.InDelta(t, min(a5+t14*se5, 1), c5[1], 1e-12)
	// The MRR's and the mean entropy's, of each cluster's 1/rank and
	// entropies over its counted rows.
	mrr, mse := clusteredSE(rrs, hn)
	ent, ese := clusteredSE(ents, hn)
	require.InDelta(t, mrr, k5["mrr"], 1e-12)
	require.InEpsilon(t, mse, k5["mrr_stderr"], 1e-9, "1/rank, clustered by sequence")
	mci := k5["mrr_95"].([]any)
	require.InDelta(t, max(mrr-t14*mse, 0), mci[0], 1e-12)
	require.InDelta(t, min(mrr+t14*mse, 1), mci[1], 1e-12)
	require.InEpsilon(t, ent, k5["entropy"], 1e-6)
	require.InEpsilon(t, ese, k5["entropy_stderr"], 1e-5, "entropies, clustered by sequence")
	eci := k5["entropy_95"].([]any)
	require.InEpsilon(t, ent-t14*ese, eci[0], 1e-5)
	require.InEpsilon(t, ent+t14*ese, eci[1], 1e-5)
	sci := sg["accuracy_95"].([]any)
	require.InDelta(t, 5.0/6-t2/6, sci[0], 1e-12)
	require.EqualValues(t, 1, sci[1], "within [0, 1]")

	// The rows of a 1-D file are each a cluster: s/√n of the losses.
	flat := make([][]float32, 0, B*T)
	var flatT []int64
	var l1 []float64
	for b := range B {
		for p := range T {
			flat, flatT = append(flat, x[b][p]), append(flatT, tg[b][p])
		}
	}
	fp, ftp := writeNpyFile(t, dir, "flat.npy", flat), writeNpyFile(t, dir, "flat_t.npy", flatT)
	for i, row := range flat {
		if flatT[i] == -100 {
			continue
		}
		l1 = append(l1, rowLoss(row, flatT[i]))
	}
	flatGot := evalJSON(t, append(base, "--logits", fp, "--targets", ftp)...)
	require.InEpsilon(t, rowsSE(l1), flatGot["loss_stderr"], 1e-5, "s/√n of the rows")
	require.EqualValues(t, len(l1), flatGot["stderr_clusters"])
	// With --seq-len the 1-D rows are sequences again.
	seqGot := evalJSON(t, append(base, "--logits", fp, "--targets", ftp, "--seq-len", "12")...)
	require.EqualValues(t, B-1, seqGot["stderr_clusters"])

	// A manifest of the file in two lines (sequences 0–9, 10–15): the same
	// clusters, so the same standard error; so do its shards merged.
	half := func(name string, v any) string { return writeNpyFile(t, dir, name, v) }
	lines := []string{
		`{"logits": "` + half("x0.npy", x[:10]) + `", "targets": "` + half("t0.npy", tg[:10]) + `"}`,
		`{"logits": "` + half("x1.npy", x[10:]) + `", "targets": "` + half("t1.npy", tg[10:]) + `"}`,
	}
	mf := filepath.Join(dir, "m.jsonl")
	require.NoError(t, os.WriteFile(mf, []byte(strings.Join(lines, "\n")+"\n"), 0o644))
	single := evalJSON(t, append(base, "--logits", lp, "--targets", tp)...)
	linesOut := filepath.Join(dir, "lines.jsonl")
	whole := evalJSON(t, append(base, "--manifest", mf, "--lines-out", linesOut)...)
	require.InEpsilon(t, single["loss_stderr"], whole["loss_stderr"], 1e-12)
	require.InEpsilon(t, single["accuracy_stderr"], whole["accuracy_stderr"], 1e-12)
	require.Equal(t, single["stderr_clusters"], whole["stderr_clusters"])
	var parts []string
	for i, sh := range []string{"0/2", "1/2"} {
		p := filepath.Join(dir, "S"+string(rune('0'+i))+".json")
		evalJSON(t, append(base, "--manifest", mf, "--shard", sh, "--stats-out", p)...)
		parts = append(parts, p)
	}
	merged := evalJSON(t, append([]string{"merge", "--json"}, parts...)...)
	require.InEpsilon(t, single["loss_stderr"], merged["loss_stderr"], 1e-12)
	var parts5 []string
	for i, sh := range []string{"0/2", "1/2"} {
		p := filepath.Join(dir, "K"+string(rune('0'+i))+".json")
		evalJSON(t, append(base, "--manifest", mf, "--shard", sh, "--stats-out", p, "--topk", "1,5")...)
		parts5 = append(parts5, p)
	}
	single5 := evalJSON(t, append(base, "--logits", lp, "--targets", tp, "--topk", "1,5")...)
	merged5 := evalJSON(t, append([]string{"merge", "--json"}, parts5...)...)
	for _, k := range []string{"topk_stderr", "topk_95", "mrr_stderr", "mrr_95", "entropy_stderr", "entropy_95"} {
		checkClose(t, k, single5[k], merged5[k], nil)
	}
	var partsP []string
	for i, sh := range []string{"0/2", "1/2"} {
		p := filepath.Join(dir, "B"+string(rune('0'+i))+".json")
		evalJSON(t, append(base, "--manifest", mf, "--shard", sh, "--stats-out", p, "--by-position")...)
		partsP = append(partsP, p)
	}
	singleP := evalJSON(t, append(base, "--logits", lp, "--targets", tp, "--by-position")...)
	mergedP := evalJSON(t, append([]string{"merge", "--json"}, partsP...)...)
	checkClose(t, "by_position_stderr", singleP["by_position_stderr"], mergedP["by_position_stderr"], nil)
	require.InEpsilon(t, single["accuracy_stderr"], merged["accuracy_stderr"], 1e-12)
	require.Equal(t, single["stderr_clusters"], merged["stderr_clusters"])
	// A partial of an older xent, the loss's spread alone: refused.
	b, err := os.ReadFile(parts[1])
	require.NoError(t, err)
	var old map[string]any
	require.NoError(t, json.Unmarshal(b, &old))
	require.Contains(t, old, "accuracy_spread")
	delete(old, "accuracy_spread")
	b, err = json.Marshal(old)
	require.NoError(t, err)
	older := filepath.Join(dir, "S1-older.json")
	require.NoError(t, os.WriteFile(older, b, 0o644))
	code, _, errOut := runCmd("merge", parts[0], older)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, older+": the standard errors' sums of the loss and the accuracy are not of the same clusters (statistics of an older xent have the loss's alone)")
	// One of --topk without the MRR's and the entropy's: refused too.
	b, err = os.ReadFile(parts5[1])
	require.NoError(t, err)
	old = nil
	require.NoError(t, json.Unmarshal(b, &old))
	require.Contains(t, old, "mrr_spread")
	require.Contains(t, old, "entropy_spread")
	delete(old, "mrr_spread")
	b, err = json.Marshal(old)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(older, b, 0o644))
	code, _, errOut = runCmd("merge", parts5[0], older)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, older+": the standard errors' sums of the MRR or the entropy missing, or not of the loss's clusters (statistics of an older xent")
	b, err = os.ReadFile(linesOut)
	require.NoError(t, err)
	for k, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		require.Contains(t, line, `"stderr_clusters":`+[]string{"9", "6"}[k], "line %d's own clusters", k+1)
	}
	// Without --stderr the shard's partial does not merge with these.
	other := filepath.Join(dir, "S2.json")
	evalJSON(t, "eval", "--device", "cpu", "--json", "--manifest", mf, "--shard", "1/2", "--stats-out", other)
	code, _, errOut = runCmd("merge", parts[0], other)
	require.NotEqual(t, 0, code)
	require.Contains(t, errOut, "stderr")

	// Through the fused linear: PyTorch's rows of the golden case "plain"
	// (1-D: each row a cluster).
	rows, ht := readNpy[float64](t, golden("plain_rows.npy")), readNpy[int64](t, golden("plain_targets.npy"))
	var pl []float64
	for i, v := range ht {
		if v != -100 {
			pl = append(pl, rows[i])
		}
	}
	lin := evalJSON(t, append(base, "--hidden", golden("plain_h.npy"), "--weight", golden("plain_w.npy"), "--bias", golden("plain_b.npy"), "--targets", golden("plain_targets.npy"))...)
	require.InEpsilon(t, rowsSE(pl), lin["loss_stderr"], 1e-5, "the fused linear's rows")
	require.EqualValues(t, len(pl), lin["stderr_clusters"])
	// Its accuracy's, of random H [40 × 16] and W [30 × 16] with each
	// other row's target its argmax (h·wᵀ in float64).
	const N, D, C = 40, 16, 30
	h, wt := make([][]float32, N), make([][]float32, C)
	for k := range C {
		wt[k] = make([]float32, D)
		for j := range wt[k] {
			wt[k][j] = float32(r.NormFloat64())
		}
	}
	ht = make([]int64, N)
	var ph []float64
	for i := range N {
		h[i] = make([]float32, D)
		for j := range h[i] {
			h[i][j] = float32(r.NormFloat64())
		}
		z := make([]float32, C)
		for k := range C {
			s := 0.0
			for j := range D {
				s += float64(h[i][j]) * float64(wt[k][j])
			}
			z[k] = float32(s)
		}
		ht[i] = int64(r.IntN(C))
		if i%2 == 0 {
			ht[i] = int64(slices.Index(z, slices.Max(z)))
		}
		ph = append(ph, hit(z, ht[i]))
	}
	lin = evalJSON(t, append(base, "--hidden", half("lh.npy", h), "--weight", half("lw.npy", wt), "--targets", half("lt.npy", ht))...)
	require.InEpsilon(t, rowsSE(ph), lin["accuracy_stderr"], 1e-9, "the fused linear's correct rows")

	// One cluster: no standard error (null), and the text report says so.
	one := evalJSON(t, append(base, "--logits", half("x9.npy", x[9:10]), "--targets", half("t9.npy", tg[9:10]))...)
	require.Contains(t, one, "loss_stderr")
	require.Nil(t, one["loss_stderr"])
	require.Contains(t, one, "accuracy_stderr")
	require.Nil(t, one["accuracy_stderr"])
	code, out, errOut := runCmd("eval", "--device", "cpu", "--stderr", "--logits", lp, "--targets", tp)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "std. error  ")
	require.Contains(t, out, "perplexity 95% [")
	require.Contains(t, out, "            accuracy ")
	code, out, errOut = runCmd("eval", "--device", "cpu", "--stderr", "--topk", "1,5", "--logits", lp, "--targets", tp)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, " 5: ")
	require.Contains(t, out, " (se ")
	// Without it, no key.
	require.NotContains(t, evalJSON(t, "eval", "--device", "cpu", "--json", "--logits", lp, "--targets", tp), "loss_stderr")
}
