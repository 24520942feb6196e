package npyfile

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/nlpodyssey/gopickle/pickle"
	"github.com/nlpodyssey/gopickle/types"
)

// A tensor of a PyTorch file (torch.save's zip format, torch ≥ 1.6): the
// pickle data.pkl, parsed with github.com/nlpodyssey/gopickle, names each
// tensor's storage (the archive's entry data/KEY, stored), its type,
// offset, shape and strides. A C-contiguous tensor is then read as a .npy
// array at its place in the archive (mapped where its type allows).

// maxPickle bounds the data.pkl of a .pt (a dict of a few tensors takes
// a few hundred bytes; a model's state dict some hundreds of KB).
const maxPickle = 64 << 20

// ptStorage is a storage a pickle names: its element type and entry.
type ptStorage struct {
	dtype string // a .npy dtype ("<f4"), or "<bf2" for bfloat16
	key   string
	numel int
}

// ptTensor is a tensor a pickle rebuilds.
type ptTensor struct {
	s            *ptStorage
	offset       int
	size, stride []int
}

// ptStorages are the storage types torch.save names, as .npy dtypes.
var ptStorages = map[string]string{
	"FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "BFloat16Storage": "<bf2",
	"LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "|i1",
	"ByteStorage": "|u1", "BoolStorage": "|b1",
}

// rebuildTensor is torch._utils._rebuild_tensor_v2 (storage, offset,
// size, stride, requires_grad, hooks[, metadata]).
type rebuildTensor struct{}

func (rebuildTensor) Call(args ...any) (any, error) {
	if len(args) < 4 {
		return nil, errors.New("_rebuild_tensor_v2: too few arguments")
	}
	s, ok := args[0].(*ptStorage)
	off, ok2 := args[1].(int)
	size, err := ints(args[2])
	stride, err2 := ints(args[3])
	if !ok || !ok2 || err != nil || err2 != nil || len(size) != len(stride) || off < 0 {
		return nil, errors.New("_rebuild_tensor_v2: unexpected arguments")
	}
	return &ptTensor{s: s, offset: off, size: size, stride: stride}, nil
}

// rebuildParameter is torch._utils._rebuild_parameter (data,
// requires_grad, hooks): the tensor.
type rebuildParameter struct{}

func (rebuildParameter) Call(args ...any) (any, error) {
	if len(args) < 1 {
		return nil, errors.New("_rebuild_parameter: no tensor")
	}
	if t, ok := args[0].(*ptTensor); ok {
		return t, nil
	}
	return nil, errors.New("_rebuild_parameter: not a tensor")
}

// ptClass is a storage type, as the pickle's GLOBAL names it.
type ptClass struct{ dtype string }

func ints(v any) ([]int, error) {
	t, ok := v.(*types.Tuple)
	if !ok {
		return nil, errors.New("not a tuple")
	}
	out := make([]int, t.Len())
	for i := range out {
		n, ok := t.Get(i).(int)
		if !ok || n < 0 {
			return nil, errors.New("not a size")
		}
		out[i] = n
	}
	return out, nil
}

// findClass allows the classes torch.save uses for tensors and dicts of
// them, and nothing else.
func findClass(module, name string) (any, error) {
	switch {
	case module == "torch._utils" && name == "_rebuild_tensor_v2":
		return rebuildTensor{}, nil
	case module == "torch._utils" && name == "_rebuild_parameter":
		return rebuildParameter{}, nil
	case module == "collections" && name == "OrderedDict":
		return &types.OrderedDictClass{}, nil
	case module == "torch":
		if d, ok := ptStorages[name]; ok {
			return &ptClass{d}, nil
		}
	}
	return nil, fmt.Errorf("%s.%s: a .pt of tensors, or of a dict of them, is read; not this object", module, name)
}

// persistentLoad returns the storage of a persistent id ("storage",
// type, key, location, numel).
func persistentLoad(id any) (any, error) {
	t, ok := id.(*types.Tuple)
	if !ok || t.Len() < 5 {
		return nil, errors.New("a persistent id that is not a storage")
	}
	kind, _ := t.Get(0).(string)
	c, ok1 := t.Get(1).(*ptClass)
	key, ok2 := t.Get(2).(string)
	n, ok3 := t.Get(4).(int)
	if kind != "storage" || !ok1 || !ok2 || !ok3 || n < 0 {
		return nil, errors.New("a persistent id that is not a storage")
	}
	return &ptStorage{dtype: c.dtype, key: key, numel: n}, nil
}

// checkPickle walks the opcodes of pickle b and checks that each one's
// argument lies within b, before gopickle reads it: its reader allocates
// the length an opcode claims before it reads (a 20-byte file claiming
// 2^40 bytes would exhaust memory).
func checkPickle(b []byte) error {
	fixed := map[byte]int{'J': 4, 'K': 1, 'M': 2, 'G': 8, 'h': 1, 'j': 4, 'q': 1, 'r': 4, 0x80: 1, 0x82: 1, 0x83: 2, 0x84: 4}
	prefixed := map[byte]int{'U': 1, 'T': 4, 'C': 1, 'B': 4, 0x8e: 8, 0x8c: 1, 'X': 4, 0x8d: 8, 0x96: 8, 0x8a: 1, 0x8b: 4, 0x95: 8}
	lines := map[byte]int{'I': 1, 'L': 1, 'F': 1, 'S': 1, 'V': 1, 'g': 1, 'p': 1, 'P': 1, 'c': 2, 'i': 2}
	const bare = "(.012N\x88\x89]ael)t\x85\x86\x87}dsu\x8f\x90\x91Rbo\x81\x92\x93\x94Q\x97\x98"
	for i := 0; i < len(b); {
		op := b[i]
		i++
		switch {
		case strings.IndexByte(bare, op) >= 0:
			if op == '.' {
				return nil
			}
		case fixed[op] > 0:
			i += fixed[op]
		case prefixed[op] > 0:
			w := prefixed[op]
			if i+w > len(b) {
				return fmt.Errorf("an opcode 0x%02x past the end", op)
			}
			var n uint64
			switch w {
			case 1:
				n = uint64(b[i])
			case 4:
				n = uint64(binary.LittleEndian.Uint32(b[i:]))
			default:
				n = binary.LittleEndian.Uint64(b[i:])
			}
			if op == 0x95 { // FRAME: the frame's opcodes follow
				if n > uint64(len(b)-i-w) {
					return fmt.Errorf("a frame of %d bytes past the end", n)
				}
				i += w
				continue
			}
			if n > uint64(len(b)-i-w) {
				return fmt.Errorf("an argument of %d bytes past the end", n)
			}
			i += w + int(n)
		case lines[op] > 0:
			for range lines[op] {
				e := bytes.IndexByte(b[i:], '\n')
				if e < 0 {
					return fmt.Errorf("an opcode 0x%02x past the end", op)
				}
				i += e + 1
			}
		default:
			return fmt.Errorf("unknown opcode 0x%02x", op)
		}
		if i > len(b) {
			return fmt.Errorf("an opcode 0x%02x past the end", op)
		}
	}
	return errors.New("no STOP")
}

// openPt opens the tensor name (def, or the only one, when "") of the
// PyTorch file f at path.
func openPt(f *os.File, file, name, def string, size int64) (nf *File, err error) {
	zr, err := zip.NewReader(f, size)
	if err != nil {
		return nil, fmt.Errorf("%s: not a PyTorch zip file (torch.save of torch ≥ 1.6; an older one: load and save it again): %v", file, err)
	}
	tensors, entries, err := ptTensors(zr, file)
	if err != nil {
		return nil, err
	}
	want, err := choose(file, slices.Sorted(maps.Keys(tensors)), name, def, "tensor")
	if err != nil {
		return nil, err
	}
	t := tensors[want]
	spec := file // a tensor alone has no name
	if want != "" {
		spec = file + ":" + want
	}
	e, ok := entries["data/"+t.s.key]
	if !ok {
		return nil, fmt.Errorf("%s: its storage data/%s is missing", spec, t.s.key)
	}
	if e.Method != zip.Store {
		return nil, fmt.Errorf("%s: its storage is compressed (torch.save stores them)", spec)
	}
	item := int(t.s.dtype[len(t.s.dtype)-1] - '0')
	// C order: each dimension's stride is the product of those after it
	// (dimensions of 1 take any stride).
	n := 1 // the elements after dimension k: its stride in C order
	for k := len(t.size) - 1; k >= 0; k-- {
		if t.size[k] != 1 && t.stride[k] != n {
			return nil, fmt.Errorf("%s: not contiguous (size %v, stride %v): save x.contiguous()", spec, t.size, t.stride)
		}
		if t.size[k] > 0 && n > (1<<62)/t.size[k] {
			return nil, fmt.Errorf("%s: impossible size %v", spec, t.size)
		}
		n *= t.size[k]
	}
	off, err := e.DataOffset()
	if err != nil {
		return nil, fmt.Errorf("%s: malformed entry: %v", spec, err)
	}
	es := int64(e.UncompressedSize64)
	if t.s.numel > int(es)/item || n > 0 && t.offset > t.s.numel-n || e.CompressedSize64 != e.UncompressedSize64 || off < 0 || off > size || es > size-off {
		return nil, fmt.Errorf("%s: malformed: %d elements from %d of a storage of %d (%d bytes at %d of a file of %d)", spec, n, t.offset, t.s.numel, es, off, size)
	}
	nf = &File{f: f, Path: spec, Dtype: t.s.dtype, Shape: t.size, off: off + int64(t.offset)*int64(item)}
	nf.kind, nf.item, nf.order = t.s.dtype[1], item, binary.LittleEndian
	if t.s.dtype == "<bf2" {
		nf.kind, nf.bf16 = 'f', true
	}
	if b, ok := entries["byteorder"]; ok {
		rc, err := b.Open()
		if err != nil {
			return nil, fmt.Errorf("%s: %v", file, err)
		}
		order, err := io.ReadAll(io.LimitReader(rc, 16))
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %v", file, err)
		}
		if string(order) == "big" {
			nf.order = binary.BigEndian
		}
	}
	return nf, nil
}

// ptTensors reads the pickle of a PyTorch zip file: its tensors by name
// ("" for a tensor alone; a dict's string keys, its entries of other
// types left out), and its entries by name below the archive's folder.
func ptTensors(zr *zip.Reader, file string) (ts map[string]*ptTensor, entries map[string]*zip.File, err error) {
	entries = map[string]*zip.File{}
	var pkl *zip.File
	for _, e := range zr.File {
		_, rest, ok := strings.Cut(e.Name, "/")
		if !ok {
			continue
		}
		entries[rest] = e
		if rest == "data.pkl" {
			pkl = e
		}
	}
	if pkl == nil {
		return nil, nil, fmt.Errorf("%s: not a PyTorch file: no data.pkl", file)
	}
	if _, ok := entries["constants.pkl"]; ok {
		return nil, nil, fmt.Errorf("%s: a TorchScript module, not tensors", file)
	}
	if pkl.UncompressedSize64 > maxPickle {
		return nil, nil, fmt.Errorf("%s: a data.pkl of %d bytes: more than %d, not tensors", file, pkl.UncompressedSize64, maxPickle)
	}
	rc, err := pkl.Open()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %v", file, err)
	}
	b, err := io.ReadAll(io.LimitReader(rc, maxPickle))
	rc.Close()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: data.pkl: %v", file, err)
	}
	if err := checkPickle(b); err != nil {
		return nil, nil, fmt.Errorf("%s: a malformed data.pkl: %v", file, err)
	}
	defer func() { // gopickle may panic on a malformed pickle
		if r := recover(); r != nil {
			ts, entries, err = nil, nil, fmt.Errorf("%s: a malformed data.pkl", file)
		}
	}()
	u := pickle.NewUnpickler(bytes.NewReader(b))
	u.FindClass, u.PersistentLoad = findClass, persistentLoad
	v, err := u.Load()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: data.pkl: %v", file, err)
	}
	ts = map[string]*ptTensor{}
	add := func(k, v any) { // a dict's tensors under string keys; its other entries are not ours
		name, ok := k.(string)
		if t, ok2 := v.(*ptTensor); ok && ok2 {
			ts[name] = t
		}
	}
	switch v := v.(type) {
	case *ptTensor:
		ts[""] = v
	case *types.Dict:
		for _, e := range *v {
			add(e.Key, e.Value)
		}
	case *types.OrderedDict:
		for e := v.List.Front(); e != nil; e = e.Next() {
			kv := e.Value.(*types.OrderedDictEntry)
			add(kv.Key, kv.Value)
		}
	default:
		return nil, nil, fmt.Errorf("%s: holds a %T: a tensor or a dict of tensors is read", file, v)
	}
	return ts, entries, nil
}
