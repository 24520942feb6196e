package tensorfile

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nlpodyssey/safetensors"

	"github.com/xentlab/xent/internal/npyfile"
)

// The classifier's names in Hugging Face checkpoints: the output layer
// (lm_head.weight; GPT-NeoX's embed_out.weight), else the input embedding
// it is tied to (LLaMA, Mistral, Qwen, Gemma: model.embed_tokens.weight;
// GPT-2: transformer.wte.weight; GPT-NeoX: gpt_neox.embed_in.weight), by
// the suffix of the name (a multimodal model's prefix is its own).
var (
	headNames = []string{"lm_head.weight", "embed_out.weight"}
	tiedNames = []string{"embed_tokens.weight", "wte.weight", "embed_in.weight", "tok_embeddings.weight"}
)

// pickClassifier returns the classifier among names (of file): the first
// (sorted) whose name ends in a head's, else in a tied embedding's, with
// a note saying so; an error naming the file when there is neither.
func pickClassifier(file string, names []string) (name, note string, err error) {
	names = slices.Sorted(slices.Values(names))
	for gi, group := range [][]string{headNames, tiedNames} {
		for _, want := range group {
			for _, n := range names {
				if n == want || strings.HasSuffix(n, "."+want) {
					if gi == 1 {
						note = fmt.Sprintf("%s has no output layer (lm_head.weight): its tied input embedding %s is the classifier", file, n)
					}
					return n, note, nil
				}
			}
		}
	}
	return "", "", fmt.Errorf("%s: no classifier (lm_head.weight, or a tied embed_tokens.weight or wte.weight) among its %d tensors (%s); name one as %s:NAME", file, len(names), list(names), file)
}

// IsCheckpoint reports whether spec names a Hugging Face checkpoint: a
// directory, or a model.safetensors.index.json, with an optional ":name".
func IsCheckpoint(spec string) bool {
	_, _, kind := checkpointSpec(spec)
	return kind != ""
}

// checkpointSpec splits a checkpoint spec: kind "dir" or "index", or ""
// when spec is neither.
func checkpointSpec(spec string) (path, name, kind string) {
	const ext = ".index.json"
	if i := strings.LastIndex(spec, ext); i >= 0 {
		path, rest := spec[:i+len(ext)], spec[i+len(ext):]
		if rest == "" || rest[0] == ':' {
			return path, strings.TrimPrefix(rest, ":"), "index"
		}
	}
	if st, err := os.Stat(spec); err == nil && st.IsDir() {
		return spec, "", "dir"
	}
	if i := strings.LastIndex(spec, ":"); i > 0 {
		if st, err := os.Stat(spec[:i]); err == nil && st.IsDir() {
			return spec[:i], spec[i+1:], "dir"
		}
	}
	return "", "", ""
}

// Classifier reads the classifier W [classes × features] that spec names
// (as Read, mapped and read-only; done unmaps it): a tensor file as Read
// takes it, or a Hugging Face checkpoint: its directory, holding a
// model.safetensors.index.json (a sharded checkpoint) or a
// model.safetensors, else (an older one, torch.save's) a
// pytorch_model.bin.index.json or a pytorch_model.bin, or the index
// itself, each with an optional ":name".
// Without a name a checkpoint's classifier is lm_head.weight, else the
// input embedding it is tied to, which note then says (pickClassifier); a
// name is looked up in the index's weight_map, and read from the shard it
// names, a file in the index's directory.
func Classifier(spec string) (t Tensor, done func(), note string, err error) {
	done = func() {}
	path, name, kind := checkpointSpec(spec)
	switch kind {
	case "":
		t, done, err = Read(spec, "lm_head.weight")
		return t, done, "", err
	case "dir":
		index, single := checkpointFiles(path)
		switch {
		case index != "":
			path = index
		case single != "":
			if name == "" {
				if name, note, err = namesOf(single); err != nil {
					return t, done, "", err
				}
			}
			t, done, err = shardTensor(single, name)
			return t, done, note, err
		default:
			return t, done, "", fmt.Errorf("%s: not a Hugging Face checkpoint: it holds none of model.safetensors.index.json, model.safetensors, pytorch_model.bin.index.json, pytorch_model.bin", path)
		}
	}
	shard, name, note, err := lookup(path, name)
	if err != nil {
		return t, done, "", err
	}
	t, done, err = shardTensor(shard, name)
	return t, done, note, err
}

// checkpointFiles returns the index or the single file of the checkpoint
// in dir ("" for none), the .safetensors ones first, as Hugging Face
// loads them.
func checkpointFiles(dir string) (index, single string) {
	for _, base := range []string{"model.safetensors", "pytorch_model.bin"} {
		if p := filepath.Join(dir, base+".index.json"); exists(p) {
			return p, ""
		}
		if p := filepath.Join(dir, base); exists(p) {
			return "", p
		}
	}
	return "", ""
}

// shardTensor maps tensor name of a checkpoint's file: a .safetensors
// (MapSafetensors) or torch.save's .bin (Read).
func shardTensor(file, name string) (Tensor, func(), error) {
	if strings.HasSuffix(file, ".bin") {
		return Read(file+":"+name, "")
	}
	return MapSafetensors(file+":"+name, "")
}

// namesOf returns the classifier of a .safetensors file by its tensors'
// names (its header only is read), or of a torch.save .bin by its
// pickle's.
func namesOf(file string) (name, note string, err error) {
	if strings.HasSuffix(file, ".bin") {
		names, err := npyfile.Arrays(file)
		if err != nil {
			return "", "", err
		}
		return pickClassifier(file, names)
	}
	b, unmap, err := load(file)
	if err != nil {
		return "", "", err
	}
	defer unmap()
	st, err := safetensors.Deserialize(b)
	if err != nil {
		return "", "", fmt.Errorf("%s: not a valid .safetensors file: %v", file, err)
	}
	return pickClassifier(file, st.Names())
}

// lookup returns the shard of a sharded checkpoint's index that holds
// tensor name (the classifier when name is ""), a file in the index's
// directory.
func lookup(index, name string) (shard, tensor, note string, err error) {
	b, err := os.ReadFile(index)
	if err != nil {
		return "", "", "", err
	}
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		return "", "", "", fmt.Errorf("%s: not a safetensors index: %v", index, err)
	}
	if len(idx.WeightMap) == 0 {
		return "", "", "", fmt.Errorf("%s: not a safetensors index: no weight_map", index)
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range idx.WeightMap {
			if !yield(n) {
				return
			}
		}
	})
	if name == "" {
		if name, note, err = pickClassifier(index, names); err != nil {
			return "", "", "", err
		}
	}
	file, ok := idx.WeightMap[name]
	if !ok {
		return "", "", "", fmt.Errorf("%s: no tensor %q in its weight_map (%s)", index, name, list(names))
	}
	if file == "" || file != filepath.Base(file) || file == "." || file == ".." || filepath.IsAbs(file) {
		return "", "", "", fmt.Errorf("%s: weight_map[%q] = %q: not a file of the index's directory", index, name, file)
	}
	if !strings.HasSuffix(file, ".safetensors") && !strings.HasSuffix(file, ".bin") {
		return "", "", "", fmt.Errorf("%s: weight_map[%q] = %q: not a .safetensors or .bin file", index, name, file)
	}
	return filepath.Join(filepath.Dir(index), file), name, note, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, os.ErrNotExist)
}

// Files returns the files spec reads (see FilePath), and for a checkpoint
// the index and the shard its classifier is in, as far as they resolve
// (Classifier reports what does not): what a command must not write over.
func Files(spec string) []string {
	path, name, kind := checkpointSpec(spec)
	if kind == "" {
		return []string{FilePath(spec)}
	}
	out := []string{path}
	if kind == "dir" {
		index, single := checkpointFiles(path)
		if index == "" {
			return append(out, single)
		}
		path = index
		out = append(out, index)
	}
	if shard, _, _, err := lookup(path, name); err == nil {
		out = append(out, shard)
	}
	return out
}
