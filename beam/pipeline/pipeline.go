// Package pipeline is xent's evaluation of a manifest as an Apache Beam
// pipeline: ReadFn, which reads the manifest on a worker and emits its
// lines → a reshuffle, which spreads them over the workers → EvalFn,
// which evaluates a line with the library on the worker's device (and
// stages its per-row losses, with Rows) → MergeFn, which merges the
// statistics exactly → WriteFn, which writes the report, the JSON of xent
// eval --json, whole or not at all (and each line's own report, with
// Out.Lines). BuildCompare is the same
// pipeline over the pairs of two models' lines, line by line (xent
// compare): EvalFn compares a pair, the accumulator carries model B's
// statistics and the difference's beside model A's, and the report is
// the JSON of xent compare --json.
//
// Beam's Go SDK serializes a DoFn's and an accumulator's exported fields
// only: an unexported one is silently zero on a worker (so the
// configuration is exported, and what a worker opens is made in Setup).
// Functions passed to ParDo must be named and registered (no closures),
// as must every DoFn and combiner: init registers them, and the tests run
// the pipeline through Beam's vet runner, which fails on anything not
// registered.
package pipeline

import (
	"context"
	"crypto/rand"
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

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/xentlab/xent/device"
	"github.com/xentlab/xent/internal/corpus"
	"github.com/xentlab/xent/internal/npyfile"
)

func init() {
	register.DoFn2x1[[]byte, func(string), error](&ReadFn{})
	register.Emitter1[string]()
	register.DoFn2x2[context.Context, string, Acc, error](&EvalFn{})
	register.Combiner2[Acc, Acc](&MergeFn{})
	register.DoFn1x1[Acc, error](&WriteFn{})
}

// Acc is the statistics of some lines: of an evaluation's, Pair.A (their
// corpus.Total, Pair's other fields empty); of a comparison's line pairs
// (EvalFn.Compare), their corpus.Pair; the devices that computed them,
// and each line's own report where asked for (EvalFn.Lines).
type Acc struct {
	Pair    corpus.Pair
	Devices []string
	Lines   []LineJSON
}

// LineJSON is manifest line N's report (corpus.LineReport) as JSON.
type LineJSON struct {
	N    int
	JSON string
}

// EvalFn evaluates a manifest line (corpus.Line.Encode) on the worker's
// device, stages its per-row losses where Rows says (none when Rows.Dir is
// ""), and with Lines returns its own report too. With Compare its
// elements are line pairs (EncodePair), which it compares.
type EvalFn struct {
	Config  string // corpus.Config as JSON (KeepRows with Rows)
	Device  string // device.Open's spec: "auto", the worker's best
	Rows    Rows
	Lines   bool
	Compare bool

	ev  *corpus.Evaluator
	dev device.Device
}

// Setup opens the device and makes the evaluator.
func (f *EvalFn) Setup() error {
	var cfg corpus.Config
	if err := json.Unmarshal([]byte(f.Config), &cfg); err != nil {
		return fmt.Errorf("xent: the pipeline's configuration: %w", err)
	}
	d, err := device.Open(f.Device)
	if err != nil {
		return err
	}
	f.dev, f.ev = d, corpus.New(cfg)
	return nil
}

// ProcessElement evaluates one line (compares one line pair).
func (f *EvalFn) ProcessElement(ctx context.Context, line string) (Acc, error) {
	if f.Compare {
		return f.compare(ctx, line)
	}
	l, err := corpus.DecodeLine(line)
	if err != nil {
		return Acc{}, err
	}
	r, err := f.ev.Eval(ctx, f.dev, l)
	if err != nil {
		return Acc{}, err
	}
	if f.Rows.Dir != "" {
		err := writeFile(f.Rows.staged(l.N), func(w io.Writer) error { return npyfile.WriteF32(w, r.Lead, r.Rows) })
		if err != nil {
			return Acc{}, fmt.Errorf("xent: line %d's rows: %w", l.N, err)
		}
	}
	in := f.dev.Info()
	a := Acc{Pair: corpus.Pair{A: corpus.TotalOf(r)}, Devices: []string{fmt.Sprintf("%s (%s, %s)", in.Spec, in.Name, in.Kernel)}}
	if f.Lines {
		b, err := json.Marshal(corpus.LineReportOf(l, r, a.Devices[0]))
		if err != nil {
			return Acc{}, err
		}
		a.Lines = []LineJSON{{l.N, string(b)}}
	}
	return a, nil
}

// EncodePair encodes the line pair a, b for EvalFn.Compare.
func EncodePair(a, b corpus.Line) string {
	p, _ := json.Marshal([2]string{a.Encode(), b.Encode()}) // strings: it cannot fail
	return string(p)
}

// compare compares a line pair (EncodePair).
func (f *EvalFn) compare(ctx context.Context, pair string) (Acc, error) {
	var enc [2]string
	if err := json.Unmarshal([]byte(pair), &enc); err != nil {
		return Acc{}, fmt.Errorf("xent: not an encoded line pair: %w", err)
	}
	a, err := corpus.DecodeLine(enc[0])
	if err != nil {
		return Acc{}, err
	}
	b, err := corpus.DecodeLine(enc[1])
	if err != nil {
		return Acc{}, err
	}
	q, err := f.ev.Compare(ctx, f.dev, a, b)
	if err != nil {
		return Acc{}, err
	}
	in := f.dev.Info()
	acc := Acc{Pair: q, Devices: []string{fmt.Sprintf("%s (%s, %s)", in.Spec, in.Name, in.Kernel)}}
	if f.Lines {
		r := corpus.PairLineReport{Line: a.N, FileA: a.RowsFile(), FileB: b.RowsFile(), PairReport: corpus.PairReportOf(q, acc.Devices[0])}
		j, err := json.Marshal(r)
		if err != nil {
			return Acc{}, err
		}
		acc.Lines = []LineJSON{{a.N, string(j)}}
	}
	return acc, nil
}

// Teardown releases the evaluator and the device.
func (f *EvalFn) Teardown() error {
	if f.ev != nil {
		f.ev.Close()
	}
	if f.dev != nil {
		return f.dev.Close()
	}
	return nil
}

// MergeFn merges statistics: sums and counts added (the counts exactly,
// the sums in Beam's order: within rounding of the single run's).
type MergeFn struct{}

// MergeAccumulators adds b to a.
func (MergeFn) MergeAccumulators(a, b Acc) (Acc, error) {
	if err := a.Pair.Merge(b.Pair); err != nil { // an evaluation's is a pair of no B
		return Acc{}, err
	}
	for _, d := range b.Devices {
		if !slices.Contains(a.Devices, d) {
			a.Devices = append(a.Devices, d)
		}
	}
	a.Lines = append(a.Lines, b.Lines...)
	return a, nil
}

// WriteFn writes the report of the merged statistics to Path, and with
// Lines each line's report to Lines (a JSON object a line, in the
// manifest's order), each into a temporary file in its directory, renamed
// over it when complete: the lines first, the report last. Files is the
// manifest's line count: a report of fewer lines is an error. With
// Compare the report is a comparison's (corpus.PairReport).
type WriteFn struct {
	Path    string
	Lines   string
	Files   int
	Compare bool
}

// ProcessElement writes the report of a.
func (f *WriteFn) ProcessElement(a Acc) error {
	if a.Pair.A.Files != f.Files || f.Compare && a.Pair.B.Files != f.Files {
		return fmt.Errorf("xent: %d of the manifest's %d lines evaluated (%d of model B's)", a.Pair.A.Files, f.Files, a.Pair.B.Files)
	}
	if f.Lines != "" {
		if len(a.Lines) != f.Files {
			return fmt.Errorf("xent: %d of the manifest's %d lines reported", len(a.Lines), f.Files)
		}
		slices.SortFunc(a.Lines, func(x, y LineJSON) int { return x.N - y.N })
		err := writeFile(f.Lines, func(w io.Writer) error {
			for _, l := range a.Lines {
				if _, err := io.WriteString(w, l.JSON+"\n"); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	slices.Sort(a.Devices)
	var r any = corpus.ReportOf(a.Pair.A, strings.Join(a.Devices, "; "))
	if f.Compare {
		r = corpus.PairReportOf(a.Pair, strings.Join(a.Devices, "; "))
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return writeFile(f.Path, func(w io.Writer) error {
		_, err := w.Write(append(b, '\n'))
		return err
	})
}

// writeFile writes path whole: what write writes into a temporary file
// in its directory, synced and renamed over it.
func writeFile(path string, write func(w io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".xent-*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // nothing once renamed
	if err := write(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Rows is where a pipeline writes its lines' per-row losses (xent eval
// --manifest --rows-out): line N's to Dir/line-N.npy (corpus.RowsName),
// in the rows' shape. A worker stages them beside it (Dir/.xent-beam-Run-
// line-N.npy, written whole; a bundle run again writes the same); Commit
// renames them into place once the pipeline has succeeded, Discard
// removes them when it has not: a failed run leaves no rows behind, as
// xent eval writes them only when every line succeeded.
type Rows struct {
	Dir   string // "": no rows
	Run   string // this run's token (NewRows)
	Width int    // the manifest's (corpus.Manifest.Width)
}

// NewRows returns the Rows of a run of m writing into dir, with a fresh
// token.
func NewRows(dir string, m corpus.Manifest) (Rows, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return Rows{}, err
	}
	return Rows{Dir: dir, Run: hex.EncodeToString(b), Width: m.Width()}, nil
}

// Path returns where line n's rows end up.
func (r Rows) Path(n int) string { return filepath.Join(r.Dir, corpus.RowsName(n, r.Width)) }

func (r Rows) staged(n int) string {
	return filepath.Join(r.Dir, ".xent-beam-"+r.Run+"-"+corpus.RowsName(n, r.Width))
}

// Commit renames every line's staged rows into place: the lines of m,
// which the pipeline has evaluated. A line without them is an error
// (naming it), and then nothing is renamed.
func (r Rows) Commit(m corpus.Manifest) error {
	for _, l := range m.Lines {
		if _, err := os.Stat(r.staged(l.N)); err != nil {
			return fmt.Errorf("line %d's rows were not written: %w", l.N, err)
		}
	}
	for _, l := range m.Lines {
		if err := os.Rename(r.staged(l.N), r.Path(l.N)); err != nil {
			return err
		}
	}
	return nil
}

// Discard removes every row file the run staged.
func (r Rows) Discard() error {
	ents, err := os.ReadDir(r.Dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".xent-beam-"+r.Run+"-") {
			continue
		}
		if err := os.Remove(filepath.Join(r.Dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Out is where a pipeline writes: its report, each line's own report
// ("": none), and each line's per-row losses (Rows.Dir "": none).
type Out struct {
	Report string
	Lines  string
	Rows   Rows
}

// Build adds to s the evaluation of the manifest's lines with cfg on the
// workers' device dev, its report written to out.Report, each line's to
// out.Lines, each line's per-row losses staged where out.Rows says
// (Rows.Commit puts them in place once the pipeline has run). m is read
// by ReadManifest from an absolute path, as its lines' files are: a
// worker reads it again (ReadFn), from a filesystem it shares with this
// process but not its working directory.
func Build(s beam.Scope, m corpus.Manifest, cfg corpus.Config, dev string, out Out) error {
	return build(s, m, corpus.Manifest{}, cfg, dev, out)
}

// BuildCompare adds to s the comparison of model A's manifest a and model
// B's b, line by line (they have as many lines: xent compare's; a line
// pair's teacher as corpus.PairTeachers gives it), with cfg on the
// workers' device dev, its report (xent compare --json's) written to
// out.Report and each line pair's to out.Lines; out.Rows must name no
// directory. a and b are read as Build's m is.
func BuildCompare(s beam.Scope, a, b corpus.Manifest, cfg corpus.Config, dev string, out Out) error {
	if b.Path == "" {
		return errors.New("a comparison needs model B's manifest")
	}
	if out.Rows.Dir != "" {
		return errors.New("a comparison writes no per-row losses")
	}
	return build(s, a, b, cfg, dev, out)
}

// build adds the pipeline of Build (BuildCompare, where b has a path):
// an impulse → ReadFn, which reads the manifests on a worker and emits
// the elements → a reshuffle → EvalFn → MergeFn → WriteFn. Without the
// reshuffle a runner fuses the evaluation into the read's one bundle,
// and one worker evaluates every line.
func build(s beam.Scope, a, b corpus.Manifest, cfg corpus.Config, dev string, out Out) error {
	read := &ReadFn{A: a.Path, WeightA: a.Weight, B: b.Path, WeightB: b.Weight}
	elems, err := read.elements(a, b)
	if err != nil {
		return err
	}
	read.Digest = digest(elems)
	f := &EvalFn{Device: dev, Rows: out.Rows, Lines: out.Lines != "", Compare: read.B != ""}
	cfg.KeepRows = out.Rows.Dir != ""
	c, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	f.Config = string(c)
	col := beam.ParDo(s, read, beam.Impulse(s))
	accs := beam.ParDo(s, f, beam.Reshuffle(s, col))
	total := beam.Combine(s, &MergeFn{}, accs)
	beam.ParDo0(s, &WriteFn{Path: out.Report, Lines: out.Lines, Files: len(elems), Compare: f.Compare}, total)
	return nil
}

// ReadFn reads a manifest on a worker (with B, model B's too, for a
// comparison) and emits the pipeline's elements: each line encoded
// (corpus.Line.Encode), or each line pair (EncodePair). The pipeline
// carries the manifests' paths, not their lines, which would make its
// graph grow with the manifest and go to every worker. Digest is the
// SHA-256 of the elements the pipeline was built with, after its lines
// were checked: a manifest changed since is an error, not another
// evaluation.
type ReadFn struct {
	A, WeightA string // the manifest (corpus.Manifest's Path and Weight)
	B, WeightB string // model B's, with a comparison; B "" otherwise
	Digest     string
}

// ProcessElement reads the manifests and emits their elements.
func (f *ReadFn) ProcessElement(_ []byte, emit func(string)) error {
	a, err := corpus.ReadManifest(f.A, f.WeightA)
	if err != nil {
		return err
	}
	var b corpus.Manifest
	if f.B != "" {
		if b, err = corpus.ReadManifest(f.B, f.WeightB); err != nil {
			return err
		}
	}
	elems, err := f.elements(a, b)
	if err != nil {
		return err
	}
	if digest(elems) != f.Digest {
		return fmt.Errorf("xent: %s changed since the pipeline was built: a worker reads other lines than those checked", strings.Join(slices.DeleteFunc([]string{f.A, f.B}, func(p string) bool { return p == "" }), " or "))
	}
	for _, e := range elems {
		emit(e)
	}
	return nil
}

// elements returns the elements of the manifest a (with f.B, of the line
// pairs of a and b): their paths and their lines' files absolute.
func (f *ReadFn) elements(a, b corpus.Manifest) ([]string, error) {
	for _, m := range []corpus.Manifest{a, b} {
		if m.Path == "" && m.Lines == nil {
			continue
		}
		if m.Path == "" {
			return nil, errors.New("xent: a manifest of no file: a worker reads it again (corpus.ReadManifest)")
		}
		if !filepath.IsAbs(m.Path) {
			return nil, fmt.Errorf("xent: the manifest %q: not an absolute path (a worker reads it again, from another working directory)", m.Path)
		}
		for _, l := range m.Lines {
			for _, p := range l.Files() {
				if !filepath.IsAbs(p) {
					return nil, fmt.Errorf("xent: %s:%d: %s is not an absolute path (a worker reads it from another working directory)", m.Path, l.N, p)
				}
			}
		}
	}
	if f.B == "" {
		elems := make([]string, len(a.Lines))
		for k, l := range a.Lines {
			elems[k] = l.Encode()
		}
		return elems, nil
	}
	if len(a.Lines) != len(b.Lines) {
		return nil, fmt.Errorf("model A's manifest has %d lines, model B's %d: a comparison pairs them line by line", len(a.Lines), len(b.Lines))
	}
	a.Lines, b.Lines = slices.Clone(a.Lines), slices.Clone(b.Lines)
	if err := corpus.PairTeachers(&a, &b); err != nil {
		return nil, err
	}
	elems := make([]string, len(a.Lines))
	for k := range a.Lines {
		elems[k] = EncodePair(a.Lines[k], b.Lines[k])
	}
	return elems, nil
}

// digest returns the SHA-256 of elems, each ended by a newline.
func digest(elems []string) string {
	h := sha256.New()
	for _, e := range elems {
		io.WriteString(h, e+"\n")
	}
	return hex.EncodeToString(h.Sum(nil))
}
