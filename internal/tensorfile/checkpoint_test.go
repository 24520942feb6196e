package tensorfile

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/internal/mapped"
)

// f32s and bf16s are tensors' bytes.
func f32s(v ...float32) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

func bf16s(v ...float32) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint16(b, uint16(math.Float32bits(x)>>16))
	}
	return b
}

// checkpoint writes a sharded checkpoint into a new directory: shard 1
// holds the embedding (bfloat16, 3 × 2) and a norm, shard 2 the output
// layer (float32, 3 × 2) unless tied; the index maps them.
func checkpoint(t *testing.T, tied bool) string {
	dir := t.TempDir()
	emb := bf16s(1, 2, 3, 4, 5, 6)
	norm := f32s(1, 1)
	h1 := `{"model.embed_tokens.weight":{"dtype":"BF16","shape":[3,2],"data_offsets":[0,12]},` +
		`"model.norm.weight":{"dtype":"F32","shape":[1,2],"data_offsets":[12,20]}}`
	require.NoError(t, os.WriteFile(filepath.Join(dir, "model-00001-of-00002.safetensors"), raw(h1, append(emb, norm...)), 0o644))
	index := `{"metadata": {"total_size": 44}, "weight_map": {"model.embed_tokens.weight": "model-00001-of-00002.safetensors", "model.norm.weight": "model-00001-of-00002.safetensors"`
	if !tied {
		h2 := `{"lm_head.weight":{"dtype":"F32","shape":[3,2],"data_offsets":[0,24]}}`
		require.NoError(t, os.WriteFile(filepath.Join(dir, "model-00002-of-00002.safetensors"), raw(h2, f32s(-1, -2, -3, -4, -5, -6)), 0o644))
		index += `, "lm_head.weight": "model-00002-of-00002.safetensors"`
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), []byte(index+"}}"), 0o644))
	return dir
}

// TestClassifierCheckpoint: a sharded checkpoint's classifier by its
// directory or its index, lm_head.weight by default, another tensor by
// name, the tied embedding (said in the note) when there is no output
// layer; a single-file checkpoint likewise; the files a command must not
// write over.
func TestClassifierCheckpoint(t *testing.T) {
	dir := checkpoint(t, false)
	index := filepath.Join(dir, "model.safetensors.index.json")
	for _, spec := range []string{dir, index, dir + ":lm_head.weight", index + ":lm_head.weight"} {
		w, done, note, err := Classifier(spec)
		require.NoError(t, err, spec)
		require.Empty(t, note)
		require.Equal(t, Tensor{Rows: 3, Cols: 2, Lead: []int{3}, F32: []float32{-1, -2, -3, -4, -5, -6}}, w, spec)
		done()
	}
	w, done, note, err := Classifier(dir + ":model.embed_tokens.weight")
	require.NoError(t, err)
	require.Empty(t, note)
	require.True(t, w.BF16)
	require.Equal(t, []uint16{0x3f80, 0x4000, 0x4040, 0x4080, 0x40a0, 0x40c0}, w.Half)
	done()
	require.Equal(t, []string{dir, index, filepath.Join(dir, "model-00002-of-00002.safetensors")}, Files(dir))
	require.Equal(t, []string{index, filepath.Join(dir, "model-00001-of-00002.safetensors")}, Files(index+":model.norm.weight"))

	tied := checkpoint(t, true)
	w, done, note, err = Classifier(tied)
	require.NoError(t, err)
	require.Contains(t, note, "tied input embedding model.embed_tokens.weight")
	require.Equal(t, 3, w.Rows)
	require.True(t, w.BF16)
	done()

	single := t.TempDir()
	h := `{"transformer.wte.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"transformer.ln_f.weight":{"dtype":"F32","shape":[1,2],"data_offsets":[16,24]}}`
	require.NoError(t, os.WriteFile(filepath.Join(single, "model.safetensors"), raw(h, f32s(1, 2, 3, 4, 9, 9)), 0o644))
	w, done, note, err = Classifier(single)
	require.NoError(t, err)
	require.Contains(t, note, "transformer.wte.weight")
	require.Equal(t, []float32{1, 2, 3, 4}, w.F32)
	done()
	require.Equal(t, []string{single, filepath.Join(single, "model.safetensors")}, Files(single))
}

// TestClassifierHostile: every broken checkpoint is an error naming the
// file and the problem.
func TestClassifierHostile(t *testing.T) {
	dir := checkpoint(t, false)
	index := filepath.Join(dir, "model.safetensors.index.json")
	for _, c := range []struct {
		name, index, want string
	}{
		{"not JSON", `{"weight_map": `, "not a safetensors index"},
		{"no weight_map", `{"metadata": {}}`, "no weight_map"},
		{"outside the directory", `{"weight_map": {"lm_head.weight": "../model-00002-of-00002.safetensors"}}`, "not a file of the index's directory"},
		{"absolute", `{"weight_map": {"lm_head.weight": "/etc/passwd"}}`, "not a file of the index's directory"},
		{"not safetensors", `{"weight_map": {"lm_head.weight": "model.txt"}}`, "not a .safetensors or .bin file"},
		{"no classifier", `{"weight_map": {"model.norm.weight": "model-00001-of-00002.safetensors"}}`, "no classifier"},
		{"missing shard", `{"weight_map": {"lm_head.weight": "model-00009-of-00009.safetensors"}}`, "model-00009-of-00009.safetensors"},
		{"wrong shard", `{"weight_map": {"lm_head.weight": "model-00001-of-00002.safetensors"}}`, `no tensor "lm_head.weight"`},
	} {
		require.NoError(t, os.WriteFile(index, []byte(c.index), 0o644))
		_, _, _, err := Classifier(dir)
		require.ErrorContains(t, err, c.want, c.name)
	}
	require.NoError(t, os.WriteFile(index, []byte(`{"weight_map": {"lm_head.weight": "model-00002-of-00002.safetensors"}}`), 0o644))
	_, _, _, err := Classifier(dir + ":model.missing.weight")
	require.ErrorContains(t, err, `no tensor "model.missing.weight" in its weight_map (lm_head.weight)`)
	_, _, _, err = Classifier(t.TempDir())
	require.ErrorContains(t, err, "not a Hugging Face checkpoint")
	short := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(short, "model.safetensors"), []byte{9, 0, 0}, 0o644))
	_, _, _, err = Classifier(short)
	require.ErrorContains(t, err, filepath.Join(short, "model.safetensors"))
}

// TestMapSafetensors: a mapped tensor has the values a read one has; the
// read one is the caller's own to write.
func TestMapSafetensors(t *testing.T) {
	h := `{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"b":{"dtype":"BF16","shape":[1,2],"data_offsets":[24,28]}}`
	p := write(t, "m.safetensors", raw(h, append(f32s(1, 2, 3, 4, 5, 6), bf16s(7, 8)...)))
	for _, name := range []string{"w", "b"} {
		m, done, err := MapSafetensors(p+":"+name, "")
		require.NoError(t, err)
		r, err := ReadSafetensors(p+":"+name, "")
		require.NoError(t, err)
		require.Equal(t, r, m)
		done()
		if r.F32 != nil {
			r.F32[0] = 9
		} else {
			r.Half[0] = 9
		}
	}
}

// TestMapSafetensorsMemory: a mapped 16 MiB tensor costs the heap nothing
// (its elements are the file's pages); a read one costs its size.
func TestMapSafetensorsMemory(t *testing.T) {
	if !mapped.Supported {
		t.Skipf("files are read, not mapped, on %s", runtime.GOOS)
	}
	const rows, cols = 1024, 4096
	h := `{"w":{"dtype":"F32","shape":[1024,4096],"data_offsets":[0,16777216]}}`
	for len(h)%8 != 0 { // the data aligned, as Hugging Face's writer pads the header
		h += " "
	}
	p := write(t, "big.safetensors", raw(h, make([]byte, 4*rows*cols)))
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	h0 := heap()
	grown := func() uint64 { h := heap(); return h - min(h, h0) }
	m, done, err := MapSafetensors(p, "")
	require.NoError(t, err)
	require.Less(t, grown(), uint64(1<<20), "mapped: no copy")
	require.Len(t, m.F32, rows*cols)
	done()
	r, err := ReadSafetensors(p, "")
	require.NoError(t, err)
	require.Greater(t, grown(), uint64(3*rows*cols), "read: a copy")
	runtime.KeepAlive(r)
}

// TestClassifierTorch: an older checkpoint, torch.save's: a directory of
// a pytorch_model.bin (testdata/npy/gen.py: lm_head.weight beside
// model.norm.weight), or of a pytorch_model.bin.index.json and its .bin
// shards, gives lm_head.weight, the values of linear_weight.npy; the
// files a command must not write over include the index and the shard.
func TestClassifierTorch(t *testing.T) {
	fix := func(name string) string { return filepath.Join("..", "..", "testdata", "npy", name) }
	want, _, _, err := Matrix(fix("linear_weight.npy"))
	require.NoError(t, err)
	bin, err := os.ReadFile(fix("hf_pytorch_model.bin"))
	require.NoError(t, err)
	single := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(single, "pytorch_model.bin"), bin, 0o644))
	sharded := t.TempDir()
	shard := filepath.Join(sharded, "pytorch_model-00002-of-00002.bin")
	require.NoError(t, os.WriteFile(shard, bin, 0o644))
	index := filepath.Join(sharded, "pytorch_model.bin.index.json")
	require.NoError(t, os.WriteFile(index, []byte(`{"weight_map": {"model.norm.weight": "pytorch_model-00001-of-00002.bin", "lm_head.weight": "pytorch_model-00002-of-00002.bin"}}`), 0o644))
	for _, spec := range []string{single, single + ":lm_head.weight", sharded, index, index + ":lm_head.weight"} {
		w, done, note, err := Classifier(spec)
		require.NoError(t, err, spec)
		require.Empty(t, note, spec)
		require.Equal(t, [2]int{29, 8}, [2]int{w.Rows, w.Cols}, spec)
		require.Equal(t, want, w.F32, spec)
		done()
	}
	require.Equal(t, []string{sharded, index, shard}, Files(sharded))
	require.Equal(t, []string{single, filepath.Join(single, "pytorch_model.bin")}, Files(single))
}
