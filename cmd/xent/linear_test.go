package main

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"codeberg.org/sbinet/npyio"
	"github.com/nlpodyssey/safetensors"
	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/device"
	"github.com/xentlab/xent/internal/bigram"
	"github.com/xentlab/xent/internal/corpus/corpustest"
	"github.com/xentlab/xent/internal/half"
	"github.com/xentlab/xent/internal/npyfile"
	"github.com/xentlab/xent/internal/spec"
)

func golden(name string) string {
	return filepath.Join("..", "..", "testdata", "golden", "linear", name)
}

// readNpy reads a .npy file's values as []T.
func readNpy[T any](t *testing.T, path string) []T {
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var v []T
	require.NoError(t, npyio.Read(f, &v))
	return v
}

// writeSafetensors writes tensors (float32, 2-D) into a .safetensors file
// with the library, under the names given.
func writeSafetensors(t *testing.T, path string, tensors map[string][]float32, shapes map[string][]uint64) {
	views := map[string]safetensors.TensorView{}
	for name, v := range tensors {
		b := make([]byte, 4*len(v))
		for k, x := range v {
			binary.LittleEndian.PutUint32(b[4*k:], math.Float32bits(x))
		}
		tv, err := safetensors.NewTensorView(safetensors.F32, shapes[name], b)
		require.NoError(t, err)
		views[name] = tv
	}
	b, err := safetensors.Serialize(views, nil)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, b, 0o644))
}

// linearCase is a case of testdata/golden/linear/cases.json.
type linearCase struct {
	Name string  `json:"name"`
	Mean float64 `json:"mean"`
	V    int     `json:"v"`
	D    int     `json:"d"`
}

// plainCase returns the golden case "plain" of the fused linear: 13 × 33
// hidden states, 257 classes, a bias.
func plainCase(t *testing.T) linearCase {
	var doc struct{ Cases []linearCase }
	b, err := os.ReadFile(golden("cases.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal([]byte(strings.ReplaceAll(string(b), "NaN", "null")), &doc))
	c := doc.Cases[0]
	require.Equal(t, "plain", c.Name)
	return c
}

// counted returns how many of the targets of the file path are counted
// (not -100).
func counted(t *testing.T, path string) float64 {
	n := 0.0
	for _, v := range readNpy[int64](t, path) {
		if v != -100 {
			n++
		}
	}
	return n
}

// requirePlainGrads requires the files dh and dw to hold PyTorch's
// gradients of the mean loss of the golden case "plain" (of den counted
// rows), within 1e-5 of their largest entry.
func requirePlainGrads(t *testing.T, dh, dw string, den float64, dev string) {
	t.Helper()
	for _, g := range []struct{ got, want string }{{dh, "plain_dh.npy"}, {dw, "plain_dw.npy"}} {
		got, want := readNpy[float32](t, g.got), readNpy[float64](t, golden(g.want))
		require.Len(t, got, len(want))
		scale := 0.0
		for _, w := range want {
			scale = max(scale, math.Abs(w/den))
		}
		for k := range want {
			require.InDelta(t, want[k]/den, got[k], 1e-5*scale, "%s on %s: [%d]", g.got, dev, k)
		}
	}
}

// linearDevices returns the devices the fused linear is tested on: the
// CPU, and OpenCL (through CLBlast) where it is.
func linearDevices() []string {
	devs := []string{"cpu"}
	if d, err := device.Open("opencl"); err == nil {
		if d.Caps().Linear {
			devs = append(devs, "opencl")
		}
		d.Close()
	}
	return devs
}

// TestEvalHiddenMatchesPyTorch: xent eval --hidden on the golden case
// "plain" (13 × 33 hidden states, 257 classes, a bias) gives PyTorch's mean
// loss, and --grad-hidden/--grad-weight its gradients of the mean, with W
// from a .npy and from a tensor of a .safetensors file.
func TestEvalHiddenMatchesPyTorch(t *testing.T) {
	dir := t.TempDir()
	c := plainCase(t)
	st := filepath.Join(dir, "model.safetensors")
	writeSafetensors(t, st, map[string][]float32{"lm_head.weight": readNpy[float32](t, golden("plain_w.npy")), "wte.weight": make([]float32, 6)},
		map[string][]uint64{"lm_head.weight": {uint64(c.V), uint64(c.D)}, "wte.weight": {2, 3}})
	den := counted(t, golden("plain_targets.npy"))
	devs := linearDevices()
	// A sharded Hugging Face checkpoint: the output layer in the second
	// shard, found through the index by default.
	ckpt := filepath.Join(dir, "ckpt")
	require.NoError(t, os.Mkdir(ckpt, 0o755))
	shard := filepath.Join(ckpt, "model-00002-of-00002.safetensors")
	writeSafetensors(t, filepath.Join(ckpt, "model-00001-of-00002.safetensors"), map[string][]float32{"model.norm.weight": make([]float32, c.D)},
		map[string][]uint64{"model.norm.weight": {1, uint64(c.D)}})
	writeSafetensors(t, shard, map[string][]float32{"lm_head.weight": readNpy[float32](t, golden("plain_w.npy"))},
		map[string][]uint64{"lm_head.weight": {uint64(c.V), uint64(c.D)}})
	require.NoError(t, os.WriteFile(filepath.Join(ckpt, "model.safetensors.index.json"),
		[]byte(`{"weight_map": {"model.norm.weight": "model-00001-of-00002.safetensors", "lm_head.weight": "model-00002-of-00002.safetensors"}}`), 0o644))
	for _, weight := range []string{golden("plain_w.npy"), st + ":lm_head.weight", st, ckpt, filepath.Join(ckpt, "model.safetensors.index.json")} {
		for _, dev := range devs {
			dh, dw := filepath.Join(dir, "dh.npy"), filepath.Join(dir, "dw.npy")
			code, out, errOut := runCmd("eval", "--hidden", golden("plain_h.npy"), "--weight", weight, "--bias", golden("plain_b.npy"),
				"--targets", golden("plain_targets.npy"), "--grad-hidden", dh, "--grad-weight", dw, "--device", dev, "--budget", "4096", "--json")
			require.Equal(t, 0, code, errOut)
			var res struct{ Loss float64 }
			require.NoError(t, json.Unmarshal([]byte(out), &res))
			require.InDelta(t, c.Mean, res.Loss, 1e-5*c.Mean)
			requirePlainGrads(t, dh, dw, den, dev)
			require.Contains(t, out, `"device":"`+dev)
		}
	}
	before, err := os.ReadFile(shard)
	require.NoError(t, err)
	code, _, errOut := runCmd("eval", "--hidden", golden("plain_h.npy"), "--weight", ckpt, "--targets", golden("plain_targets.npy"), "--grad-weight", shard)
	require.Equal(t, 1, code, "an output over the shard the classifier is read from")
	require.Contains(t, errOut, "--grad-weight "+shard+": the same file as --weight "+shard)
	after, err := os.ReadFile(shard)
	require.NoError(t, err)
	require.Equal(t, before, after)
}

// TestEvalHiddenHostile: a bad weight file or a mismatch gets one line
// naming the file and the problem, and no gradient file is written.
func TestEvalHiddenHostile(t *testing.T) {
	dir := t.TempDir()
	w := readNpy[float32](t, golden("plain_w.npy"))
	good := filepath.Join(dir, "good.safetensors")
	writeSafetensors(t, good, map[string][]float32{"a": w, "b": w}, map[string][]uint64{"a": {257, 33}, "b": {257, 33}})
	data, err := os.ReadFile(good)
	require.NoError(t, err)
	mk := func(name string, b []byte) string { return writeFile(t, dir, name, b) }
	short := mk("short.safetensors", data[:len(data)-5])
	longHeader := append([]byte(nil), data...)
	binary.LittleEndian.PutUint64(longHeader, uint64(len(data))*2)
	past := mk("past.safetensors", longHeader)
	odd := mk("odd.safetensors", []byte(strings.Replace(string(data), `"F32"`, `"Q7"`, 1)))
	wrongD := filepath.Join(dir, "wrongd.safetensors")
	writeSafetensors(t, wrongD, map[string][]float32{"w": w[:257*32]}, map[string][]uint64{"w": {257, 32}})
	h, tg := golden("plain_h.npy"), golden("plain_targets.npy")
	cases := []struct{ weight, want string }{
		{short, "not a valid .safetensors file"},
		{past, "not a valid .safetensors file"},
		{odd, "not a valid .safetensors file"},
		{good, "holds 2 tensors, name one as"},
		{good + ":c", `no tensor "c" (it holds a, b)`},
		{wrongD, "32 features per class, the hidden states of"},
		{golden("plain_h.npy"), "33 features per class"}, // 13 classes: targets out of range
	}
	for _, c := range cases {
		dh := filepath.Join(dir, "dh.npy")
		code, out, errOut := runCmd("eval", "--hidden", h, "--weight", c.weight, "--targets", tg, "--grad-hidden", dh, "--device", "cpu")
		if c.weight == golden("plain_h.npy") {
			c.want = "out of bounds [0, 13)"
		}
		require.Equal(t, 1, code, "%s: %s", c.want, errOut)
		require.Empty(t, out)
		require.Equal(t, 1, strings.Count(errOut, "\n"), errOut)
		require.Contains(t, errOut, c.want)
		require.Contains(t, errOut, filepath.Base(strings.SplitN(c.weight, ":", 2)[0])[:4], "names the file: %s", errOut)
		_, err := os.Stat(dh)
		require.True(t, os.IsNotExist(err), "no gradient written")
	}
}

func TestDemoLinear(t *testing.T) {
	svg := filepath.Join(t.TempDir(), "loss.svg")
	code, out, errOut := runCmd("demo", "--linear", "--epochs", "12", "--plot", svg)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "epoch   0  loss 5.545 nats")
	require.Contains(t, out, "epoch  11  loss 3.6") // 3.698 with either BLAS
	b, err := os.ReadFile(svg)
	require.NoError(t, err)
	require.Contains(t, string(b), "<svg")

	// --dump: the trained model's evaluation data, which xent eval reads:
	// a loss below the last epoch's (taken before its update), top-1 as
	// the accuracy.
	dir := filepath.Join(t.TempDir(), "alice")
	code, out, errOut = runCmd("demo", "--linear", "--epochs", "12", "--dump", dir)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "wrote hidden.npy, weight.npy, bias.npy, targets.npy, teacher_ids.npy, teacher_logprobs.npy")
	teacher := []string{"--teacher-ids", filepath.Join(dir, "teacher_ids.npy"), "--teacher-logprobs", filepath.Join(dir, "teacher_logprobs.npy")}
	got := evalJSON(t, append([]string{"eval", "--hidden", filepath.Join(dir, "hidden.npy"), "--weight", filepath.Join(dir, "weight.npy"),
		"--bias", filepath.Join(dir, "bias.npy"), "--targets", filepath.Join(dir, "targets.npy"), "--topk", "1,5", "--device", "cpu", "--json"}, teacher...)...)
	require.Less(t, got["loss"].(float64), 3.7)
	require.Greater(t, got["loss"].(float64), 3.0)
	require.Equal(t, got["accuracy"], got["topk"].(map[string]any)["1"])
	require.EqualValues(t, len(bigram.Alice)-1, got["tokens"])
	// The teacher's KL through the fused linear is the KL of the logits
	// h·Wᵀ + b written out (computed here in float64).
	var h, w, bias []float32 // npyio reads a 2-D array flat
	corpustest.ReadNpy(t, filepath.Join(dir, "hidden.npy"), &h)
	corpustest.ReadNpy(t, filepath.Join(dir, "weight.npy"), &w)
	corpustest.ReadNpy(t, filepath.Join(dir, "bias.npy"), &bias)
	V, D := len(bias), len(w)/len(bias)
	z := make([][]float32, len(h)/D)
	for i := range z {
		z[i] = make([]float32, V)
		for c := range V {
			s := float64(bias[c])
			for d := range D {
				s += float64(h[i*D+d]) * float64(w[c*D+d])
			}
			z[i][c] = float32(s)
		}
	}
	logits := filepath.Join(t.TempDir(), "logits.npy")
	corpustest.SaveNpy(t, logits, z)
	viaLogits := evalJSON(t, append([]string{"eval", "--logits", logits, "--targets", filepath.Join(dir, "targets.npy"), "--device", "cpu", "--json"}, teacher...)...)
	require.Greater(t, got["kl"].(float64), 0.0)
	require.InEpsilon(t, viaLogits["kl"], got["kl"], 1e-5)
	require.InEpsilon(t, viaLogits["loss"], got["loss"], 1e-5)
	// An output over the text it reads is refused, nothing written.
	text := filepath.Join(dir, "targets.npy")
	before, err := os.ReadFile(text)
	require.NoError(t, err)
	code, _, errOut = runCmd("demo", "--linear", "--epochs", "1", "--text", text, "--dump", dir)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "--dump")
	after, err := os.ReadFile(text)
	require.NoError(t, err)
	require.Equal(t, before, after)
}

// TestEvalSafetensorsLogits: xent eval --logits takes a .safetensors
// tensor: F32 gives the fixture's PyTorch mean; BF16 and F16 give what
// F32 gives on their values (widened exactly), and the tensor is found by
// name, as the only one, or as "logits" among several.
func TestEvalSafetensorsLogits(t *testing.T) {
	dir := t.TempDir()
	x, err := npyfile.Read(fixture("logits_f32.npy"), func(f *npyfile.File) ([]float32, error) {
		rows, cols, err := f.Matrix()
		if err != nil {
			return nil, err
		}
		v := make([]float32, rows*cols)
		return v, f.Rows(v, 0, rows)
	})
	require.NoError(t, err)
	f, err := npyfile.Open(fixture("logits_f32.npy"))
	require.NoError(t, err)
	rows, cols, err := f.Matrix()
	f.Close()
	require.NoError(t, err)
	shape := []uint64{uint64(rows), uint64(cols)}
	var exp struct {
		Mean float64 `json:"mean"`
	}
	b, err := os.ReadFile(fixture("expected.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &exp))
	loss := func(spec string) float64 {
		code, out, errOut := runCmd("eval", "--logits", spec, "--targets", fixture("targets_i64.npy"), "--device", "cpu", "--json")
		require.Equal(t, 0, code, errOut)
		var got map[string]any
		require.NoError(t, json.Unmarshal([]byte(out), &got))
		return got["loss"].(float64)
	}
	f32 := filepath.Join(dir, "f32.safetensors")
	writeSafetensors(t, f32, map[string][]float32{"logits": x, "other": x[:cols]}, map[string][]uint64{"logits": shape, "other": {1, uint64(cols)}})
	require.InDelta(t, exp.Mean, loss(f32), 1e-5*exp.Mean, "F32, the default name among two")
	require.InDelta(t, exp.Mean, loss(f32+":logits"), 1e-5*exp.Mean)
	for _, c := range []struct {
		dtype safetensors.DType
		round func(float32) (uint16, float32) // bits, and the value they hold
	}{
		{safetensors.BF16, func(v float32) (uint16, float32) {
			u := math.Float32bits(v)
			u += 0x7fff + (u>>16)&1 // to nearest, ties to even (no NaN here)
			return uint16(u >> 16), math.Float32frombits(u &^ 0xffff)
		}},
		{safetensors.F16, func(v float32) (uint16, float32) {
			h := f16bits(v)
			return h, half.F16(h)
		}},
	} {
		raw := make([]byte, 2*len(x))
		rounded := make([]float32, len(x))
		for k, v := range x {
			var h uint16
			h, rounded[k] = c.round(v)
			binary.LittleEndian.PutUint16(raw[2*k:], h)
		}
		tv, err := safetensors.NewTensorView(c.dtype, shape, raw)
		require.NoError(t, err)
		sb, err := safetensors.Serialize(map[string]safetensors.TensorView{"z": tv}, nil)
		require.NoError(t, err)
		p := filepath.Join(dir, c.dtype.String()+".safetensors")
		require.NoError(t, os.WriteFile(p, sb, 0o644))
		ref := filepath.Join(dir, c.dtype.String()+"-as-f32.safetensors")
		writeSafetensors(t, ref, map[string][]float32{"z": rounded}, map[string][]uint64{"z": shape})
		require.Equal(t, loss(ref), loss(p), c.dtype.String())
		require.InDelta(t, exp.Mean, loss(p), 2e-2*exp.Mean, "%s: rounding moves the loss little", c.dtype)
	}
}

// f16bits rounds v (normal in float16's range here) to the nearest
// float16, through float64.
func f16bits(v float32) uint16 {
	if v == 0 {
		return 0
	}
	sign := uint16(0)
	a := float64(v)
	if a < 0 {
		sign, a = 0x8000, -a
	}
	e := math.Floor(math.Log2(a))
	m := math.RoundToEven((a/math.Pow(2, e) - 1) * 1024)
	if m == 1024 {
		m, e = 0, e+1
	}
	return sign | uint16(e+15)<<10 | uint16(m)
}

// TestEvalHiddenHalf: a bfloat16 classifier (a .safetensors BF16 tensor,
// computed in its type: widened a tile at a time) gives what its values
// widened to a float32 file give, loss and gradients, on every device
// with the fused linear. The gradients' entries (sums of 13 terms in
// float32) are each within the float64 reference's allowance, and within
// 1e-6 of each other relative to the entry plus the size of its terms:
// where the two W lie at other alignments, gonum's dot products sum in
// another order (an entry of -7.6e-4 with terms of size 4.7e-3 came out
// 1.5e-9 apart, where 1e-6 of the entry alone failed).
func TestEvalHiddenHalf(t *testing.T) {
	dir := t.TempDir()
	w := readNpy[float32](t, golden("plain_w.npy"))
	rounded := make([]float32, len(w))
	raw := make([]byte, 2*len(w))
	for k, v := range w {
		h := half.BF16Bits(v)
		rounded[k] = half.BF16(h)
		binary.LittleEndian.PutUint16(raw[2*k:], h)
	}
	shape := []uint64{257, 33}
	tv, err := safetensors.NewTensorView(safetensors.BF16, shape, raw)
	require.NoError(t, err)
	sb, err := safetensors.Serialize(map[string]safetensors.TensorView{"lm_head.weight": tv}, nil)
	require.NoError(t, err)
	bf := filepath.Join(dir, "bf16.safetensors")
	require.NoError(t, os.WriteFile(bf, sb, 0o644))
	f32 := filepath.Join(dir, "f32.safetensors")
	writeSafetensors(t, f32, map[string][]float32{"lm_head.weight": rounded}, map[string][]uint64{"lm_head.weight": shape})
	devs := []string{"cpu"}
	if d, err := device.Open("opencl"); err == nil {
		if d.Caps().Linear {
			devs = append(devs, "opencl")
		}
		d.Close()
	}
	for _, dev := range devs {
		run := func(weight string) (float64, []float32) {
			dw := filepath.Join(dir, "dw.npy")
			code, out, errOut := runCmd("eval", "--hidden", golden("plain_h.npy"), "--weight", weight, "--targets", golden("plain_targets.npy"),
				"--grad-weight", dw, "--device", dev, "--budget", "4096", "--json")
			require.Equal(t, 0, code, errOut)
			var res struct{ Loss float64 }
			require.NoError(t, json.Unmarshal([]byte(out), &res))
			return res.Loss, readNpy[float32](t, dw)
		}
		lb, gb := run(bf)
		lf, gf := run(f32)
		require.InDelta(t, lf, lb, 1e-6*lf, dev)
		require.Len(t, gb, len(gf))
		ref := halfRef(t, rounded)
		for k := range gf {
			require.True(t, spec.GradClose(gf[k], ref.DW[k], ref.DWMag[k], ref.WTol), "%s: dW[%d] = %v from float32, want %v (terms of size %.3g)", dev, k, gf[k], ref.DW[k], ref.DWMag[k])
			require.True(t, spec.GradClose(gb[k], ref.DW[k], ref.DWMag[k], ref.WTol), "%s: dW[%d] = %v from bfloat16, want %v (terms of size %.3g)", dev, k, gb[k], ref.DW[k], ref.DWMag[k])
			require.InDelta(t, gf[k], gb[k], 1e-6*(math.Abs(float64(gf[k]))+ref.DWMag[k]), "%s: dW[%d] (terms of size %.3g)", dev, k, ref.DWMag[k])
		}
	}
}

// halfRef returns the float64 reference's gradients of TestEvalHiddenHalf's
// mean loss (the golden case plain's H and targets, W as given), with
// the allowance 1e-6 of the sizes of their terms plus their rounding.
func halfRef(t *testing.T, w []float32) *spec.LinearGrads {
	h := readNpy[float32](t, golden("plain_h.npy"))
	tg := readNpy[int64](t, golden("plain_targets.npy"))
	const d = 33
	p := &spec.LinearProblem{N: len(tg), D: d, V: len(w) / d, SH: d, SW: d, H: h, W: w, Opts: spec.Opts{Ignore: -100}}
	counted := 0
	for _, v := range tg {
		p.Targets = append(p.Targets, int32(v))
		if v != -100 {
			counted++
		}
	}
	s := make([]float64, p.N)
	for i := range s {
		s[i] = 1 / float64(counted)
	}
	return p.Reference().Grads(make([]float32, len(w)), nil, s, 1e-6)
}
