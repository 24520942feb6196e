package npyfile

import (
	"fmt"
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
