package opencl

import (
	"fmt"
	"strings"
	"testing"

	"github.com/xentlab/xent/device/opencl/internal/cl"
	"github.com/xentlab/xent/kernels"
)

// TestBuildWarnings builds xent.cl and linear.cl with -Werror (OpenCL's
// own option: every warning an error) on each device, under the tunings
// the tree ships and those its options reach: the kinds' defaults, the
// table's entries, rows kept in registers or not (xent.cl's KEEP_ROWS),
// every Align, packed rows, and linear.cl's tiles. Compilers differ in
// what they accept: a warning on one (PoCL's and Oclgrind's clang warned
// "use of logical '&&' with constant operand" three times, NVIDIA's
// counted four) is where another's error hides. A build that fails
// carries its log, which names the line; one that builds (Oclgrind
// ignores -Werror) must log no warning.
func TestBuildWarnings(t *testing.T) {
	tunings := []Tuning{
		kindDefault("gpu"),
		kindDefault("cpu"),
		{WG: 256, Unroll: 4, UnrollHalf: 8, Align: 1, Rev: 1}, // the table's H200
		{WG: 32, Unroll: 1, UnrollHalf: 1, RC: 8, Align: 1},   // the table's PoCL
		{WG: 1, Unroll: 1, UnrollHalf: 2, RC: 8, Align: 3},    // RC with one work-item a row: nothing kept
		{WG: 128, Unroll: 8, UnrollHalf: 16, RC: 64, Align: 2, Rev: 1},
	}
	for _, h := range handles(t) {
		ctx, err := cl.CreateContext(h.dev)
		if err != nil {
			t.Fatal(err)
		}
		build := func(name, src, opts string) {
			t.Helper()
			prog, err := cl.BuildProgram(ctx, h.dev, src, opts+" -Werror")
			if err != nil {
				t.Errorf("%s: %s with %s: %v", h.name, name, opts, err)
				return
			}
			// Oclgrind takes -Werror and still builds: its log says.
			if log, err := prog.BuildLog(h.dev); err != nil {
				t.Error(err)
			} else if strings.Contains(log, "warning") {
				t.Errorf("%s: %s with %s: the compiler warns:\n%s", h.name, name, opts, log)
			}
			if err := prog.Release(); err != nil {
				t.Error(err)
			}
		}
		for _, tn := range tunings {
			build("xent.cl", kernels.Source, buildOptions(tn, h))
		}
		opts := buildOptions(kindDefault(h.kind), h)
		build("xent.cl", kernels.Source, opts+" -DPACK=4")
		for _, lin := range [][2]int{{16, 4}, {32, 4}, {64, 4}, {64, 8}} {
			build("linear.cl", kernels.LinearSource, fmt.Sprintf("%s -DLT=%d -DLK=%d -DLR=%d", opts, lin[0], linK, lin[1]))
		}
		if err := ctx.Release(); err != nil {
			t.Error(err)
		}
	}
}
