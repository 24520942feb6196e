package npyfile

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/internal/half"
)

// TestPt: the tensors of PyTorch's files (testdata/npy/gen.py: torch.save
// of a dict, of a view, of nn.Linear's state dict) read as their .npy
// twins: float32 mapped, bfloat16 mapped as such and widened exactly,
// int64 targets; a view that is not contiguous, and hostile files (a
// pickle that claims more bytes than it has, a class other than a
// tensor's, a compressed storage, a storage too short, no pickle,
// TorchScript, the legacy format) are errors naming the file.
func TestPt(t *testing.T) {
	fix := fixture
	rows := func(spec string) ([]float32, []int) { return readRows(t, spec) }
	x, shape := rows(fix("causal_logits.npy"))
	got, gshape := rows(fix("causal.pt") + ":logits")
	require.Equal(t, shape, gshape)
	require.Equal(t, x, got)
	ids, err := Read(fix("causal_ids.npy"), (*File).Targets)
	require.NoError(t, err)
	for _, pt := range []string{"causal.pt", "causal_bf16.pt"} {
		tg, err := Read(fix(pt)+":labels", (*File).Targets)
		require.NoError(t, err)
		require.Equal(t, ids, tg, pt)
		names, err := Arrays(fix(pt))
		require.NoError(t, err)
		require.Equal(t, []string{"labels", "logits"}, names)
	}
	b16, _ := rows(fix("causal_bf16.pt") + ":logits")
	for k, v := range x {
		require.Equal(t, half.BF16(half.BF16Bits(v)), b16[k], "element %d: bfloat16 widened exactly", k)
	}

	requireMapped(t, fix("causal.pt"), x, "torch.save aligns its storages: float32 mapped")
	f, err := Open(fix("causal_bf16.pt") + ":logits")
	require.NoError(t, err)
	require.Equal(t, "bfloat16", f.TypeName())
	_, _, err = f.MapF16()
	require.Error(t, err, "bfloat16 is not float16")
	if runtime.GOOS != "windows" && runtime.GOOS != "plan9" {
		bits, unmap, err := f.MapBF16()
		require.NoError(t, err)
		for k, v := range bits {
			require.Equal(t, b16[k], half.BF16(v))
		}
		require.NoError(t, unmap())
	}
	require.NoError(t, f.Close())

	w, wshape := rows(fix("linear_weight.npy"))
	got, gshape = rows(fix("linear.pt") + ":weight")
	require.Equal(t, wshape, gshape)
	require.Equal(t, w, got)
	bias, err := Read(fix("linear.pt")+":bias", (*File).Vector)
	require.NoError(t, err)
	require.Len(t, bias, 29)
	// Hugging Face's pytorch_model.bin is a state dict torch.save wrote.
	b, err := os.ReadFile(fix("linear.pt"))
	require.NoError(t, err)
	hf := filepath.Join(t.TempDir(), "pytorch_model.bin")
	require.NoError(t, os.WriteFile(hf, b, 0o644))
	got, _ = rows(hf + ":weight")
	require.Equal(t, w, got)

	// Hostile files, made from causal.pt's entries.
	src, err := zip.OpenReader(fix("causal.pt"))
	require.NoError(t, err)
	defer src.Close()
	entry := map[string][]byte{}
	for _, e := range src.File {
		rc, err := e.Open()
		require.NoError(t, err)
		b, err := io.ReadAll(rc)
		require.NoError(t, err)
		rc.Close()
		entry[filepath.Base(e.Name)] = b
	}
	dir := t.TempDir()
	write := func(name string, method uint16, kv ...any) string {
		var b bytes.Buffer
		zw := zip.NewWriter(&b)
		for k := 0; k < len(kv); k += 2 {
			e, err := zw.CreateHeader(&zip.FileHeader{Name: "x/" + kv[k].(string), Method: method})
			require.NoError(t, err)
			_, err = e.Write(kv[k+1].([]byte))
			require.NoError(t, err)
		}
		require.NoError(t, zw.Close())
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, b.Bytes(), 0o644))
		return p
	}
	pkl := entry["data.pkl"]
	huge := binary.LittleEndian.AppendUint64([]byte("\x80\x02\x8d"), 1<<40)
	frame := binary.LittleEndian.AppendUint64([]byte("\x80\x04\x95"), 1<<40)
	legacy := filepath.Join(dir, "legacy.pt")
	require.NoError(t, os.WriteFile(legacy, []byte("\x80\x02\x8a\x0alp\xfc\x9cF\xf9 j\xa8P\x19.\x80\x02M\xe9\x03."), 0o644))
	for _, c := range []struct{ spec, want string }{
		{fix("causal_view.pt"), "causal_view.pt: not contiguous (size [3 5 29], stride [174 29 1]): save x.contiguous()"},
		{fix("linear.pt"), "linear.pt: holds 2 tensors (bias, weight): name one"},
		{fix("causal.pt") + ":ids", `causal.pt: no tensor "ids" (it holds labels, logits)`},
		{write("huge.pt", zip.Store, "data.pkl", huge), "huge.pt: a malformed data.pkl: an argument of 1099511627776 bytes past the end"},
		{write("frame.pt", zip.Store, "data.pkl", frame), "frame.pt: a malformed data.pkl: a frame of 1099511627776 bytes past the end"},
		{write("os.pt", zip.Store, "data.pkl", []byte("\x80\x02cos\nsystem\n.")), "os.pt: data.pkl: os.system: a .pt of tensors, or of a dict of them, is read; not this object"},
		{write("list.pt", zip.Store, "data.pkl", []byte("\x80\x02].")), "list.pt: holds a *types.List: a tensor or a dict of tensors is read"},
		{write("ints.pt", zip.Store, "data.pkl", []byte("\x80\x02}(X\x05\x00\x00\x00epochK\x03u.")), "ints.pt: holds no tensor"},
		{write("deflated.pt", zip.Deflate, "data.pkl", pkl, "data/0", entry["0"], "data/1", entry["1"]) + ":logits", "deflated.pt:logits: its storage is compressed"},
		{write("short.pt", zip.Store, "data.pkl", pkl, "data/0", entry["0"][:100], "data/1", entry["1"]) + ":logits", "short.pt:logits: malformed"},
		{write("nostorage.pt", zip.Store, "data.pkl", pkl) + ":logits", "nostorage.pt:logits: its storage data/0 is missing"},
		{write("nopkl.pt", zip.Store, "data/0", entry["0"]), "nopkl.pt: not a PyTorch file: no data.pkl"},
		{write("script.pt", zip.Store, "data.pkl", pkl, "constants.pkl", pkl), "script.pt: a TorchScript module, not tensors"},
		{legacy, "legacy.pt: not a PyTorch zip file (torch.save of torch ≥ 1.6; an older one: load and save it again)"},
	} {
		_, err := Open(c.spec)
		require.ErrorContains(t, err, c.want, c.spec)
	}
}
