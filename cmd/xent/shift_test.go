package main

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/nlpodyssey/safetensors"
	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/internal/corpus/corpustest"
	"github.com/xentlab/xent/internal/npyfile"
	"github.com/xentlab/xent/internal/seed"
	"github.com/xentlab/xent/internal/spec"
)

// TestEvalShift: a causal language model's dump, logits [3 × 6 × 29] and
// its input ids [3 × 6] (the third sequence padded with -100), evaluated
// with --shift gives the loss Hugging Face's models compute with labels =
// ids (testdata/npy/gen.py: PyTorch in float64), per row and in the mean,
// from each layout a user may have: the logits [batch × sequence × vocab]
// with ids [batch × sequence]; the logits flattened with 1-D ids and
// --seq-len; a .safetensors of logits and labels; two such files in a
// manifest. Token weights [batch × sequence] shift with the ids. Hidden states [batch × sequence × features] with a classifier
// give what their logits give (the loss by position too, at the length of
// their sequences), and a teacher's top-k [batch × sequence ×
// k] what it gives flattened. The rows and dH are written in the rows'
// shape. Without a sequence length, or with one the
// files contradict, it is an error naming the files.
// pytorchLoss is PyTorch's loss (float64) of a fixture of testdata/npy/gen.py,
// from its expected.json: the mean, the tokens counted and each row's.
type pytorchLoss struct {
	Mean   float64   `json:"mean"`
	Tokens int64     `json:"tokens"`
	Rows   []float64 `json:"rows"`
}

// causalGolden returns expected.json's "causal" (the causal fixture's
// shifted labels, from the float32 logits) and "causal_bf16" (from their
// bfloat16 values).
func causalGolden(t *testing.T) (f32, bf16 pytorchLoss) {
	t.Helper()
	var exp struct {
		Causal     pytorchLoss `json:"causal"`
		CausalBF16 pytorchLoss `json:"causal_bf16"`
	}
	b, err := os.ReadFile(fixture("expected.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &exp))
	return exp.Causal, exp.CausalBF16
}

func TestEvalShift(t *testing.T) {
	want, wantBF16 := causalGolden(t)
	require.Len(t, want.Rows, 18)
	dir := t.TempDir()
	logits, ids := fixture("causal_logits.npy"), fixture("causal_ids.npy")
	check := func(name string, shape []int, args ...string) {
		t.Helper()
		rowsOut := filepath.Join(dir, "rows.npy")
		os.Remove(rowsOut)
		got := evalJSON(t, append(append([]string{"eval", "--device", "cpu", "--json", "--shift"}, args...), "--rows-out", rowsOut)...)
		require.Equal(t, shape, npyShape(t, rowsOut), "%s: the rows in the rows' shape", name)
		require.True(t, spec.LossCloseIn(got["loss"].(float64), want.Mean, spec.LossTol), "%s: loss %v, PyTorch %v", name, got["loss"], want.Mean)
		require.EqualValues(t, want.Tokens, got["tokens"], name)
		rows := readNpy[float32](t, rowsOut)
		require.Len(t, rows, len(want.Rows), name)
		for i, r := range rows {
			require.True(t, spec.LossCloseIn(float64(r), want.Rows[i], spec.LossTol), "%s: row %d: %v, PyTorch %v", name, i, r, want.Rows[i])
		}
	}
	check("[batch × sequence × vocab]", []int{3, 6}, "--logits", logits, "--targets", ids)

	x := readNpy[float32](t, logits)
	tg := readNpy[int64](t, ids)
	flat := filepath.Join(dir, "flat.npy")
	corpustest.SaveNpy(t, flat, x) // 1-D: given a header of 18 × 29 below
	fb, err := os.ReadFile(flat)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(flat, reshaped(t, fb, "(18, 29)", false), 0o644))
	flatIDs := writeNpyFile(t, dir, "flat_ids.npy", tg)
	check("flattened, --seq-len", []int{18}, "--logits", flat, "--targets", flatIDs, "--seq-len", "6")

	st := filepath.Join(dir, "dump.safetensors")
	xb := make([]byte, 4*len(x))
	for k, v := range x {
		binary.LittleEndian.PutUint32(xb[4*k:], math.Float32bits(v))
	}
	tb := make([]byte, 8*len(tg))
	for k, v := range tg {
		binary.LittleEndian.PutUint64(tb[8*k:], uint64(v))
	}
	xv, err := safetensors.NewTensorView(safetensors.F32, []uint64{3, 6, 29}, xb)
	require.NoError(t, err)
	lv, err := safetensors.NewTensorView(safetensors.I64, []uint64{3, 6}, tb)
	require.NoError(t, err)
	sb, err := safetensors.Serialize(map[string]safetensors.TensorView{"logits": xv, "labels": lv}, nil)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(st, sb, 0o644))
	check(".safetensors of logits and labels", []int{3, 6}, "--logits", st)
	// NumPy's archives of the same dump (gen.py): np.savez's, read in
	// place, its "labels" the targets; np.savez_compressed's, named array
	// by array, its bool attention mask as token weights.
	check(".npz of logits and labels", []int{3, 6}, "--logits", fixture("causal.npz"))
	zf := fixture("causal_z.npz")
	check(".npz compressed", []int{3, 6}, "--logits", zf+":logits", "--targets", zf+":labels", "--token-weights", zf+":mask")
	// PyTorch's files (torch.save): a dict of the logits and the ids, and
	// the same logits in bfloat16 (mapped and computed in bfloat16), whose
	// loss PyTorch computed from the bfloat16 values; a view that is not
	// contiguous is refused.
	check(".pt of logits and labels", []int{3, 6}, "--logits", fixture("causal.pt"))
	bf := evalJSON(t, "eval", "--device", "cpu", "--json", "--shift", "--logits", fixture("causal_bf16.pt"))
	require.True(t, spec.LossCloseIn(bf["loss"].(float64), wantBF16.Mean, spec.LossTol), ".pt in bfloat16: loss %v, PyTorch %v", bf["loss"], wantBF16.Mean)
	require.EqualValues(t, wantBF16.Tokens, bf["tokens"])
	code, _, errOut := runCmd("eval", "--device", "cpu", "--shift", "--logits", fixture("causal_view.pt"), "--targets", ids)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, fixture("causal_view.pt")+": not contiguous (size [3 5 29], stride [174 29 1]): save x.contiguous()")
	code, out, errOut := runCmd("eval", "--device", "cpu", "--shift", "--logits", logits, "--targets", zf+":labels", "--rows-out", zf)
	require.Equal(t, 1, code)
	require.Empty(t, out)
	require.Contains(t, errOut, "--rows-out "+zf+": the same file as --targets "+zf+":labels; an output never replaces an input")
	code, _, errOut = runCmd("eval", "--device", "cpu", "--shift", "--logits", zf+":logits", "--targets", zf+":ids")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, zf+`: no array "ids" (it holds logits, labels, mask)`)

	// The text report's last position is the last that counts (T-2).
	code, out, errOut = runCmd("eval", "--device", "cpu", "--shift", "--seq-len", "6", "--logits", logits, "--targets", ids)
	require.Equal(t, 0, code, errOut)
	require.Regexp(t, `by position 6 positions: [0-9.]+ at 0, [0-9.]+ at 4 `, out)

	// Token weights one an input token, as the ids: they shift with them.
	var tw [3][6]float32
	num, den := 0.0, 0.0
	for i := range 18 {
		tw[i/6][i%6] = float32(1 + i%4)
		if i%6 > 0 && tg[i] != -100 { // row i-1's target and weight
			num += float64(tw[i/6][i%6]) * want.Rows[i-1]
			den += float64(tw[i/6][i%6])
		}
	}
	weighted := evalJSON(t, "eval", "--device", "cpu", "--json", "--shift", "--logits", logits, "--targets", ids, "--token-weights", writeNpyFile(t, dir, "tw.npy", tw))
	require.True(t, spec.LossCloseIn(weighted["loss"].(float64), num/den, spec.LossTol), "token weights: loss %v, PyTorch's rows weighted %v", weighted["loss"], num/den)

	// An attention mask as it comes, int64 [batch × sequence]: 0 at the
	// padding, whose ids are -100 already: the loss unweighted.
	var mask [3][6]int64
	for i := range 18 {
		if tg[i] != -100 {
			mask[i/6][i%6] = 1
		}
	}
	masked := evalJSON(t, "eval", "--device", "cpu", "--json", "--shift", "--logits", logits, "--targets", ids, "--token-weights", writeNpyFile(t, dir, "mask.npy", mask))
	require.True(t, spec.LossCloseIn(masked["loss"].(float64), want.Mean, spec.LossTol), "attention mask: loss %v, PyTorch %v", masked["loss"], want.Mean)

	m := filepath.Join(dir, "m.jsonl")
	al, err := filepath.Abs(logits)
	require.NoError(t, err)
	ai, err := filepath.Abs(ids)
	require.NoError(t, err)
	az, err := filepath.Abs(fixture("causal.npz"))
	require.NoError(t, err)
	line := `{"logits": "` + al + `", "targets": "` + ai + `"}` + "\n"
	require.NoError(t, os.WriteFile(m, []byte(line+line+`{"logits": "`+az+`"}`+"\n"), 0o644))
	got := evalJSON(t, "eval", "--device", "cpu", "--json", "--shift", "--manifest", m)
	require.True(t, spec.LossCloseIn(got["loss"].(float64), want.Mean, spec.LossTol), "manifest: loss %v, PyTorch %v", got["loss"], want.Mean)
	require.EqualValues(t, 3*want.Tokens, got["tokens"], "two lines of .npy, one of a .npz of logits and labels")

	// Hidden states [3 × 6 × 8] and a classifier [29 × 8]: the loss of
	// their logits, computed in float64 and rounded to float32.
	s := seed.New(t)
	r := rand.New(rand.NewPCG(s, 1))
	const D, V = 8, 29
	h, w := make([]float32, 18*D), make([]float32, V*D)
	for k := range h {
		h[k] = float32(r.NormFloat64())
	}
	for k := range w {
		w[k] = float32(r.NormFloat64())
	}
	z := make([]float32, 18*V)
	for i := range 18 {
		for j := range V {
			acc := 0.0
			for d := range D {
				acc += float64(h[i*D+d]) * float64(w[j*D+d])
			}
			z[i*V+j] = float32(acc)
		}
	}
	hp, wp, zp := filepath.Join(dir, "h.npy"), filepath.Join(dir, "w.npy"), filepath.Join(dir, "z.npy")
	corpustest.SaveNpy(t, hp, h)
	hb, err := os.ReadFile(hp)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(hp, reshaped(t, hb, "(3, 6, 8)", false), 0o644))
	corpustest.SaveNpy(t, zp, z)
	zb, err := os.ReadFile(zp)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(zp, reshaped(t, zb, "(3, 6, 29)", false), 0o644))
	writeSafetensors(t, filepath.Join(dir, "w.safetensors"), map[string][]float32{"lm_head.weight": w}, map[string][]uint64{"lm_head.weight": {V, D}})
	corpustest.SaveNpy(t, wp, w)
	wb, err := os.ReadFile(wp)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(wp, reshaped(t, wb, "(29, 8)", false), 0o644))
	// nn.Linear(8, 29)'s state dict, saved by torch.save: its weight as
	// the .npy of the same values gives it.
	fromPt := evalJSON(t, "eval", "--device", "cpu", "--json", "--shift", "--hidden", hp, "--weight", fixture("linear.pt")+":weight", "--targets", ids)
	fromNpy := evalJSON(t, "eval", "--device", "cpu", "--json", "--shift", "--hidden", hp, "--weight", fixture("linear_weight.npy"), "--targets", ids)
	require.Equal(t, fromNpy["loss"], fromPt["loss"], "W from a .pt")
	fromZ := evalJSON(t, "eval", "--device", "cpu", "--json", "--shift", "--by-position", "--logits", zp, "--targets", ids)
	for _, wt := range []string{wp, filepath.Join(dir, "w.safetensors")} {
		dh := filepath.Join(dir, "dh.npy")
		os.Remove(dh)
		fromH := evalJSON(t, "eval", "--device", "cpu", "--json", "--shift", "--by-position", "--hidden", hp, "--weight", wt, "--targets", ids, "--grad-hidden", dh)
		require.Equal(t, []int{3, 6, D}, npyShape(t, dh), "dH in H's shape")
		require.True(t, spec.LossCloseIn(fromH["loss"].(float64), fromZ["loss"].(float64), 1e-5), "hidden states %v, their logits %v (seed %d)", fromH["loss"], fromZ["loss"], s)
		require.EqualValues(t, want.Tokens, fromH["tokens"])
		bz, bh := fromZ["by_position"].([]any), fromH["by_position"].([]any)
		require.Len(t, bz, 6, "the length of H's [3 × 6 × 8] sequences")
		require.Len(t, bh, 6)
		for k := range 5 {
			require.True(t, spec.LossCloseIn(bh[k].(float64), bz[k].(float64), 1e-5), "position %d: hidden states %v, their logits %v", k, bh[k], bz[k])
		}
		require.Nil(t, bh[5], "--shift counts no sequence's last row")
	}

	// A teacher's top-2 [3 × 6 × 2] beside the rows: the KL of the same
	// teacher flattened [18 × 2]; of another shape, an error.
	var ids3 [3][6][2]int64
	var lp3 [3][6][2]float32
	var ids2 [18][2]int64
	var lp2 [18][2]float32
	for i := range 18 {
		for j := range 2 {
			c, p := int64((i*7+j*11)%29), float32(math.Log(0.6-0.3*float64(j)))
			ids3[i/6][i%6][j], lp3[i/6][i%6][j], ids2[i][j], lp2[i][j] = c, p, c, p
		}
	}
	kl := func(tid, tlp any) map[string]any {
		return evalJSON(t, "eval", "--device", "cpu", "--json", "--shift", "--logits", logits, "--targets", ids,
			"--teacher-ids", writeNpyFile(t, dir, "tid.npy", tid), "--teacher-logprobs", writeNpyFile(t, dir, "tlp.npy", tlp))
	}
	k3, k2 := kl(ids3, lp3), kl(ids2, lp2)
	require.NotNil(t, k3["kl"])
	require.Equal(t, k2, k3, "a teacher [batch × sequence × k] is its rows flattened")
	var ids63 [6][3][2]int64
	tid63 := writeNpyFile(t, dir, "tid63.npy", ids63)
	tlp63 := writeNpyFile(t, dir, "tlp63.npy", [6][3][2]float32{})

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--logits", logits, "--targets", ids, "--teacher-ids", tid63, "--teacher-logprobs", tlp63}, "tid63.npy: rows of the teacher's classes of shape [6 3], the rows of " + logits + " are [3 6]"},
		{[]string{"--logits", flat, "--targets", flatIDs, "--shift"}, "flat_ids.npy: --shift needs the sequences' length"},
		{[]string{"--logits", flat, "--targets", flatIDs, "--shift", "--seq-len", "4"}, "flat_ids.npy: --shift: 18 rows are not whole sequences of 4"},
		{[]string{"--logits", logits, "--targets", ids, "--seq-len", "4"}, "--seq-len 4, but the sequences are 6 long (" + ids + "'s shape [3 6])"},
		{[]string{"--logits", logits, "--targets", flatIDs, "--seq-len", "9"}, "--seq-len 9, but the sequences are 6 long (" + logits + "'s rows [3 6])"},
		{[]string{"--logits", zp, "--targets", writeNpyFile(t, dir, "t63.npy", [6][3]int64{}), "--shift"}, "t63.npy: targets of shape [6 3], the rows of " + zp + " are [3 6]: they must match one for one"},
	} {
		code, out, errOut := runCmd(append([]string{"eval", "--device", "cpu"}, c.args...)...)
		require.Equal(t, 1, code, c.want)
		require.Empty(t, out)
		require.Contains(t, errOut, c.want)
	}
}

// npyShape returns the shape of the .npy file path.
func npyShape(t *testing.T, path string) []int {
	t.Helper()
	f, err := npyfile.Open(path)
	require.NoError(t, err)
	defer f.Close()
	return f.Shape
}
