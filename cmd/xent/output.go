package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/xentlab/xent/internal/tensorfile"
)

// A file the command reads or writes, as the user named it: the flag and
// the path.
type named struct{ flag, path string }

// output is a file a command writes: checked, and its temporary file made
// in the target's directory, before any work (plan); written there and
// renamed over the target only when complete (write); removed on failure
// or interrupt (discard).
//
// The rules, one per way a careless path could destroy data:
//   - an output that is the same file as an input (os.SameFile: through
//     symlinks and hard links) or as another output is refused;
//   - an output that exists and is not a regular file (a device, FIFO,
//     directory or socket) is refused;
//   - a symlink is written through: its final target is replaced,
//     atomically, and the link stays (a dangling link's target is created);
//   - the target's directory must exist and be writable (the temporary
//     file is created there at once);
//   - "-" is refused: standard output carries the report.
//
// Each error names the flag and the user's path.
type output struct {
	named
	target string      // where it is written: path, or a symlink's final target
	mode   fs.FileMode // the replaced file's permissions, or 0o644
	tmp    string      // the temporary file, in target's directory ("" once renamed or removed)
	filled bool        // tmp holds the output (fill), not yet renamed (commit)
}

// temps holds every temporary output file not yet renamed or removed, so
// that an interrupt that does not wait for the work can remove them.
var temps struct {
	sync.Mutex
	files map[string]bool
}

func addTemp(name string) {
	temps.Lock()
	defer temps.Unlock()
	if temps.files == nil {
		temps.files = map[string]bool{}
	}
	temps.files[name] = true
}

func dropTemp(name string) {
	temps.Lock()
	defer temps.Unlock()
	delete(temps.files, name)
}

// removeTemps removes every temporary output file still there.
func removeTemps() {
	temps.Lock()
	defer temps.Unlock()
	for name := range temps.files {
		os.Remove(name)
		delete(temps.files, name)
	}
}

// plan checks the outputs asked for (a path of "" is not asked for)
// against each other and the inputs, and creates their temporary files.
// It returns them in the order given (nil for one not asked for); on an
// error nothing is left behind.
func plan(inputs []named, outs ...named) ([]*output, error) {
	res := make([]*output, len(outs))
	var made []*output
	fail := func(err error) ([]*output, error) {
		for _, o := range made {
			o.discard()
		}
		return nil, err
	}
	for i, n := range outs {
		if n.path == "" {
			continue
		}
		o, err := check(n, inputs)
		if err != nil {
			return fail(err)
		}
		for _, p := range made {
			if sameTarget(o.target, p.target) {
				return fail(fmt.Errorf("%s %s: the same file as %s %s", n.flag, n.path, p.flag, p.path))
			}
		}
		dir := filepath.Dir(o.target)
		f, err := os.CreateTemp(dir, ".xent-*.tmp")
		if err != nil {
			return fail(fmt.Errorf("%s %s: cannot write in %s: %w", n.flag, n.path, dir, unwrapPath(err)))
		}
		o.tmp = f.Name()
		addTemp(o.tmp)
		f.Close() // reopened by fill: a manifest's outputs hold no descriptors until then
		made = append(made, o)
		res[i] = o
	}
	return res, nil
}

// check applies the rules of output to one output path.
func check(n named, inputs []named) (*output, error) {
	if n.path == "-" {
		return nil, fmt.Errorf("%s -: standard output carries the report; name a file", n.flag)
	}
	// The kernel's own walk first: a link it follows that resolve cannot
	// (Linux's /dev/stdout, /proc/self/fd/1, reads "pipe:[N]") still names
	// what is there.
	if st, err := os.Stat(n.path); err == nil && !st.Mode().IsRegular() {
		return nil, notRegular(n, st.Mode())
	}
	target, err := resolve(n.path)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", n.flag, n.path, err)
	}
	o := &output{named: n, target: target, mode: 0o644}
	st, err := os.Stat(target)
	if err != nil {
		dir := filepath.Dir(target)
		ds, derr := os.Stat(dir)
		switch {
		case derr != nil:
			return nil, fmt.Errorf("%s %s: directory %s: %w", n.flag, n.path, dir, unwrapPath(derr))
		case !ds.IsDir():
			return nil, fmt.Errorf("%s %s: %s is not a directory", n.flag, n.path, dir)
		case errors.Is(err, fs.ErrNotExist):
			return o, nil
		}
		return nil, fmt.Errorf("%s %s: %w", n.flag, n.path, unwrapPath(err))
	}
	if !st.Mode().IsRegular() {
		return nil, notRegular(n, st.Mode())
	}
	o.mode = st.Mode().Perm()
	for _, in := range inputs {
		if in.path == "" {
			continue
		}
		if is, err := os.Stat(tensorfile.FilePath(in.path)); err == nil && os.SameFile(st, is) {
			return nil, fmt.Errorf("%s %s: the same file as %s %s; an output never replaces an input", n.flag, n.path, in.flag, in.path)
		}
	}
	return o, nil
}

// notRegular is check's error for an output that exists with mode m, not
// a regular file.
func notRegular(n named, m fs.FileMode) error {
	return fmt.Errorf("%s %s: exists and is %s, not a regular file; an output replaces only regular files", n.flag, n.path, kind(m))
}

// resolve follows path while it is a symlink and returns the final
// target, which need not exist (its directory is then checked by the
// caller).
func resolve(path string) (string, error) {
	p := path
	for range 40 { // Linux's limit of links in a path
		st, err := os.Lstat(p)
		if err != nil || st.Mode()&fs.ModeSymlink == 0 { // check says what is wrong with p
			return p, nil
		}
		link, err := os.Readlink(p)
		if err != nil {
			return "", unwrapPath(err)
		}
		if !filepath.IsAbs(link) {
			link = filepath.Join(filepath.Dir(p), link)
		}
		p = link
	}
	return "", errors.New("too many levels of symbolic links")
}

// sameTarget reports whether two resolved output paths are the same file,
// existing or not.
func sameTarget(a, b string) bool {
	sa, ea := os.Stat(a)
	sb, eb := os.Stat(b)
	if ea == nil && eb == nil {
		return os.SameFile(sa, sb)
	}
	aa, _ := filepath.Abs(a)
	ab, _ := filepath.Abs(b)
	return aa == ab
}

// kind names a file mode's type.
func kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "not a regular file"
}

// unwrapPath returns the cause of a *fs.PathError (whose own message
// names a temporary or resolved path rather than the user's).
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}

// write writes the output with f (fill) and renames it over the target
// (commit). On an error the temporary file is removed and the target left
// as it was. o may be nil (not asked for).
func (o *output) write(f func(w io.Writer) error) error {
	if err := o.fill(f); err != nil {
		return err
	}
	return o.commit()
}

// fill writes the output with f through a buffer into its temporary file,
// synced and closed, for commit to rename. On an error the temporary file
// is removed. o may be nil (not asked for).
func (o *output) fill(f func(w io.Writer) error) (err error) {
	if o == nil {
		return nil
	}
	defer func() {
		if err != nil {
			o.discard()
			err = fmt.Errorf("%s %s: %w", o.flag, o.path, unwrapPath(err))
		}
	}()
	file, err := os.OpenFile(o.tmp, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := file.Close(); err == nil {
			err = cerr
		}
	}()
	w := bufio.NewWriterSize(file, 1<<20)
	if err := f(w); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if err := file.Chmod(o.mode); err != nil {
		return err
	}
	if err := file.Sync(); err != nil {
		return err
	}
	o.filled = true
	return nil
}

// commit renames a filled output over its target. o may be nil.
func (o *output) commit() error {
	if o == nil {
		return nil
	}
	if !o.filled {
		return fmt.Errorf("%s %s: not written", o.flag, o.path) // a bug of the command's, not the user's
	}
	if err := os.Rename(o.tmp, o.target); err != nil {
		o.discard()
		return fmt.Errorf("%s %s: %w", o.flag, o.path, unwrapPath(err))
	}
	dropTemp(o.tmp)
	o.tmp, o.filled = "", false
	return nil
}

// discard removes the temporary file of an output not written; it is
// safe on nil and after write.
func (o *output) discard() {
	if o == nil || o.tmp == "" {
		return
	}
	os.Remove(o.tmp)
	dropTemp(o.tmp)
	o.tmp, o.filled = "", false
}

// planPlot plans a plot output (plan), its format checked first
// (plotFormat): o is nil when path is "" (not asked for); the caller
// discards o when it is not written.
func planPlot(inputs []named, flag, path string) (o *output, format string, err error) {
	if format, err = plotFormat(flag, path); err != nil {
		return nil, "", err
	}
	outs, err := plan(inputs, named{flag, path})
	if err != nil {
		return nil, "", err
	}
	return outs[0], format, nil
}

// plotFormat returns the format of a plot output by its extension (""
// when path is ""), or an error naming flag, before any work is done.
func plotFormat(flag, path string) (string, error) {
	if path == "" {
		return "", nil
	}
	ext := strings.ToLower(strings.TrimPrefix(filepath.Ext(path), "."))
	switch ext {
	case "svg", "png", "pdf", "eps", "jpg", "jpeg", "tif", "tiff":
		return ext, nil
	}
	return "", fmt.Errorf("%s %s: unknown plot format %q (want .svg, .png, .pdf, .eps, .jpg or .tif)", flag, path, filepath.Ext(path))
}

// discardAll discards every output of a plan (deferred by each command:
// those written are left alone).
func discardAll(outs []*output) {
	for _, o := range outs {
		o.discard()
	}
}
