package npyfile

import (
	"archive/zip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzOpen feeds arbitrary bytes to the .npy reader, as a .npy file, as
// a .npz archive and as a PyTorch file: it must return an error naming
// the file or a well-formed result, and never panic or read past the
// data.
func FuzzOpen(f *testing.F) {
	for _, name := range []string{"logits_f32.npy", "logits_f16.npy", "logits_f32_fortran.npy", "targets_i64.npy", "targets_2d.npy", "logits_i8.npy", "logits_3d.npy", "causal_ids.npy", "causal.npz", "causal_z.npz", "causal.pt", "causal_bf16.pt", "linear.pt"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "npy", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("\\x93NUMPY\\x01\\x00\\x10\\x00{'descr': '<f4'}"))
	f.Add([]byte{})
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		// A hang is a bug too: crash with the input after 10 s.
		watchdog := time.AfterFunc(10*time.Second, func() { panic(fmt.Sprintf("npyfile hangs on %q", b)) })
		defer watchdog.Stop()
		p := filepath.Join(dir, "x.npy")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		z := filepath.Join(dir, "x.npz")
		if err := os.WriteFile(z, b, 0o644); err != nil {
			t.Fatal(err)
		}
		pt := filepath.Join(dir, "x.pt")
		if err := os.WriteFile(pt, b, 0o644); err != nil {
			t.Fatal(err)
		}
		exercise(t, p, func() (*File, error) { return Open(p) })
		for _, a := range []string{z, pt} {
			exercise(t, a, func() (*File, error) { return OpenOr(a, "logits") })
			exercise(t, a, func() (*File, error) { return Open(a + ":labels") })
			if _, err := Arrays(a); err != nil && !strings.Contains(err.Error(), a) {
				t.Fatalf("error does not name the file: %v", err)
			}
		}
	})
}

// exercise opens a file with open and reads it every way: each error must
// name p.
func exercise(t *testing.T, p string, open func() (*File, error)) {
	nf, err := open()
	if err != nil {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("error does not name the file: %v", err)
		}
		return
	}
	defer nf.Close()
	nf.Matrix()
	if rows, cols, err := nf.Stack(); err == nil && rows*cols <= 1<<20 {
		dst := make([]float32, rows*cols)
		if err := nf.Rows(dst, 0, rows); err != nil && !strings.Contains(err.Error(), p) {
			t.Fatalf("error does not name the file: %v", err)
		}
	}
	if nf.size() <= 1<<20 {
		for _, err := range []error{second(nf.Targets()), second(nf.Vector()), second(nf.Flat()), fourth(nf.IntMatrix("ints")), fourth(nf.FloatMatrix("floats"))} {
			if err != nil && !strings.Contains(err.Error(), p) {
				t.Fatalf("error does not name the file: %v", err)
			}
		}
	}
}

func second[T any](_ T, err error) error { return err }

func fourth[T any](_ T, _, _ int, err error) error { return err }

// FuzzPickle feeds arbitrary bytes to the PyTorch reader as a file's
// data.pkl, in a zip of one of the test files' other entries (their
// storages, byte order, version), so that what the fuzzer changes reaches
// the pickle's checks and gopickle rather than the zip's checksums: an
// error naming the file or a well-formed result, never a panic, a hang or
// an allocation the file does not hold.
func FuzzPickle(f *testing.F) {
	var bases [][]*zip.File
	for _, name := range []string{"causal.pt", "causal_bf16.pt", "causal_view.pt", "linear.pt"} {
		zr, err := zip.OpenReader(filepath.Join("..", "..", "testdata", "npy", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Cleanup(func() { zr.Close() })
		for _, e := range zr.File {
			if strings.HasSuffix(e.Name, "/data.pkl") {
				rc, err := e.Open()
				if err != nil {
					f.Fatal(err)
				}
				b, err := io.ReadAll(rc)
				rc.Close()
				if err != nil {
					f.Fatal(err)
				}
				f.Add(uint8(len(bases)), b)
			}
		}
		bases = append(bases, zr.File)
	}
	f.Add(uint8(0), []byte{})
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, base uint8, pkl []byte) {
		watchdog := time.AfterFunc(10*time.Second, func() { panic(fmt.Sprintf("npyfile hangs on the pickle %q", pkl)) })
		defer watchdog.Stop()
		p := filepath.Join(dir, "x.pt")
		out, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		zw := zip.NewWriter(out)
		for _, e := range bases[int(base)%len(bases)] {
			if !strings.HasSuffix(e.Name, "/data.pkl") {
				if err := zw.Copy(e); err != nil {
					t.Fatal(err)
				}
				continue
			}
			w, err := zw.CreateHeader(&zip.FileHeader{Name: e.Name, Method: zip.Store})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(pkl); err != nil {
				t.Fatal(err)
			}
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		if err := out.Close(); err != nil {
			t.Fatal(err)
		}
		exercise(t, p, func() (*File, error) { return OpenOr(p, "logits") })
		exercise(t, p, func() (*File, error) { return Open(p + ":labels") })
		exercise(t, p, func() (*File, error) { return Open(p + ":weight") })
		if _, err := Arrays(p); err != nil && !strings.Contains(err.Error(), p) {
			t.Fatalf("error does not name the file: %v", err)
		}
	})
}
