package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"

	"github.com/xentlab/xent/batch"
	"github.com/xentlab/xent/cpu"
	"github.com/xentlab/xent/device"
	"github.com/xentlab/xent/internal/gen"
	"github.com/xentlab/xent/internal/npyfile"
)

// BenchmarkEval is the main job end to end: xent eval of a float32 .npy
// dump in the page cache (5000×50257, 1 GB; XENT_EVAL_ROWS sets the rows,
// XENT_EVAL_DUMP names a dump of your own), beside a plain sequential read
// of the same file (4 MiB reads) and the kernel alone on the matrix in
// memory, all as MB/s of the file, so that eval's fraction of the slower
// of the two reads off one run:
//
//	go test -run XXX -bench Eval -benchtime 10x ./cmd/xent
func BenchmarkEval(b *testing.B) {
	logits, targets := dump(b)
	f, err := os.Open(logits)
	if err != nil {
		b.Fatal(err)
	}
	// In the page cache, as a dump that was just read is.
	size, err := io.Copy(io.Discard, f)
	f.Close()
	if err != nil {
		b.Fatal(err)
	}
	b.Run("read", func(b *testing.B) {
		b.SetBytes(size)
		buf := make([]byte, 4<<20)
		for b.Loop() {
			f, err := os.Open(logits)
			if err != nil {
				b.Fatal(err)
			}
			for {
				if _, err := f.Read(buf); err == io.EOF {
					break
				} else if err != nil {
					b.Fatal(err)
				}
			}
			f.Close()
		}
	})
	b.Run("eval", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			if err := eval(context.Background(), []string{"--logits", logits, "--targets", targets, "--device", "cpu", "--json"}, io.Discard, io.Discard); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("kernel", func(b *testing.B) {
		b.SetBytes(size)
		lf, err := npyfile.Open(logits)
		if err != nil {
			b.Fatal(err)
		}
		defer lf.Close()
		rows, cols, err := lf.Matrix()
		if err != nil {
			b.Fatal(err)
		}
		x := make([]float32, rows*cols)
		if err := lf.Rows(x, 0, rows); err != nil {
			b.Fatal(err)
		}
		tg, err := npyfile.Read(targets, (*npyfile.File).Targets)
		if err != nil {
			b.Fatal(err)
		}
		ce, err := batch.New(device.NewCPU(cpu.Default()))
		if err != nil {
			b.Fatal(err)
		}
		m := batch.NewMatrix(x, rows, cols)
		for b.Loop() {
			if _, err := ce.Forward(context.Background(), m, tg); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// dump returns the paths of the benchmark's logits (cachedDump, or the
// user's) and of targets drawn for its rows.
func dump(b *testing.B) (logits, targets string) {
	rows, cols := 5000, 50257
	if v, err := strconv.Atoi(os.Getenv("XENT_EVAL_ROWS")); err == nil && v > 0 {
		rows = v
	}
	dir := b.TempDir()
	logits = os.Getenv("XENT_EVAL_DUMP")
	if logits != "" {
		lf, err := npyfile.Open(logits)
		if err != nil {
			b.Fatal(err)
		}
		rows, cols, err = lf.Matrix()
		lf.Close()
		if err != nil {
			b.Fatal(err)
		}
	} else if logits = cachedDump(b, rows, cols); logits == "" {
		b.Fatal("no dump")
	}
	t64 := make([]int64, rows)
	for i, t := range gen.Targets(rows, cols, 2) {
		t64[i] = int64(t)
	}
	targets = filepath.Join(dir, "targets.npy")
	if err := saveNpy(targets, t64); err != nil {
		b.Fatal(err)
	}
	runtime.GC() // the generated matrix is garbage now
	return logits, targets
}

// cachedDump returns the generated rows×cols dump of N(0, 3²) logits,
// written once into the user's cache directory and reused. NumPy writes
// it where it can (a python3 with numpy: its files align the data to 64
// bytes, as a user's dump does); else npyio, whose header leaves the data
// unaligned (v0.14.0 pads the header to the wrong length), so that eval
// reads the file instead of mapping it, and says so here; npyio also
// writes a 2-D array an element at a time, about two minutes for 1 GB.
// The dump is written back to the disk before anything is timed (dirty
// pages would be flushed meanwhile).
func cachedDump(b *testing.B, rows, cols int) string {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	dir = filepath.Join(dir, "xent")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(dir, fmt.Sprintf("eval-bench-%dx%d.npy", rows, cols))
	defer func() {
		lf, err := npyfile.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		defer lf.Close()
		if _, unmap, err := lf.Map(); err != nil {
			b.Logf("%s: eval reads it, not mapped (%v)", path, err)
		} else {
			unmap()
		}
	}()
	if lf, err := npyfile.Open(path); err == nil {
		r, c, err := lf.Matrix()
		lf.Close()
		if err == nil && r == rows && c == cols {
			return path
		}
	}
	b.Logf("writing %s (once)", path)
	script := fmt.Sprintf("import numpy as np; np.save(%q, (np.random.default_rng(1).standard_normal((%d, %d), dtype=np.float32) * 3))", path, rows, cols)
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(py, "-c", script).Run() == nil {
			return path
		}
	}
	x := gen.Logits(rows, cols, 1)
	byRow := make([][]float32, rows) // npyio writes a 2-D float32 array from rows
	for i := range byRow {
		byRow[i] = x[i*cols : (i+1)*cols]
	}
	if err := saveNpy(path, byRow); err != nil {
		b.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	err = f.Sync()
	f.Close()
	if err != nil {
		b.Fatal(err)
	}
	return path
}

// saveNpy writes v to path as the commands write their outputs.
func saveNpy(path string, v any) error {
	outs, err := plan(nil, named{"(benchmark)", path})
	if err != nil {
		return err
	}
	return writeNpy(outs[0], v)
}
