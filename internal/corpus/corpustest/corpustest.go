// Package corpustest writes the manifest the corpus tests share (the
// library's, the CLI's and the Beam pipeline's): seven uneven files of
// every kind a line may name, with their float64 reference statistics.
package corpustest

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"codeberg.org/sbinet/npyio"

	"github.com/xentlab/xent/batch"
	"github.com/xentlab/xent/internal/gen"
	"github.com/xentlab/xent/internal/half"
	"github.com/xentlab/xent/internal/npyfile"
)

// Classes and Features are the manifest's vocabulary and hidden size.
const Classes, Features = 53, 16

// Want is a manifest's statistics in float64, the loss and argmax of each
// row computed from the values the files hold.
type Want struct {
	Lines      int
	Rows       int64
	Counted    int64
	Correct    int64
	Ambiguous  int64 // counted rows whose two largest logits are within 1e-4: float32 may pick either
	Sum, Denom float64
	// Cal is the calibration of the counted rows in float64, and Edge
	// how many of them lie within 1e-6 of a bin's edge, where float32
	// may round them into the bin beside (as the Ambiguous rows' argmax
	// may differ, each moving the ECE by at most 2/Counted).
	Cal  batch.Calibration
	Edge int64
	rows []row // every counted row, in manifest order
}

// row is one counted row's place in its file, loss and share of the
// mean's denominator.
type row struct {
	pos         int
	loss, denom float64
}

// ByPosition returns the mean loss at each position t = row mod n of
// each file, NaN where nothing counts.
func (w Want) ByPosition(n int) []float64 {
	sum, denom := make([]float64, n), make([]float64, n)
	for _, r := range w.rows {
		sum[r.pos%n] += r.loss
		denom[r.pos%n] += r.denom
	}
	for t := range sum {
		sum[t] /= denom[t]
		if denom[t] == 0 {
			sum[t] = math.NaN()
		}
	}
	return sum
}

// Mean is Sum / Denom.
func (w Want) Mean() float64 { return w.Sum / w.Denom }

// Check requires st to be w's: the counts exactly, the sums within rel.
func (w Want) Check(t testing.TB, st batch.Stats, rel float64) {
	t.Helper()
	if st.Rows != w.Rows || st.Counted != w.Counted || st.Correct < w.Correct-w.Ambiguous || st.Correct > w.Correct+w.Ambiguous {
		t.Fatalf("rows %d, counted %d, correct %d; want %d, %d, %d (± %d ambiguous)", st.Rows, st.Counted, st.Correct, w.Rows, w.Counted, w.Correct, w.Ambiguous)
	}
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"sum", st.Sum, w.Sum}, {"denom", st.Denom, w.Denom}} {
		if math.Abs(c.got-c.want) > rel*math.Abs(c.want) {
			t.Fatalf("%s %.17g, want %.17g (relative error %.2g > %.2g)", c.name, c.got, c.want, math.Abs(c.got-c.want)/math.Abs(c.want), rel)
		}
	}
}

// Write writes into dir the seven files of a manifest, M.jsonl, drawn
// from seed, and returns its path and statistics:
//
//  1. logits, float32 .npy (mapped), some rows ignored;
//  2. logits, float64 .npy (streamed);
//  3. logits, a bfloat16 .safetensors tensor among three, with token
//     weights, its targets the file's "labels" (the line names none);
//  4. hidden states, float32 .npy, with the classifier W.npy;
//  5. hidden states, a float32 .safetensors, with W.npy and a bias;
//  6. logits whose every row is ignored;
//  7. hidden states with token weights and the classifier as the flag
//     gives it (the line has no "weight": weight is that path).
//
// Paths in the manifest are relative to it, but weight's, which is
// absolute (the flag's path, from the working directory).
func Write(t testing.TB, dir string, seed uint64) (manifest, weight string, want Want) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 7))
	put := func(name string, v any) string {
		SaveNpy(t, filepath.Join(dir, name), v)
		return name
	}
	targets := func(n int, ignored float64) []int64 {
		tg := make([]int64, n)
		for i := range tg {
			tg[i] = int64(r.IntN(Classes))
			if r.Float64() < ignored {
				tg[i] = batch.DefaultIgnoreIndex
			}
		}
		return tg
	}
	tokenWeights := func(n int) []float32 {
		w := make([]float32, n)
		for i := range w {
			w[i] = float32(r.IntN(4)) / 2 // 0, 0.5, 1, 1.5: zero weights too
		}
		return w
	}
	matrix := func(n, c int, sd float64) [][]float64 {
		m := make([][]float64, n)
		for i := range m {
			m[i] = make([]float64, c)
			for j := range m[i] {
				m[i][j] = float64(float32(r.NormFloat64() * sd))
			}
		}
		return m
	}
	f32 := func(m [][]float64) [][]float32 {
		o := make([][]float32, len(m))
		for i := range m {
			o[i] = make([]float32, len(m[i]))
			for j, v := range m[i] {
				o[i][j] = float32(v)
			}
		}
		return o
	}
	// add adds row i of a file to want: z its logits, w its weight.
	add := func(i int, z []float64, t int64, w float64) {
		want.Rows++
		if t == batch.DefaultIgnoreIndex {
			return
		}
		mx, second, arg := math.Inf(-1), math.Inf(-1), 0
		for j, v := range z {
			if v > mx {
				mx, second, arg = v, mx, j
			} else if v > second {
				second = v
			}
		}
		if mx-second < 1e-4 {
			want.Ambiguous++
		}
		var s float64
		for _, v := range z {
			s += math.Exp(v - mx)
		}
		want.Counted++
		loss := mx + math.Log(s) - z[t]
		want.Sum += w * loss
		want.Denom += w
		want.rows = append(want.rows, row{i, w * loss, w})
		if arg == int(t) {
			want.Correct++
		}
		want.Cal.Add(1/s, arg == int(t))
		if x := batch.CalibrationBins / s; math.Abs(x-math.Round(x)) < 1e-6*batch.CalibrationBins {
			want.Edge++
		}
	}
	logitsLine := func(z [][]float64, tg []int64, tw []float32) {
		for i := range z {
			w := 1.0
			if tw != nil {
				w = float64(tw[i])
			}
			add(i, z[i], tg[i], w)
		}
	}
	W := matrix(Classes, Features, 0.5)
	weight = filepath.Join(dir, put("W.npy", f32(W)))
	linearLine := func(h [][]float64, bias []float64, tg []int64, tw []float32) {
		z := make([][]float64, len(h))
		for i := range h {
			z[i] = make([]float64, Classes)
			for c := range z[i] {
				for k := range h[i] {
					z[i][c] += h[i][k] * W[c][k]
				}
				if bias != nil {
					z[i][c] += bias[c]
				}
			}
		}
		logitsLine(z, tg, tw)
	}
	var lines []string
	line := func(v map[string]string) {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, string(b))
	}

	z1, t1 := matrix(37, Classes, 2), targets(37, 0.2)
	logitsLine(z1, t1, nil)
	line(map[string]string{"logits": put("l1.npy", f32(z1)), "targets": put("t1.npy", t1)})

	z2, t2 := matrix(23, Classes, 3), targets(23, 0)
	logitsLine(z2, t2, nil)
	line(map[string]string{"logits": put("l2.npy", z2), "targets": put("t2.npy", t2)})

	z3, t3, w3 := matrix(11, Classes, 1), targets(11, 0.1), tokenWeights(11)
	var bits []byte
	for i := range z3 {
		for j := range z3[i] {
			b := half.BF16Bits(float32(z3[i][j]))
			z3[i][j] = float64(half.BF16(b))
			bits = binary.LittleEndian.AppendUint16(bits, b)
		}
	}
	logitsLine(z3, t3, w3)
	// Its targets beside the logits, as "labels" (I64): the line names none.
	var labels []byte
	for _, t := range t3 {
		labels = binary.LittleEndian.AppendUint64(labels, uint64(t))
	}
	header := fmt.Sprintf(`{"other":{"dtype":"F32","shape":[1,1],"data_offsets":[0,4]},"labels":{"dtype":"I64","shape":[11],"data_offsets":[4,%d]},"logits":{"dtype":"BF16","shape":[11,%d],"data_offsets":[%d,%d]}}`,
		4+len(labels), Classes, 4+len(labels), 4+len(labels)+len(bits))
	for len(header)%8 != 0 {
		header += " "
	}
	st := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	st = append(append(append(append(st, header...), 0, 0, 0, 0), labels...), bits...)
	if err := os.WriteFile(filepath.Join(dir, "l3.safetensors"), st, 0o644); err != nil {
		t.Fatal(err)
	}
	line(map[string]string{"logits": "l3.safetensors:logits", "weights": put("w3.npy", w3)})

	h4, t4 := matrix(29, Features, 1), targets(29, 0.1)
	linearLine(h4, nil, t4, nil)
	line(map[string]string{"hidden": put("h4.npy", f32(h4)), "weight": "W.npy", "targets": put("t4.npy", t4)})

	h5, t5, b5 := matrix(7, Features, 1), targets(7, 0), matrix(1, Classes, 1)[0]
	linearLine(h5, b5, t5, nil)
	var raw []byte
	for i := range h5 {
		for _, v := range h5[i] {
			raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(float32(v)))
		}
	}
	header = fmt.Sprintf(`{"hidden":{"dtype":"F32","shape":[7,%d],"data_offsets":[0,%d]}}`, Features, len(raw))
	for len(header)%8 != 0 {
		header += " "
	}
	st = binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	if err := os.WriteFile(filepath.Join(dir, "h5.safetensors"), append(append(st, header...), raw...), 0o644); err != nil {
		t.Fatal(err)
	}
	line(map[string]string{"hidden": "h5.safetensors", "weight": "W.npy", "bias": put("b5.npy", f32([][]float64{b5})[0]), "targets": put("t5.npy", t5)})

	z6, t6 := matrix(5, Classes, 1), targets(5, 1)
	logitsLine(z6, t6, nil)
	line(map[string]string{"logits": put("l6.npy", f32(z6)), "targets": put("t6.npy", t6)})

	h7, t7, w7 := matrix(41, Features, 1), targets(41, 0.1), tokenWeights(41)
	linearLine(h7, nil, t7, w7)
	line(map[string]string{"hidden": put("h7.npy", f32(h7)), "targets": put("t7.npy", t7), "weights": put("w7.npy", w7)})

	manifest = filepath.Join(dir, "M.jsonl")
	// A blank line in the middle: skipped, not counted as an index.
	text := strings.Join(lines[:3], "\n") + "\n\n" + strings.Join(lines[3:], "\n") + "\n"
	if err := os.WriteFile(manifest, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	want.Lines = len(lines)
	return manifest, weight, want
}

// CachedDump returns the generated rows×cols dump of N(0, 3²) float32
// logits drawn from seed, written once into the user's cache directory
// and reused. It is written as NumPy's np.save writes it
// (npyfile.WriteF32), so that eval maps it as it maps a user's dump. The dump is written back to the
// disk before anything is timed (dirty pages would be flushed meanwhile).
func CachedDump(tb testing.TB, rows, cols int, seed int) string {
	tb.Helper()
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	dir = filepath.Join(dir, "xent")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	name := fmt.Sprintf("eval-bench-%dx%d.npy", rows, cols)
	if seed != 1 {
		name = fmt.Sprintf("eval-bench-%dx%d-%d.npy", rows, cols, seed)
	}
	path := filepath.Join(dir, name)
	if lf, err := npyfile.Open(path); err == nil {
		r, c, err := lf.Matrix()
		_, unmap, merr := lf.Map()
		if merr == nil {
			unmap()
		}
		lf.Close()
		if err == nil && merr == nil && r == rows && c == cols {
			return path
		}
	}
	tb.Logf("writing %s (once)", path)
	f, err := os.Create(path + ".tmp")
	if err != nil {
		tb.Fatal(err)
	}
	err = npyfile.WriteF32(f, []int{rows, cols}, gen.Logits(rows, cols, uint64(seed)))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(path+".tmp", path)
	}
	if err != nil {
		os.Remove(path + ".tmp")
		tb.Fatal(err)
	}
	return path
}

// SaveNpy writes v to path as a .npy file.
func SaveNpy(tb testing.TB, path string, v any) {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	if err := npyio.Write(f, v); err != nil {
		f.Close()
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
}

// ReadNpy reads the .npy file path into ptr (a pointer to a slice).
func ReadNpy(tb testing.TB, path string, ptr any) {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if err := npyio.Read(f, ptr); err != nil {
		tb.Fatal(err)
	}
}
