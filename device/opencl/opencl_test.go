package opencl_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/batch"
	"github.com/xentlab/xent/bench"
	"github.com/xentlab/xent/ce"
	"github.com/xentlab/xent/cpu"
	"github.com/xentlab/xent/device"
	. "github.com/xentlab/xent/device/opencl"
	"github.com/xentlab/xent/internal/gen"
	"github.com/xentlab/xent/internal/spec"
)

// numbersOnly skips t in the race detector's run (go test -race): t's
// subject is a kernel's numbers, which the plain run and the PoCL methods
// check in full, and no goroutine of t's own runs Go code beside the
// calls; the detector's subject is goroutines, which the concurrency,
// group, staging, cancellation and lock tests exercise under it.
func numbersOnly(t *testing.T) {
	t.Helper()
	if raceDetector {
		t.Skip("the race detector's run: a kernel's numbers, which the plain run checks; no goroutine of its own")
	}
}

// openTest opens the OpenCL device the tests run on: $XENT_TEST_OPENCL
// (a spec argument such as "0:0"), else the first device of any kind. With
// XENT_REQUIRE_OPENCL=1 a missing device fails the test; otherwise it skips
// with a one-line reason.
func openTest(t testing.TB) *Device {
	t.Helper()
	dev, err := Open(os.Getenv("XENT_TEST_OPENCL"))
	if err != nil {
		if os.Getenv("XENT_REQUIRE_OPENCL") == "1" {
			t.Fatalf("XENT_REQUIRE_OPENCL=1 but no OpenCL device: %v", err)
		}
		t.Skipf("no OpenCL device: %v", err)
	}
	d := dev.(*Device)
	t.Cleanup(func() { d.Close() })
	return d
}

// openTuned opens the test's OpenCL device (XENT_TEST_OPENCL) at tn,
// closed when the test ends. Without OpenCL it skips or fails as openTest
// does; an error where openTest opens a device fails the test.
func openTuned(t testing.TB, tn Tuning) *Device {
	t.Helper()
	d, err := OpenTuned(os.Getenv("XENT_TEST_OPENCL"), tn)
	if err != nil {
		openTest(t)
		require.NoError(t, err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestSpecOpenCL(t *testing.T) {
	d := openTest(t)
	t.Logf("device %s: %s, %s", d.Info().Spec, d.Info().Name, d.Info().Platform)
	spec.Run(t, d, 1e-5)
}

// TestGoldenOpenCL: PyTorch's values, the distillation's too (under
// Oclgrind, its backward kernel's fix).
func TestGoldenOpenCL(t *testing.T) {
	spec.RunGolden(t, openTest(t), 1e-5)
	spec.RunDistillGolden(t, openTest(t), 1e-5)
}

// TestChunked forces many small chunk buffers (the double-buffered path)
// and strided gradients, against the CPU device.
func TestChunked(t *testing.T) {
	d := openTest(t)
	d.ChunkBytes = 3 * 1000 * 4 // three rows of 1000 floats per chunk
	seed := spec.Seed(t)
	spec.RunCase(t, d, spec.Case{Name: "chunked", Rows: 41, Cols: 997, Stride: 1000, Opts: spec.Opts{Ignore: -100, Smoothing: 0.1, ZLoss: 1e-3}, Fill: spec.Normal(3, 5, -100)}, seed, 1e-5)
	spec.RunCase(t, d, spec.Case{Name: "chunked-one-row", Rows: 7, Cols: 2999, Opts: spec.Opts{Ignore: -100}, Fill: spec.Normal(3, 5, -100)}, seed, 1e-5)
	_, err := ChunkRowsOf(d, 1, 4000, 4000)
	require.ErrorIs(t, err, ErrTooLarge)
}

// TestOffsets64 checks the kernels' 64-bit offset arithmetic: the logits'
// row numbers start at 2^28 with a stride of 64, so (row_base+row)*stride
// passes 2^34 and only the subtraction of the base brings it back.
func TestOffsets64(t *testing.T) {
	d := openTest(t)
	SetRowBase(d, 1<<28)
	defer SetRowBase(d, 0)
	spec.RunCase(t, d, spec.Case{Name: "offsets64", Rows: 9, Cols: 61, Stride: 64, Opts: spec.Opts{Ignore: -100}, Fill: spec.Normal(3, 4, -100)}, spec.Seed(t), 1e-5)
}

// TestVersusCPU: OpenCL and CPU per-row losses within 2e-5·max(1, |cpu|),
// and every gradient entry within 2e-5 of the CPU's, relative to the size
// of its terms (spec.GradClose), on a large vocabulary with smoothing.
func TestVersusCPU(t *testing.T) {
	d := openTest(t)
	const rows, cols = 24, 50257
	seed := spec.Seed(t)
	x, tg := gen.Logits(rows, cols, seed), gen.Targets(rows, cols, seed)
	res := func(dev device.Device) ([]float32, []float32) {
		l, err := batch.New(dev, batch.Reduce(batch.None), batch.LabelSmoothing(0.05))
		require.NoError(t, err)
		g := make([]float32, len(x))
		r, err := l.ForwardBackward(context.Background(), batch.NewGrad(g, rows, cols), batch.NewMatrix(x, rows, cols), tg, batch.One)
		require.NoError(t, err)
		return r.Losses, g
	}
	ref := spec.Reference(x, rows, cols, cols, tg, spec.Opts{Ignore: spec.DefaultIgnore, Smoothing: 0.05})
	lc, gc := res(device.NewCPU(cpu.Portable()))
	lo, goo := res(d)
	for i := range lc {
		require.InDelta(t, lc[i], lo[i], 2e-5*math.Max(1, math.Abs(float64(lc[i]))), "row %d", i)
	}
	for k := range gc {
		i, j := k/cols, k%cols
		if !spec.GradClose(goo[k], float64(gc[k]), ref.Mag[i][j], 2e-5) {
			t.Fatalf("grad[%d][%d]: OpenCL %v, CPU %v (terms of size %.3g)", i, j, goo[k], gc[k], ref.Mag[i][j])
		}
	}
}

// TestLiveObjects: every OpenCL object is released after Close.
func TestLiveObjects(t *testing.T) {
	before := Live()
	d := openTest(t)
	l, err := batch.New(d)
	require.NoError(t, err)
	x := make([]float32, 5*33)
	_, err = l.ForwardBackward(context.Background(), batch.NewGrad(x, 5, 33), batch.NewMatrix(x, 5, 33), []int32{1, 2, 3, 4, 5}, batch.One)
	require.NoError(t, err)
	require.NoError(t, d.Close())
	require.NoError(t, d.Close(), "Close twice is fine")
	require.Equal(t, before, Live(), "live OpenCL objects after Close")
	_, err = l.Forward(context.Background(), batch.NewMatrix(x, 5, 33), []int32{1, 2, 3, 4, 5})
	require.ErrorIs(t, err, device.ErrClosed)
}

// TestOpenErrors: a well-formed spec naming no device is ErrNotAvailable
// (with or without an OpenCL runtime); a malformed one is ErrSpec and
// names itself, and is not mistaken for a missing device.
func TestOpenErrors(t *testing.T) {
	_, err := device.Open("opencl:99:0")
	require.ErrorIs(t, err, device.ErrNotAvailable)
	require.NotErrorIs(t, err, device.ErrSpec)
	for spec, msg := range map[string]string{
		"opencl:x": `"opencl:x"`, "opencl:1": `"opencl:1"`, "opencl:0:y": `"opencl:0:y"`, "opencl:-1:0": `"opencl:-1:0"`,
		"openclx": `"openclx"`, "cpu:fast": `"fast"`, "auto:1": `"auto:1"`,
	} {
		_, err = device.Open(spec)
		require.ErrorIs(t, err, device.ErrSpec, spec)
		require.NotErrorIs(t, err, device.ErrNotAvailable, spec)
		require.Contains(t, err.Error(), msg, spec)
	}
}

func TestResidentOpenCL(t *testing.T) {
	d := openTest(t)
	spec.RunResident(t, d, 1e-5)
	cpuDev, _ := device.Open("cpu")
	dm, err := batch.Upload(context.Background(), cpuDev, batch.NewMatrix(make([]float32, 6), 2, 3))
	require.NoError(t, err)
	l, err := batch.New(d)
	require.NoError(t, err)
	_, err = l.Forward(context.Background(), dm.Matrix(), []int32{0, 1})
	require.ErrorIs(t, err, batch.ErrOption, "a matrix of another device")
}

// TestConcurrentOpenCL: 16 goroutines on two Devices sharing one program,
// bit-identical to serial runs; afterwards no host memory is left pinned.
// (Event handles are reused once released: a transfer's pin was once
// removed after its event's release, and a new transfer that got the same
// handle in between overwrote it, leaving memory pinned for good — the
// garbage collector then panicked.)
func TestConcurrentOpenCL(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(5)) // a lost pin panics in a collection
	before := Pinned()
	d1, d2 := openTest(t), openTest(t)
	for range 5 {
		spec.RunConcurrent(t, d1, d2)
	}
	require.Equal(t, before, Pinned(), "host memory left pinned")
}

func TestNoGrowthOpenCL(t *testing.T) {
	d := openTest(t)
	before := Live() - Kept(d)
	spec.RunNoGrowth(t, d)
	require.Equal(t, before, Live()-Kept(d), "OpenCL objects leaked across calls (beyond the staging buffers the device keeps, at most 4)")
	require.LessOrEqual(t, Kept(d), int64(4))
}

// TestGroupOpenCL: "all"-style group of the OpenCL device and the CPU
// passes the shared table (rows split by measured speed).
func TestGroupOpenCL(t *testing.T) {
	g, err := device.NewGroup(device.SplitRows, openTest(t), device.NewCPU(cpu.Portable()))
	require.NoError(t, err)
	spec.Run(t, g, 1e-5)
}

// cancelAfter is a context whose Err is nil for its first n calls and err
// after them: a cancellation that arrives at a known point between chunks,
// however fast the device is.
type cancelAfter struct {
	context.Context
	n   atomic.Int32
	err error
}

func newCancelAfter(n int, err error) *cancelAfter {
	c := &cancelAfter{Context: context.Background(), err: err}
	c.n.Store(int32(n))
	return c
}

func (c *cancelAfter) Err() error {
	if c.n.Add(-1) < 0 {
		return c.err
	}
	return nil
}

// TestShardsOpenCL: vocabulary shards on the OpenCL device (its partial
// and backward kernels) give the unsplit loss and gradient.
func TestShardsOpenCL(t *testing.T) {
	numbersOnly(t)
	spec.RunShards(t, openTest(t), 1e-5)
}

// TestDistillOpenCL: top-k distillation (its backward kernel's fix)
// against the float64 reference, and of matrices the device holds (the
// teacher's classes' logits gathered by xent_gather) against host rows'.
func TestDistillOpenCL(t *testing.T) {
	spec.RunDistill(t, openTest(t), 1e-5)
	spec.RunDistillShards(t, openTest(t), 1e-5)
	t.Run("resident", func(t *testing.T) { spec.RunDistillResident(t, openTest(t)) })
}

// TestRanksResidentOpenCL: the rank pass of a matrix held by the OpenCL
// device (xent_rank) gives the CPU's ranks of the same rows: the same
// counts, the entropy sums within float32's rounding of them (the CPU's
// are float64 sums of float32 terms), a work-group a row or walking rows;
// host rows are ranked by the CPU. spec.RunResident checks it against the
// reference on the case table; .ci/oclgrind runs it.
func TestRanksResidentOpenCL(t *testing.T) {
	ctx := context.Background()
	d := openTest(t)
	const rows, cols = 5, 300
	x, tg := gen.Logits(rows, cols, 3), gen.Targets(rows, cols, 4)
	m := batch.NewMatrix(x, rows, cols)
	l, err := batch.New(d, batch.Shard(0, cols))
	require.NoError(t, err)
	part := batch.NewPartials(rows)
	require.NoError(t, l.Partials(ctx, part, m, tg))
	got := make([]batch.Rank, rows)
	require.NoError(t, l.Ranks(ctx, got, m, tg, part))
	cpuDev, err := device.Open("cpu")
	require.NoError(t, err)
	lc, err := batch.New(cpuDev, batch.Shard(0, cols))
	require.NoError(t, err)
	want := make([]batch.Rank, rows)
	require.NoError(t, lc.Ranks(ctx, want, m, tg, part))
	require.Equal(t, want, got, "host rows: the CPU's")
	dm, err := batch.Upload(ctx, d, m)
	require.NoError(t, err)
	defer dm.Release()
	for groups := range 3 { // a work-group a row (0), then every group walking rows
		SetMaxGroups(d, groups)
		clear(got)
		require.NoError(t, l.Ranks(ctx, got, dm.Matrix(), tg, part))
		for i := range rows {
			require.Equal(t, want[i].Greater, got[i].Greater, "row %d, %d groups", i, groups)
			require.InDelta(t, want[i].Ent, got[i].Ent, 1e-5*math.Abs(want[i].Ent), "row %d, %d groups", i, groups)
		}
	}
	require.NoError(t, dm.Release())
	require.ErrorIs(t, l.Ranks(ctx, got, dm.Matrix(), tg, part), device.ErrReleased)
}

// TestGroupColumnsOpenCL: the OpenCL device and the CPU splitting the
// vocabulary (partials merged across back ends) pass the shared table.
func TestGroupColumnsOpenCL(t *testing.T) {
	g, err := device.NewGroup(device.SplitColumns, openTest(t), device.NewCPU(cpu.Portable()))
	require.NoError(t, err)
	spec.Run(t, g, 1e-5)
}

// TestCancelOpenCL: a cancelled context stops a chunked evaluation between
// chunks and returns its error: before the first chunk nothing is written;
// after a few chunks the rows of those chunks hold gradients and the last
// chunk's rows are untouched. The device works on afterwards, with no
// object leaked.
func TestCancelOpenCL(t *testing.T) {
	d := openTest(t)
	const rows, cols = 256, 1024
	d.ChunkBytes = 16 * cols * 4 // 16 chunks of 16 rows
	defer func() { d.ChunkBytes = 0 }()
	l, err := batch.New(d)
	require.NoError(t, err)
	before := Live() - Kept(d)
	x0 := gen.Logits(rows, cols, spec.Seed(t))
	tg := make([]int32, rows)
	x := append([]float32(nil), x0...)
	m := batch.NewMatrix(x, rows, cols)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = l.ForwardBackward(ctx, batch.InPlace(m), m, tg, batch.One)
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, x0, x, "cancelled before the first chunk: nothing written")
	for _, cerr := range []error{context.Canceled, context.DeadlineExceeded} {
		copy(x, x0)
		_, err = l.ForwardBackward(newCancelAfter(4, cerr), batch.InPlace(m), m, tg, batch.One)
		require.ErrorIs(t, err, cerr)
		require.NotEqual(t, x0[:cols], x[:cols], "the first chunk ran before the cancellation")
		last := (rows - 16) * cols
		require.Equal(t, x0[last:], x[last:], "the last chunk did not run")
	}
	_, err = l.Forward(context.Background(), batch.NewMatrix(x[:cols*5], 5, cols), tg[:5])
	require.NoError(t, err, "the device still works after a cancelled call")
	require.Equal(t, before, Live()-Kept(d), "OpenCL objects leaked by cancelled calls")
}

func TestPast2p31OpenCL(t *testing.T) { spec.RunPast2p31(t, openTest(t)) }

// TestEveryWorkGroupSize runs every kernel (log-sum-exp, forward, fused
// out of place and in place, per-row upstream, chunked) on matrices with
// ignored rows — the first, the last, a run of them, all of them — and on
// the whole shared table, at every work-group size the device allows,
// each with another unroll.
// xent_ce once returned early for ignored rows, before the barriers,
// which PoCL's loopvec work-group method on Intel AVX-512 CPUs turned
// into a crash (see the opening comment of xent.cl). With -short it runs
// the smallest and the largest size only, on the reduced table
// (spec.ConformanceCases).
func TestEveryWorkGroupSize(t *testing.T) {
	d0 := openTest(t)
	maxWG, err := MaxWG(d0)
	require.NoError(t, err)
	if v, err := strconv.Atoi(os.Getenv("XENT_TEST_MAX_WG")); err == nil && v < maxWG {
		// PoCL's repl method replicates the kernel once per work-item:
		// it builds WG 32 in 34 s, 64 in 83 s, and more in minutes.
		t.Logf("XENT_TEST_MAX_WG=%d: sizes up to %d only (the device allows %d)", v, v, maxWG)
		maxWG = v
	}
	seed := spec.Seed(t)
	ignoring := func(rows ...int) func(*rand.Rand, []float32, []int32, int, int, int) {
		return func(rng *rand.Rand, x []float32, tg []int32, n, cols, stride int) {
			spec.Normal(3, 0, 0)(rng, x, tg, n, cols, stride)
			for _, i := range rows {
				tg[i] = spec.DefaultIgnore
			}
		}
	}
	everything := spec.Opts{Ignore: spec.DefaultIgnore, Smoothing: 0.05, ZLoss: 1e-3, Softcap: 20, Weights: gen.Logits(1, 1031, 5)}
	for i, w := range everything.Weights {
		everything.Weights[i] = float32(math.Abs(float64(w)))
	}
	cases := []spec.Case{
		{Name: "ignored", Rows: 13, Cols: 1031, Stride: 1037, Opts: spec.Opts{Ignore: spec.DefaultIgnore}, Fill: ignoring(0, 5, 6, 7, 12)},
		{Name: "ignored/options", Rows: 13, Cols: 1031, Opts: everything, Fill: ignoring(0, 1, 9, 12)},
		{Name: "all-ignored", Rows: 4, Cols: 6, Opts: spec.Opts{Ignore: spec.DefaultIgnore}, Fill: ignoring(0, 1, 2, 3)},
		{Name: "ignored/short-rows", Rows: 6, Cols: 3, Opts: spec.Opts{Ignore: spec.DefaultIgnore}, Fill: ignoring(0, 5)},
	}
	// Unroll goes round 1, 2, 4; 8, the largest, only at the largest size
	// (it takes PoCL 20 s to build). The registers kept a fused row (RC) go
	// round 8, 0 (none) and 1 (rows of up to 4·WG columns: the cases fall
	// either side).
	unrolls := []int{1, 2, 4}
	rcs := []int{8, 0, 1}
	for k, wg := 0, 1; wg <= maxWG; k, wg = k+1, wg*2 {
		unroll, rc := unrolls[k%len(unrolls)], rcs[k%len(rcs)]
		if wg == maxWG {
			unroll = 8
		}
		if testing.Short() && wg != 1 && wg != maxWG {
			continue // -short (a GPU's suite, the race detector's run): the ends (the default runs every other test)
		}
		// The gradient pass forwards or backwards, and the rows one
		// work-group each or taken 1, 2 or 3 apart (FOR_ROWS).
		// Aligned loads for no type, float32, the half types, all.
		rev, groups, align := k%2, []int{0, 1, 2, 3}[k%4], []int{3, 0, 1, 2}[(k/2)%4]
		t.Run(fmt.Sprintf("wg=%d/unroll=%d/rc=%d/rev=%d/groups=%d/align=%d", wg, unroll, rc, rev, groups, align), func(t *testing.T) {
			d := openTuned(t, Tuning{WG: wg, Unroll: unroll, UnrollHalf: 2 * unroll, RC: rc, Rev: rev, Align: align})
			SetMaxGroups(d, groups)
			// Built at the size asked for, or, where a kernel's own limit
			// (CL_KERNEL_WORK_GROUP_SIZE: its registers) is below it, at
			// the largest power of two that every kernel takes (NVIDIA's
			// H200 takes 256 at unroll 8 where the device allows 1024).
			if got := WG(d); got != wg {
				require.Less(t, got, wg, "built at %d, more than asked for", got)
				t.Logf("built at work-group size %d: the kernels' limit on this device is below %d", got, wg)
			}
			table := spec.Cases()
			if testing.Short() { // the reduced table: every kernel path, in seconds
				table = spec.ConformanceCases()
			}
			for _, c := range append(cases, table...) {
				t.Run(fmt.Sprintf("%s/%dx%d", c.Name, c.Rows, c.Cols), func(t *testing.T) { spec.RunCase(t, d, c, seed, 1e-5) })
			}
			d.ChunkBytes = 2 * 1037 * 4 // two rows a chunk: the double-buffered path
			defer func() { d.ChunkBytes = 0 }()
			t.Run("chunked", func(t *testing.T) { spec.RunCase(t, d, cases[0], seed, 1e-5) })
		})
	}
}

// TestStagedOpenCL runs the case table with host rows going through
// pinned staging buffers, as they do on a GPU (here forced on a device
// that shares the host's memory): whole, and in chunks of two rows (the
// staging buffers double-buffered), with gradients of every type.
func TestStagedOpenCL(t *testing.T) {
	d := openTest(t)
	d.Staging = true
	seed := spec.Seed(t)
	for _, typ := range d.Caps().Types {
		for _, c := range spec.Cases() {
			if c.Cols > 2048 && typ != ce.F32 || testing.Short() && c.Cols > 2048 {
				continue // the long rows once (none in a -short run)
			}
			t.Run(fmt.Sprintf("%v/%s/%dx%d", typ, c.Name, c.Rows, c.Cols), func(t *testing.T) {
				d.ChunkBytes = 0
				spec.RunCaseIn(t, d, c, typ, seed, 1e-5)
				d.ChunkBytes = int64(2 * typ.Size() * max(c.Cols, c.Stride))
				spec.RunCaseIn(t, d, c, typ, seed, 1e-5)
			})
		}
	}
	d.ChunkBytes = 0
}

// TestConformanceOpenCL runs every kernel of the program, in every element
// type, on the reduced table (spec.ConformanceCases): built with the row
// kept in registers (RC 1: rows of up to 4·WG columns) and without (RC
// 0), whole and in chunks of two rows, staged as on a GPU and not, by
// shards (the partial and backward kernels) and resident; and the copy
// probe (TestConformanceLinearOpenCL has the fused linear's); and rows
// split over work-groups (Tuning.Split) and packed two a work-group
// (Tuning.Pack). It is what CI runs under Oclgrind, which reports any
// out-of-bounds access, data race or barrier divergence and any misuse
// of the API.
//
// With -short (a GPU's suite within its lease, the race detector's run)
// it is left out: TestSpecOpenCL, TestShardsOpenCL, TestResidentOpenCL
// and TestStagedOpenCL run the same paths on the whole table.
func TestConformanceOpenCL(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the whole table's tests cover it (.ci/oclgrind runs it in full)")
	}
	cases := spec.ConformanceCases()
	// rc=1: rows of up to 64 columns kept, longer ones read again
	// backwards, the rows taken two apart by two work-groups, every type's
	// rows in aligned accesses; rc=0: every row read again forwards, a
	// work-group a row, element-aligned accesses.
	var sc []spec.Case // every type, every option, strides, ignored rows
	for _, c := range cases {
		switch c.Name {
		case "textbook", "strided/37x100+13", "all-ignored", "everything", "edges", "everything/temperature":
			sc = append(sc, c)
		}
	}
	t.Run("split", func(t *testing.T) { // rows over three work-groups each (Tuning.Split), at rc=1's tuning
		d := openTuned(t, Tuning{WG: 16, Unroll: 2, UnrollHalf: 3, RC: 1, Rev: 1, Align: 3})
		SetSplit(d, 3)
		spec.RunTable(t, d, sc, 1e-5)
	})
	t.Run("pack", func(t *testing.T) { // two rows a work-group of 16 (Tuning.Pack), rows of up to 32 columns kept
		d := openTuned(t, Tuning{WG: 16, Unroll: 2, UnrollHalf: 3, RC: 1, Rev: 1, Align: 3, Pack: 2})
		SetPack(d, true)
		spec.RunTable(t, d, sc, 1e-5)
		spec.RunShardsOf(t, d, sc[:2], 1e-5)
	})
	for _, rc := range []int{1, 0} {
		t.Run(fmt.Sprintf("rc=%d", rc), func(t *testing.T) {
			d := openTuned(t, Tuning{WG: 16, Unroll: 2, UnrollHalf: 3, RC: rc, Rev: rc, Align: 3 * rc})
			SetMaxGroups(d, 2*rc)
			spec.RunTable(t, d, cases, 1e-5)
			if rc == 1 {
				return
			}
			spec.RunShardsOf(t, d, cases, 1e-5)
			spec.RunResidentOf(t, d, cases[:3], 1e-5)
			d.Staging = true
			seed := spec.Seed(t)
			for _, c := range cases[:3] {
				for _, typ := range d.Caps().Types {
					d.ChunkBytes = int64(2 * typ.Size() * max(c.Cols, c.Stride))
					spec.RunCaseIn(t, d, c, typ, seed, 1e-5)
				}
			}
			d.Staging, d.ChunkBytes = false, 0
			_, err := d.CopyBandwidth(context.Background(), 1<<16, 1)
			require.NoError(t, err)
			_, err = d.PinnedBandwidth(context.Background(), 1<<16, 1)
			require.NoError(t, err)
		})
	}
}

// TestConformanceLinearOpenCL is TestConformanceOpenCL's part for the fused
// linear: CLBlast's products and our filter and pick kernels on small problems (a
// test of its own, which PoCL's repl method leaves out with the other
// linear tests: it replicates CLBlast's kernels per work-item, minutes
// each).
func TestConformanceLinearOpenCL(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: TestLinearFilterOpenCL and TestLinearFusedOpenCL cover it (.ci/oclgrind runs it in full)")
	}
	t.Run("fused", func(t *testing.T) {
		// linear.cl's kernels (Tuning.LinTile): every option in every
		// type, small, in tiles of 16; and their distillation's fix and
		// the gradient filter. (The row kernels' tuning is rc=0's of
		// TestConformanceOpenCL: one program build fewer.)
		d := openTuned(t, Tuning{WG: 16, Unroll: 2, UnrollHalf: 3, LinTile: 16})
		spec.RunLinearSmall(t, d, 1e-5)
		spec.RunLinearDistillGolden(t, d, 1e-5)
		spec.RunLinearFilterSized(t, d, 19, 64, 301)
		spec.RunLinearPick(t, d)
	})
	t.Run("fused-reg8", func(t *testing.T) {
		// Tiles of 64, 8 × 8 entries a work-item (Tuning.LinReg): work-groups
		// of as many work-items as a tile has classes.
		d := openTuned(t, Tuning{WG: 16, Unroll: 2, UnrollHalf: 3, LinTile: 64, LinReg: 8})
		spec.RunLinearSmall(t, d, 1e-5)
	})
	linearTest(t, func(t *testing.T) {
		// CLBlast's path: the filter's kernel, and the pick's (opt-in).
		d := openTuned(t, Tuning{WG: 16, Unroll: 2, UnrollHalf: 2, Rev: 1, Pick: 1})
		spec.RunLinearFilterSized(t, d, 19, 64, 301)
		spec.RunLinearPick(t, d)
	})
}

// TestFMAPeak: the FMA probe (bench's roofline for the fused linear) runs
// and gives a rate between 0.1 GFLOP/s and 10 PFLOP/s: nothing optimised
// away, no timing that is zero.
func TestFMAPeak(t *testing.T) {
	d := openTest(t)
	v, err := d.FMAPeak(context.Background(), 1)
	require.NoError(t, err)
	t.Logf("%s: %.1f GFLOP/s", d.Info().Spec, v/1e9)
	require.Greater(t, v, 1e8)
	require.Less(t, v, 1e16)
}

// TestKernelTime: LastKernelTime, the kernel-only benchmark's clock, is
// above 0 and within the call's wall time after each call that times its
// kernels (on host rows and resident ones, fused, split over work-groups,
// the fused linear on linear.cl's kernels), a small call after a large one
// (so a time kept from an earlier call shows); 0, unknown, after a probe
// and an upload, which launch none of the call's kernels.
func TestKernelTime(t *testing.T) {
	ctx := context.Background()
	d := openTest(t)
	r := rand.New(rand.NewPCG(5, 6))
	check := func(name string, f func(d *Device) error, d *Device) {
		t.Helper()
		t0 := time.Now()
		require.NoError(t, f(d), name)
		wall, k := time.Since(t0), d.LastKernelTime()
		t.Logf("%s: kernels %v of %v", name, k, wall)
		require.Positive(t, k, "%s: no kernel time", name)
		require.LessOrEqual(t, k, wall, "%s: kernels longer than the call", name)
	}
	for _, sz := range [][2]int{{256, 8191}, {3, 50}} {
		n, v := sz[0], sz[1]
		x, tg := gen.Logits(n, v, r.Uint64()), gen.Targets(n, v, r.Uint64())
		m := batch.NewMatrix(x, n, v)
		l, err := batch.New(d)
		require.NoError(t, err)
		tag := fmt.Sprintf(" %d×%d", n, v)
		check("lse"+tag, func(*Device) error { return l.LogSumExp(ctx, make([]float32, n), m) }, d)
		check("forward"+tag, func(*Device) error { _, err := l.Forward(ctx, m, tg); return err }, d)
		dm, err := batch.Upload(ctx, d, m)
		require.NoError(t, err)
		require.Zero(t, d.LastKernelTime(), "after an upload")
		check("resident fused"+tag, func(*Device) error {
			_, err := l.ForwardBackward(ctx, dm.Grad(), dm.Matrix(), tg, batch.One)
			return err
		}, d)
		dm.Release()
		SetSplit(d, 3)
		check("split forward"+tag, func(*Device) error { _, err := l.Forward(ctx, m, tg); return err }, d)
		SetSplit(d, 0)
		_, err = d.CopyBandwidth(ctx, 1<<20, 1)
		require.NoError(t, err)
		require.Zero(t, d.LastKernelTime(), "after the copy probe")
	}
	f := openFused(t, 16, 0)
	const n, dd, v = 40, 24, 300
	h, w, tg := gen.Linear(r, n, dd, v, 1, 1)
	lin, err := batch.NewLinear(f)
	require.NoError(t, err)
	check("fused linear (linear.cl)", func(*Device) error {
		_, err := lin.Forward(ctx, batch.NewMatrix(h, n, dd), batch.NewMatrix(w, v, dd), nil, tg)
		return err
	}, f)
}

// TestBenchOpenCL: bench.Run on the device, both modes, times every op
// (the kernel-only mode from LastKernelTime): a positive, finite rate and
// fraction of its roofline in each.
func TestBenchOpenCL(t *testing.T) {
	d := openTest(t)
	rep, err := bench.Run(context.Background(), bench.Config{Batch: 8, Vocabs: []int{1000}, Ops: []string{bench.OpLSE, bench.OpForward, bench.OpFused},
		Devices: []string{d.Info().Spec}, Repeat: 2})
	require.NoError(t, err)
	modes := map[string]int{}
	for _, r := range rep.Results {
		t.Logf("%s %s %s: %.3g s, %.3g GB/s, %.3g of %s", r.Device, r.Op, r.Mode, r.SecondsMed, r.GBps, r.Fraction, r.RooflineFor)
		modes[r.Mode]++
		for _, v := range []float64{r.SecondsMin, r.GBps, r.Fraction} {
			require.Positive(t, v, "%s %s", r.Op, r.Mode)
			require.False(t, math.IsInf(v, 0), "%s %s", r.Op, r.Mode)
		}
	}
	require.Equal(t, map[string]int{"kernel": 3, "end-to-end": 3}, modes)
}

// TestBrokenClock, with XENT_TEST_BROKEN_CLOCK=1 (.ci/rusticl: Mesa
// 22.3's llvmpipe, whose profiling events say 1 ns a kernel), requires
// the copy probe, the row benchmark's roofline, to refuse the clock and
// say why, rather than give 25 PB/s; and xent tune to stop on it at its
// start, rather than rank the candidates by the clock's noise.
func TestBrokenClock(t *testing.T) {
	if os.Getenv("XENT_TEST_BROKEN_CLOCK") != "1" {
		t.Skip("XENT_TEST_BROKEN_CLOCK unset: .ci/rusticl runs it on a device whose profiling clock is wrong")
	}
	const cannot = "the device's profiling clock cannot time its kernels"
	d := openTest(t)
	v, err := d.CopyBandwidth(context.Background(), 64<<20, 3)
	require.ErrorContains(t, err, cannot, "measured %.3g GB/s", v/1e9)
	t.Log(err)
	arg := os.Getenv("XENT_TEST_OPENCL")
	rep, err := bench.Tune(context.Background(), bench.TuneConfig{
		Batch: 4, Vocabs: []int{1000}, Ops: []string{bench.OpLSE},
		Params: []bench.Param{{Name: "wg", Values: []int{8, 16}}},
		Start:  map[string]int{"wg": 16},
		Open: func(p map[string]int) (device.Device, error) {
			return OpenTuned(arg, Tuning{WG: p["wg"], Unroll: 1, UnrollHalf: 1})
		},
	})
	require.ErrorContains(t, err, cannot)
	require.Len(t, rep.Trials, 1, "no candidate after the start")
}

// TestSplitOpenCL: rows split over several work-groups (Tuning.Split,
// here forced on every call, in 7 splits cut at multiples of 4 columns:
// a row of 5 columns in 2) pass the reduced case table (every kernel in
// every type; the whole table without -short), the shards, resident
// buffers, PyTorch's values and the distillation: the partials merged on
// the host, the gradient from them split as well. TestConformanceOpenCL
// runs 3 splits under Oclgrind.
func TestSplitOpenCL(t *testing.T) {
	numbersOnly(t)
	d := openTest(t)
	SetSplit(d, 7)
	cases := spec.ConformanceCases()
	if !testing.Short() {
		cases = spec.Cases()
	}
	spec.RunTable(t, d, cases, 1e-5)
	spec.RunShardsOf(t, d, spec.ConformanceCases(), 1e-5)
	spec.RunResidentOf(t, d, spec.ConformanceCases()[:3], 1e-5)
	spec.RunGolden(t, d, 1e-5)
	spec.RunDistillGolden(t, d, 1e-5)
}

// TestPackOpenCL: several rows a work-group (Tuning.Pack, rows.cl's
// FOR_ROWS with PACK > 1) on short rows (at most 4·U·WG columns) and not
// on long ones; then, forced on every call, they pass the reduced case
// table (every kernel in every type and option), the shards (the partial and backward kernels), chunks, resident buffers
// and PyTorch's values: 4 rows a work-group of the device's size (its
// last lanes past the last row in most cases), and one work-item a row.
// TestConformanceOpenCL runs it under Oclgrind.
func TestPackOpenCL(t *testing.T) {
	numbersOnly(t)
	tn, _, err := TuningFor(os.Getenv("XENT_TEST_OPENCL"))
	if err != nil {
		openTest(t) // skips or fails as every test here does without OpenCL
		require.NoError(t, err)
	}
	cases := spec.ConformanceCases() // every kernel, type and option: PACK changes only which work-items take a row
	for _, pack := range []int{4, 1 << 10} {
		t.Run(fmt.Sprintf("pack=%d", pack), func(t *testing.T) {
			tn.Pack = pack
			d := openTuned(t, tn)
			t.Logf("%d rows a work-group: %v", min(pack, WG(d)), d.Tuning())
			if pack > 4 {
				SetPack(d, true)
				spec.RunTable(t, d, spec.ConformanceCases(), 1e-5)
				return
			}
			u := d.Tuning().Unroll
			long := spec.Case{Name: "long", Rows: 5, Cols: 4*u*WG(d) + 1, Fill: spec.Normal(3, 0, 0)}
			spec.RunCaseIn(t, d, long, ce.F32, spec.Seed(t), 1e-5)
			require.False(t, Packed(d), "rows of %d columns, past 4·%d·%d: one a work-group", long.Cols, u, WG(d))
			short := spec.Case{Name: "short", Rows: 7, Cols: 4 * u * WG(d), Fill: spec.Normal(3, 0, 0)}
			spec.RunCaseIn(t, d, short, ce.F32, spec.Seed(t), 1e-5)
			require.True(t, Packed(d), "rows of %d columns: 4 a work-group", short.Cols)

			if tn := d.Tuning(); tn.RC > 0 && WG(d)/4 >= 8 { // the fused pass's reads (bench's traffic): a row in RC float4s of each of its work-items is read once
				kept := 4 * tn.RC * WG(d) / 4 // columns a packed row keeps
				require.Equal(t, 1, d.FusedReads(kept, ce.F32))
				SetPack(d, true)
				require.Equal(t, 2, d.FusedReads(kept+4, ce.F32), "WG/4 work-items keep %d columns", kept)
			}
			SetPack(d, true)
			spec.RunTable(t, d, cases, 1e-5)
			spec.RunShardsOf(t, d, spec.ConformanceCases(), 1e-5)
			spec.RunResidentOf(t, d, spec.ConformanceCases()[:3], 1e-5)
			spec.RunGolden(t, d, 1e-5)
			seed := spec.Seed(t)
			for _, c := range spec.ConformanceCases()[:3] {
				d.ChunkBytes = int64(3 * 4 * max(c.Cols, c.Stride)) // chunks of 3 rows: a lane past the last in each
				spec.RunCaseIn(t, d, c, ce.F32, seed, 1e-5)
			}
		})
	}
}

// TestAllocHostOpenCL: logits and gradients in host matrices of AllocHost
// (pinned memory) cross without the staging buffers (none is made, as a
// call on ordinary rows makes them), and the results are the float64
// reference's, in every type, in two chunks; FreeHost refuses a matrix it
// did not give or gave back already, and Close frees the rest.
func TestAllocHostOpenCL(t *testing.T) {
	d := openTest(t)
	d.Staging = true // as on a GPU
	rng := rand.New(rand.NewPCG(spec.Seed(t), 41))
	rows, cols := 37, 1031
	for _, typ := range d.Caps().Types {
		x, err := d.AllocHost(rows, cols, typ)
		require.NoError(t, err)
		g, err := d.AllocHost(rows, cols, typ)
		require.NoError(t, err)
		z := make([]float32, rows*cols)
		for k := range z {
			z[k] = typ.Round(float32(rng.NormFloat64() * 3))
		}
		if typ == ce.F32 {
			copy(x.Data, z)
		} else {
			cpu.Narrow(x.Half, z, typ)
		}
		tg := make([]int32, rows)
		for i := range tg {
			tg[i] = int32(rng.IntN(cols))
		}
		tg[3] = -1
		ref := spec.Reference(z, rows, cols, cols, tg, spec.Opts{Ignore: -1})
		scale := make([]float32, rows)
		for i := range scale {
			scale[i] = 1
		}
		d.ChunkBytes = int64(typ.Size()*cols) * 20 // two chunks
		loss := make([]float32, rows)
		gr := &ce.Grad{Data: g.Data, Half: g.Half, Stride: cols, Scale: scale, Type: typ}
		require.NoError(t, d.CrossEntropy(context.Background(), ce.Out{Loss: loss}, gr, x, tg, &ce.Problem{WeightSum: float64(cols)}))
		require.Zero(t, Kept(d), "%v: pinned rows and gradient take no staging buffer", typ)
		got := make([]float32, rows*cols)
		if typ == ce.F32 {
			copy(got, g.Data)
		} else {
			cpu.Widen(got, g.Half, typ)
		}
		for i := range rows {
			if tg[i] < 0 {
				require.Zero(t, loss[i])
				continue
			}
			require.True(t, ref.LossClose(i, float64(loss[i]), spec.LossTol), "%v row %d: loss %v, want %v", typ, i, loss[i], ref.Loss[i])
			big := spec.RowMax(ref.Grad[i])
			for j := range cols {
				require.True(t, spec.RowClose(typ, got[i*cols+j], ref.Grad[i][j], big), "%v row %d col %d: gradient %v, want %v", typ, i, j, got[i*cols+j], ref.Grad[i][j])
			}
		}
		require.NoError(t, d.FreeHost(x))
		require.Error(t, d.FreeHost(x), "freed already")
		d.ChunkBytes = 0
	}
	// The control: ordinary host rows do go through staging buffers.
	x := ce.Matrix{Data: make([]float32, 4*8), Rows: 4, Cols: 8, Stride: 8}
	require.NoError(t, d.LogSumExp(context.Background(), make([]float32, 4), x))
	require.NotZero(t, Kept(d), "ordinary rows are staged")
	require.Error(t, d.FreeHost(x), "not AllocHost's")
	_, err := d.AllocHost(-1, 3, ce.F32)
	require.Error(t, err)
	m, free, err := batch.AllocHost(d, 2, 3, batch.BF16) // through the user's API
	require.NoError(t, err)
	require.Len(t, m.Half, 6)
	require.NoError(t, free())
	// The gradients' matrices are left to Close.
}
