// Package corpus evaluates many dumps as one evaluation: a manifest of
// files (logits, or hidden states and a classifier), each line evaluated
// with the batch library and the statistics merged exactly; shards of a
// manifest for any scheduler, with partial statistics that merge into the
// single run's report; the mean loss's standard error over the sequences
// (Spread); and two models compared on the same rows, line by line, paired
// (Pair, Compare).
//
// The CLI (xent eval --manifest, xent compare, xent merge) and the Beam pipeline (the
// nested module beam/) both run it, so that a line is evaluated, and
// statistics merged, by one piece of code.
package corpus

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/xentlab/xent/internal/tensorfile"
)

// A Line is one file (or set of files) of a manifest: logits, or hidden
// states with a classifier, and their targets. Paths are as the manifest
// gives them, made relative to its directory by ReadManifest.
type Line struct {
	From   string `json:"-"`      // the manifest file ("": not from a manifest)
	N      int    `json:"-"`      // line number in it (1-based)
	Logits string `json:"logits"` // .npy or file.safetensors[:name]
	// Shards, instead of Logits: the logits split by vocabulary across
	// files (as Logits each), in class order, as a tensor-parallel model's
	// ranks hold them: the same rows in each, their classes adding up to
	// the vocabulary.
	Shards []string `json:"logits_shards,omitempty"`
	Hidden string   `json:"hidden"` // hidden states, with Weight: the fused linear
	Weight string   `json:"weight"` // classifier: .npy, .safetensors[:name] or a checkpoint (tensorfile.Classifier)
	// WeightShards, instead of Weight: the classifier split by vocabulary
	// across files (as Weight each), in class order, as a tensor-parallel
	// model's ranks hold its rows: the same features in each, their classes
	// adding up to the vocabulary.
	WeightShards []string `json:"weight_shards,omitempty"`
	Bias         string   `json:"bias"`    // classifier bias .npy (with Hidden), one per class of the whole vocabulary
	Targets      string   `json:"targets"` // .npy, one per row; "" for a .safetensors Logits that holds them (tensorfile.Targets)
	Weights      string   `json:"weights"` // token weights .npy, one per row (as --token-weights)
	// A teacher's top-k (as --teacher-ids, --teacher-logprobs): its
	// classes (int32/int64) and log-probabilities (float) .npy, rows × k.
	TeacherIDs      string `json:"teacher_ids"`
	TeacherLogProbs string `json:"teacher_logprobs"`
	// Text is the size of the text the line's counted targets encode
	// ("bytes", "words"; none: not given).
	Text
}

// RowsFile returns the file of l's rows: its logits (their first
// shard), else its hidden states.
func (l Line) RowsFile() string {
	switch {
	case l.Logits != "":
		return l.Logits
	case len(l.Shards) > 0:
		return l.Shards[0]
	}
	return l.Hidden
}

// Files returns the files l reads (a checkpoint's index and shard too):
// what no output may replace.
func (l Line) Files() []string {
	var fs []string
	for _, f := range append([]string{l.Logits, l.Hidden, l.Bias, l.Targets, l.Weights, l.TeacherIDs, l.TeacherLogProbs}, l.Shards...) {
		fs = append(fs, tensorfile.FilePath(f))
	}
	for _, w := range append([]string{l.Weight}, l.WeightShards...) {
		fs = append(fs, tensorfile.Files(w)...)
	}
	return slices.DeleteFunc(fs, func(f string) bool { return f == "" })
}

// Keys is the set of keys a manifest line may have.
const Keys = `"logits", "logits_shards", "hidden", "weight", "weight_shards", "bias", "targets", "weights", "teacher_ids", "teacher_logprobs", "bytes", "words"`

// A Manifest is the lines of a manifest file, the SHA-256 of its bytes
// (which names it in partial statistics) and the classifier it was read
// with for hidden-states lines without one (ReadManifest's
// defaultWeight).
type Manifest struct {
	Path   string
	Lines  []Line
	SHA256 string
	Weight string
}

// ReadManifest reads a manifest: JSON Lines, one object per line (blank
// lines are skipped). Relative paths are taken from the manifest's
// directory. A hidden-states line without "weight" takes defaultWeight
// (the --weight flag; "" for none). Errors name the file and line.
func ReadManifest(path, defaultWeight string) (Manifest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Manifest{}, err
	}
	sum := sha256.Sum256(b)
	m := Manifest{Path: path, SHA256: hex.EncodeToString(sum[:]), Weight: defaultWeight}
	dir := filepath.Dir(path)
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		l, err := parseLine(text, dir, defaultWeight)
		if err != nil {
			return Manifest{}, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		l.From, l.N = path, n
		m.Lines = append(m.Lines, l)
	}
	if err := sc.Err(); err != nil {
		return Manifest{}, fmt.Errorf("%s: %w", path, err)
	}
	if len(m.Lines) == 0 {
		return Manifest{}, fmt.Errorf("%s: no lines: a manifest has one JSON object per line, with the keys %s", path, Keys)
	}
	for _, l := range m.Lines[1:] {
		if (l.TeacherIDs == "") != (m.Lines[0].TeacherIDs == "") {
			return Manifest{}, fmt.Errorf("%s:%d: a teacher's top-k on some lines only (line %d has %s): a distillation names one on every line", path, l.N, m.Lines[0].N, map[bool]string{true: "none", false: "one"}[m.Lines[0].TeacherIDs == ""])
		}
		if k := l.Text.differs(m.Lines[0].Text); k != "" {
			return Manifest{}, fmt.Errorf(`%s:%d: "%s" on some lines only (line %d has %s): a measure of the whole text needs every line's`, path, l.N, k, m.Lines[0].N, map[bool]string{true: "them", false: "none"}[m.Lines[0].Text.has(k)])
		}
	}
	return m, nil
}

// Distill reports whether m's lines name a teacher's top-k (every line
// then does: ReadManifest checks it), for Config.Distill.
func (m Manifest) Distill() bool { return m.Lines[0].TeacherIDs != "" }

// PairTeachers gives the line pairs of a comparison (model A's manifest a
// and model B's b, of as many lines) one teacher each, for the KL's
// paired difference: a line without a teacher takes the other's; two
// lines naming different teachers' files are an error naming both.
func PairTeachers(a, b *Manifest) error {
	for k := range a.Lines {
		la, lb := &a.Lines[k], &b.Lines[k]
		switch {
		case la.TeacherIDs == "":
			la.TeacherIDs, la.TeacherLogProbs = lb.TeacherIDs, lb.TeacherLogProbs
		case lb.TeacherIDs == "":
			lb.TeacherIDs, lb.TeacherLogProbs = la.TeacherIDs, la.TeacherLogProbs
		case la.TeacherIDs != lb.TeacherIDs || la.TeacherLogProbs != lb.TeacherLogProbs:
			return at(*lb, fmt.Errorf("the teacher (%s, %s) is not model A's (%s, %s): a comparison's KL is to one teacher",
				lb.TeacherIDs, lb.TeacherLogProbs, la.TeacherIDs, la.TeacherLogProbs))
		}
	}
	return nil
}

// Width returns the digits of m's widest line number (RowsName's width).
func (m Manifest) Width() int { return len(fmt.Sprint(m.Lines[len(m.Lines)-1].N)) }

// RowsName returns the name of line n's per-row losses in the directory
// of xent eval --manifest --rows-out: line-N.npy, N zero-padded to width
// (Manifest.Width).
func RowsName(n, width int) string { return fmt.Sprintf("line-%0*d.npy", width, n) }

// parseLine decodes one line and checks that its keys make one job.
func parseLine(text []byte, dir, defaultWeight string) (Line, error) {
	var l Line
	dec := json.NewDecoder(bytes.NewReader(text))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return Line{}, fmt.Errorf("not a manifest line (a JSON object with the keys %s): %w", Keys, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Line{}, errors.New("more than one JSON value on the line")
	}
	switch {
	case l.Logits != "" && (l.Hidden != "" || l.Weight != "" || l.WeightShards != nil || l.Bias != ""):
		return Line{}, errors.New(`"logits" goes without "hidden", "weight", "weight_shards" and "bias"`)
	case l.Shards != nil && (l.Logits != "" || l.Hidden != "" || l.Weight != "" || l.WeightShards != nil || l.Bias != ""):
		return Line{}, errors.New(`"logits_shards" goes without "logits", "hidden", "weight", "weight_shards" and "bias"`)
	case l.WeightShards != nil && (l.Hidden == "" || l.Weight != ""):
		return Line{}, errors.New(`"weight_shards" goes with "hidden", without "weight"`)
	case l.WeightShards != nil && len(l.WeightShards) < 2:
		return Line{}, fmt.Errorf(`"weight_shards" names %d files: a classifier split across files names two or more (one is "weight")`, len(l.WeightShards))
	case slices.Contains(l.WeightShards, ""):
		return Line{}, errors.New(`"weight_shards" names an empty path`)
	case l.Shards != nil && len(l.Shards) < 2:
		return Line{}, fmt.Errorf(`"logits_shards" names %d files: a vocabulary split across files names two or more (one is "logits")`, len(l.Shards))
	case slices.Contains(l.Shards, ""):
		return Line{}, errors.New(`"logits_shards" names an empty path`)
	case l.Shards != nil && l.Targets == "":
		return Line{}, errors.New(`"targets" is required with "logits_shards"`)
	case l.Logits == "" && l.Hidden == "" && l.Shards == nil:
		return Line{}, errors.New(`"logits", "logits_shards" or "hidden" is required`)
	case l.Hidden != "" && l.Weight == "" && l.WeightShards == nil && defaultWeight == "":
		return Line{}, errors.New(`"hidden" needs "weight" or "weight_shards" (or --weight, for every line without either)`)
	case l.Targets == "" && !tensorfile.HoldsTargets(l.Logits):
		return Line{}, errors.New(`"targets" is required (a .safetensors, .npz or .pt of logits may hold them instead, as "targets" or "labels")`)
	case (l.TeacherIDs == "") != (l.TeacherLogProbs == ""):
		return Line{}, errors.New(`"teacher_ids" and "teacher_logprobs" go together`)
	}
	if err := l.Text.check(); err != nil {
		return Line{}, err
	}
	ps := []*string{&l.Logits, &l.Hidden, &l.Weight, &l.Bias, &l.Targets, &l.Weights, &l.TeacherIDs, &l.TeacherLogProbs}
	for k := range l.Shards {
		ps = append(ps, &l.Shards[k])
	}
	for k := range l.WeightShards {
		ps = append(ps, &l.WeightShards[k])
	}
	for _, p := range ps {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	if l.Hidden != "" && l.Weight == "" && l.WeightShards == nil {
		l.Weight = defaultWeight // the flag's path, from the working directory
	}
	return l, nil
}

// Shard returns the lines of shard i of n: those whose index (0-based,
// in manifest order) is i modulo n.
func (m Manifest) Shard(i, n int) []Line {
	var ls []Line
	for k, l := range m.Lines {
		if k%n == i {
			ls = append(ls, l)
		}
	}
	return ls
}

// ParseShard parses "i/n" (0 ≤ i < n).
func ParseShard(s string) (i, n int, err error) {
	if _, err := fmt.Sscanf(s, "%d/%d", &i, &n); err != nil || fmt.Sprintf("%d/%d", i, n) != s || n < 1 || i < 0 || i >= n {
		return 0, 0, fmt.Errorf("shard %q: want i/n with 0 ≤ i < n, such as 0/4", s)
	}
	return i, n, nil
}

// wire is a line with its place in the manifest, as Encode writes it.
type wire struct {
	From string `json:"from"`
	N    int    `json:"n"`
	Line Line   `json:"line"`
}

// Encode returns l, with its place in the manifest, as one JSON object:
// a line sent to a worker (DecodeLine reads it).
func (l Line) Encode() string {
	b, _ := json.Marshal(wire{l.From, l.N, l}) // strings and ints: it cannot fail
	return string(b)
}

// DecodeLine reads what Encode writes.
func DecodeLine(s string) (Line, error) {
	var w wire
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return Line{}, fmt.Errorf("not an encoded manifest line: %w", err)
	}
	w.Line.From, w.Line.N = w.From, w.N
	return w.Line, nil
}
