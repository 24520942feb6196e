package opencl_test

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/ce"
	"github.com/xentlab/xent/cpu"
	"github.com/xentlab/xent/device"
	"github.com/xentlab/xent/device/opencl"
	"github.com/xentlab/xent/internal/spec"
	"github.com/xentlab/xent/internal/tiles"
)

// linearTest runs run when the test device has the fused linear
// (CLBlast); XENT_REQUIRE_CLBLAST=1 (CI) makes its absence a failure.
func linearTest(t *testing.T, run func(t *testing.T)) {
	d := openTest(t)
	if !d.Caps().Linear {
		if os.Getenv("XENT_REQUIRE_CLBLAST") == "1" {
			t.Fatalf("XENT_REQUIRE_CLBLAST=1 but %s has no fused linear (CLBlast)", d.Info().Spec)
		}
		t.Skipf("%s has no fused linear (CLBlast not loaded)", d.Info().Spec)
	}
	run(t)
}

// The CPU's fused linear tests, on the OpenCL device: the float64
// reference, PyTorch's values and the shards.
func TestLinearOpenCL(t *testing.T) {
	linearTest(t, func(t *testing.T) { spec.RunLinear(t, openTest(t), 1e-5) })
}

func TestLinearGoldenOpenCL(t *testing.T) {
	linearTest(t, func(t *testing.T) {
		spec.RunLinearGolden(t, openTest(t), 1e-5)
		spec.RunLinearDistillGolden(t, openTest(t), 1e-5)
	})
}

// TestLinearDistillOpenCL: the fused linear's distillation (the backward
// kernel's fix on each tile) against the float64 reference.
func TestLinearDistillOpenCL(t *testing.T) {
	linearTest(t, func(t *testing.T) { spec.RunLinearDistill(t, openTest(t), 1e-5) })
}

// TestLinearShardsOpenCL also checks that a fused linear call leaves no
// OpenCL object behind (buffers, events).
func TestLinearShardsOpenCL(t *testing.T) {
	linearTest(t, func(t *testing.T) {
		d := openTest(t)
		before := opencl.Live()
		spec.RunLinearShards(t, d, 1e-5)
		require.Equal(t, before, opencl.Live(), "OpenCL objects alive after the calls")
	})
}

// TestLinearVersusCPU: OpenCL against the CPU within 2e-5 relative on the
// losses and 1e-4 of the largest entry on dH, dW and db, and the same bits
// when run twice.
func TestLinearVersusCPU(t *testing.T) {
	linearTest(t, func(t *testing.T) {
		spec.RunLinearVersus(t, openTest(t), device.NewCPU(cpu.Default()), 2e-5, 1e-4)
	})
}

// TestLinearGroupOpenCL splits W's classes between the OpenCL device and
// the CPU, as Open("all") does with a GPU: the table and the shards, and
// against the CPU alone.
func TestLinearGroupOpenCL(t *testing.T) {
	linearTest(t, func(t *testing.T) {
		g, err := device.NewGroup(device.SplitRows, openTest(t), device.NewCPU(cpu.Default()))
		require.NoError(t, err)
		spec.RunLinear(t, g, 1e-5)
		spec.RunLinearShards(t, g, 1e-5)
		spec.RunLinearVersus(t, g, device.NewCPU(cpu.Default()), 2e-5, 1e-4)
	})
}

func TestLinearPast2p31OpenCL(t *testing.T) {
	linearTest(t, func(t *testing.T) { spec.RunLinearPast2p31(t, openTest(t)) })
}

func TestLinearResidentOpenCL(t *testing.T) {
	linearTest(t, func(t *testing.T) {
		spec.RunLinearResident(t, openTest(t), device.NewCPU(cpu.Default()))
	})
}

func TestLinearFilterOpenCL(t *testing.T) {
	numbersOnly(t)
	linearTest(t, func(t *testing.T) { spec.RunLinearFilter(t, openTest(t)) })
}

// TestLinearConfidentOpenCL: confident rows through the fused linear (see
// spec.RunLinearConfident).
func TestLinearConfidentOpenCL(t *testing.T) {
	numbersOnly(t)
	linearTest(t, func(t *testing.T) { spec.RunLinearConfident(t, openTest(t)) })
}

// openFused opens the test device with the fused linear on linear.cl's
// kernels in tiles of lt (Tuning.LinTile), lr × lr entries a work-item
// (Tuning.LinReg, 0: 4), whatever its tuning says else.
func openFused(t *testing.T, lt, lr int) *opencl.Device {
	t.Helper()
	openTest(t) // skips, or fails under XENT_REQUIRE_OPENCL, without a device
	arg := os.Getenv("XENT_TEST_OPENCL")
	tn, _, err := opencl.TuningFor(arg)
	require.NoError(t, err)
	tn.LinTile, tn.LinReg = lt, lr
	d, err := opencl.OpenTuned(arg, tn)
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	return d
}

// TestLinearFusedOpenCL: the fused linear on linear.cl's kernels (opt-in,
// Tuning.LinTile) passes what CLBlast's path passes: the float64
// reference through the case table, PyTorch's values, the distillation,
// the shards with no OpenCL object left alive, confident rows, resident
// buffers, the CPU's results within 2e-5 (losses) and 1e-4 of the
// largest entry (dH, dW, db) with the same bits run twice, and the
// gradient filter's bound, in tiles of 16 (work-groups of 16); tiles of 32
// and 64 on small problems of every option and type, and tiles of 64 with
// 8 × 8 entries a work-item (Tuning.LinReg) on those and against the CPU
// over several tiles each way (not under -short).
func TestLinearFusedOpenCL(t *testing.T) {
	numbersOnly(t)
	d := openFused(t, 16, 0)
	cpuDev := device.NewCPU(cpu.Default())
	spec.RunLinear(t, d, 1e-5)
	spec.RunLinearGolden(t, d, 1e-5)
	spec.RunLinearDistillGolden(t, d, 1e-5)
	spec.RunLinearDistill(t, d, 1e-5)
	before := opencl.Live()
	spec.RunLinearShards(t, d, 1e-5)
	require.Equal(t, before, opencl.Live(), "OpenCL objects alive after the calls")
	spec.RunLinearConfident(t, d)
	spec.RunLinearResident(t, d, cpuDev)
	spec.RunLinearVersus(t, d, cpuDev, 2e-5, 1e-4)
	spec.RunLinearFilter(t, d)
	spec.RunLinearPick(t, d)
	if testing.Short() {
		return
	}
	for _, lt := range []int{32, 64} {
		t.Run(fmt.Sprint("tile", lt), func(t *testing.T) { spec.RunLinearSmall(t, openFused(t, lt, 0), 1e-5) })
	}
	t.Run("tile64/reg8", func(t *testing.T) {
		d := openFused(t, 64, 8)
		require.Contains(t, d.Info().BLAS, "linear.cl 64×64/8")
		spec.RunLinearSmall(t, d, 1e-5)
		spec.RunLinearVersus(t, d, cpuDev, 2e-5, 1e-4)
	})
}

// TestTileTooWide, with XENT_TEST_WG_LIMIT=1 (.ci/rusticl: Mesa 22.3's
// llvmpipe, whose CL_KERNEL_WORK_GROUP_SIZE is 32 for linear.cl's kernels
// on the machine seen; it launches them at 64 all the same, against the
// specification, so only the refusal tells), requires a call of the fused
// linear in tiles of 64 (8 × 8 a work-item: 64 work-items) to be refused
// with ErrNotAvailable, naming the kernel, the device's limit (whatever it
// is under 64) and the tile's need, and tiles of 16 (16 work-items) to run.
func TestTileTooWide(t *testing.T) {
	if os.Getenv("XENT_TEST_WG_LIMIT") == "" {
		t.Skip("XENT_TEST_WG_LIMIT unset: .ci/rusticl runs it on a device whose kernels take work-groups of at most 32")
	}
	seed := spec.Seed(t)
	_, _, err := spec.LinearAt(openFused(t, 64, 8), seed, 9, 70, 5)
	require.ErrorIs(t, err, device.ErrNotAvailable)
	m := regexp.MustCompile(`xent_lin_partial_f32 runs work-groups of at most (\d+) on .*, its tile of 64 \(8×8 a work-item\) needs 64`).FindStringSubmatch(err.Error())
	require.NotNil(t, m, "%v", err)
	n, _ := strconv.Atoi(m[1])
	require.Less(t, n, 64, "%v", err)
	t.Log(err)
	_, _, err = spec.LinearAt(openFused(t, 16, 0), seed, 9, 70, 5)
	require.NoError(t, err)
}

// TestLinearWithoutCLBlast runs this test binary again with
// XENT_CLBLAST_LIB pointing nowhere (the library is loaded once per
// process): a device whose tuning names a tile has the fused linear
// without CLBlast, linear.cl's kernels alone, and every call of it runs,
// the rank pass of a W it holds included; a device on CLBlast's path says
// it has none, and why.
func TestLinearWithoutCLBlast(t *testing.T) {
	numbersOnly(t)
	if os.Getenv("XENT_NOBLAST_CHILD") == "1" {
		d := openFused(t, 16, 0)
		require.True(t, d.Caps().Linear)
		require.Equal(t, "linear.cl 16×16/4", d.Info().BLAS)
		spec.RunLinearResident(t, d, device.NewCPU(cpu.Default()))
		spec.RunLinearSmall(t, d, 1e-5)
		plain := openFused(t, 0, 0)
		require.False(t, plain.Caps().Linear)
		require.Contains(t, plain.Info().Note, "no CLBlast")
		return
	}
	openTest(t) // skips, or fails under XENT_REQUIRE_OPENCL, without a device
	cmd := exec.Command(os.Args[0], "-test.run", "^TestLinearWithoutCLBlast$", "-test.v")
	cmd.Env = append(os.Environ(), "XENT_NOBLAST_CHILD=1", "XENT_CLBLAST_LIB=/nonexistent/libclblast.so.1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestLinearWithoutCLBlast") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

// TestLinearWideCLBlast: CLBlast's path with Tuning.Wide (opt-in) runs
// its passes without gradients in wide tiles (tiles.WidePlanOf) and
// passes what it passes without: the case table's forward at every
// budget, the picks (with Tuning.Pick, whose tiles they are), the rank
// pass of a held W, and a distillation's shards in one all-reduce (the
// small problems and the picks alone under -short).
func TestLinearWideCLBlast(t *testing.T) {
	linearTest(t, func(t *testing.T) {
		arg := os.Getenv("XENT_TEST_OPENCL")
		tn, _, err := opencl.TuningFor(arg)
		require.NoError(t, err)
		tn.LinTile, tn.Wide, tn.Pick = 0, 1, 1
		d, err := opencl.OpenTuned(arg, tn)
		require.NoError(t, err)
		defer d.Close()
		require.Contains(t, d.Tuning().String(), " pick=1 wide=1")
		// The plan a call runs (and a benchmark sizes its memory from):
		// wide without gradients only, and never without Wide.
		lin := &ce.Linear{H: ce.NewDense(1024, 8, ce.F32), W: ce.NewDense(50257, 8, ce.F32)}
		tg := make([]int32, 1024)
		narrow, wide := tiles.PlanOf(lin, tg), tiles.WidePlanOf(lin, tg)
		require.NotEqual(t, narrow, wide)
		require.Equal(t, wide, d.LinearPlan(lin, tg, false))
		require.Equal(t, narrow, d.LinearPlan(lin, tg, true))
		d0 := openFused(t, 0, 0)
		require.Equal(t, narrow, d0.LinearPlan(lin, tg, false))
		spec.RunLinearSmall(t, d, 1e-5)
		spec.RunLinearPick(t, d)
		if testing.Short() { // the race detector's run: the case table's budgets and the shards without it
			return
		}
		spec.RunLinear(t, d, 1e-5)
		spec.RunLinearDistill(t, d, 1e-5)
	})
}

// TestLinearPickCLBlast: CLBlast's path picks a distillation's logits at
// the teacher's classes from its tiles (device.LinearPicker,
// xent_tile_pick) only with Tuning.Pick (opt-in): then it passes
// spec.RunLinearPick; without, it says device.ErrNotImplemented and writes
// nothing (the caller computes them apart).
func TestLinearPickCLBlast(t *testing.T) {
	linearTest(t, func(t *testing.T) {
		d := openFused(t, 0, 0)
		lin := &ce.Linear{H: ce.NewDense(3, 4, ce.F32), W: ce.NewDense(5, 4, ce.F32)}
		part, z := ce.EmptyPartials(3), []float32{7, 7, 7}
		err := d.LinearPartialsAt(context.Background(), part, z, []int32{0, 1, 2}, 1, lin, []int32{0, 1, 2}, &ce.Problem{WeightSum: 5})
		require.ErrorIs(t, err, device.ErrNotImplemented)
		require.Equal(t, ce.EmptyPartials(3), part)
		require.Equal(t, []float32{7, 7, 7}, z)

		arg := os.Getenv("XENT_TEST_OPENCL")
		tn, _, err := opencl.TuningFor(arg)
		require.NoError(t, err)
		tn.LinTile, tn.Pick = 0, 1
		dp, err := opencl.OpenTuned(arg, tn)
		require.NoError(t, err)
		defer dp.Close()
		require.Contains(t, dp.Tuning().String(), " pick=1")
		before := opencl.Live()
		spec.RunLinearPick(t, dp)
		require.Equal(t, before, opencl.Live(), "OpenCL objects alive after the calls")

		// A group picks where each member does, and refuses, writing
		// nothing, where one does not.
		g, err := device.NewGroup(device.SplitRows, dp, device.NewCPU(cpu.Default()))
		require.NoError(t, err)
		spec.RunLinearPick(t, g)
		g, err = device.NewGroup(device.SplitRows, d, device.NewCPU(cpu.Default()))
		require.NoError(t, err)
		lin.H, lin.W = ce.NewDense(3, 4, ce.F32), ce.NewDense(500, 4, ce.F32) // classes for each member
		err = g.LinearPartialsAt(context.Background(), part, z, []int32{0, 1, 499}, 1, lin, []int32{0, 1, 2}, &ce.Problem{WeightSum: 500})
		require.ErrorIs(t, err, device.ErrNotImplemented)
		require.Equal(t, ce.EmptyPartials(3), part)
		require.Equal(t, []float32{7, 7, 7}, z)
	})
}

// a100Xgemm is CLBlast's float32 Xgemm entry for the A100 (its
// database, SM8.0): a set it takes, for the tests.
var a100Xgemm = map[string]int{"GEMMK": 0, "KREG": 1, "KWG": 32, "KWI": 2, "MDIMA": 8, "MDIMC": 8, "MWG": 32, "NDIMB": 16,
	"NDIMC": 16, "NWG": 64, "SA": 1, "SB": 1, "STRM": 0, "STRN": 0, "VWM": 4, "VWN": 4}

// TestLinearXgemmOpenCL: CLBlast's Xgemm parameters (Tuning.Xgemm) reach
// CLBlast, and only sets its kernel can run. With a set it takes (the
// A100's) and its Xgemm kernel on every product (its direct kernel's
// limit lowered), the results are the CPU's; the same set with a tile
// that does not divide computes wrong products without an error when
// given to CLBlast directly, so Open refuses it, as it refuses a set
// without a parameter (which CLBlast itself refuses, status -2047) and one
// past the device's local memory. The set is the OpenCL device's (the
// last Device opened decides), and none goes back to CLBlast's database.
func TestLinearXgemmOpenCL(t *testing.T) {
	numbersOnly(t)
	linearTest(t, func(t *testing.T) {
		arg := os.Getenv("XENT_TEST_OPENCL")
		tn, _, err := opencl.TuningFor(arg)
		require.NoError(t, err)
		tn.LinTile, tn.Xgemm = 0, a100Xgemm
		d, err := opencl.OpenTuned(arg, tn)
		require.NoError(t, err)
		defer d.Close()
		require.Equal(t, "CLBlast, Xgemm "+opencl.XgemmString(a100Xgemm), d.Info().BLAS)
		require.Equal(t, a100Xgemm, d.Tuning().Xgemm)
		require.NoError(t, opencl.BlastOverride(d, "GemmRoutine", map[string]int{"XGEMM_MIN_INDIRECT_SIZE": 64}))
		spec.RunLinearVersusAt(t, d, device.NewCPU(cpu.Default()), 150, 1999, 37, 2e-5, 1e-4)

		// The fastest set of a file of CLBlast's own tuner (PoCL's; see
		// TestXgemmTuner) runs as well: its work-groups are 16 × 32.
		tuned, err := opencl.ReadXgemmTuner("testdata/clblast_xgemm_1_32.json")
		require.NoError(t, err)
		tn.Xgemm = tuned
		dt, err := opencl.OpenTuned(arg, tn)
		require.NoError(t, err)
		require.Equal(t, "CLBlast, Xgemm "+opencl.XgemmString(tuned), dt.Info().BLAS)
		spec.RunLinearVersusAt(t, dt, device.NewCPU(cpu.Default()), 70, 301, 37, 2e-5, 1e-4)
		dt.Close()
		tn.Xgemm = a100Xgemm
		require.NoError(t, opencl.BlastOverride(d, "Xgemm", a100Xgemm))

		bad := maps.Clone(a100Xgemm)
		bad["MWG"] = 24 // not a multiple of MDIMC·VWM = 32
		seed := spec.Seed(t)
		l1, _, err := spec.LinearAt(d, seed, 150, 1999, 37)
		require.NoError(t, err)
		require.NoError(t, opencl.BlastOverride(d, "Xgemm", bad))
		l2, _, err := spec.LinearAt(d, seed, 150, 1999, 37)
		require.NoError(t, err, "CLBlast takes any complete set")
		require.NotEqual(t, l1, l2, "its kernel cuts MWG 24 wrongly")
		require.NoError(t, opencl.BlastOverride(d, "Xgemm", a100Xgemm))
		other := tn
		other.Xgemm = bad
		_, err = opencl.OpenTuned(arg, other)
		require.ErrorContains(t, err, "MWG 24 is not a multiple of MDIMC·VWM = 32")
		delete(bad, "MWG")
		_, err = opencl.OpenTuned(arg, other)
		require.ErrorContains(t, err, "MWG missing")
		require.ErrorContains(t, opencl.BlastOverride(d, "Xgemm", bad), "CLBlast status -2047 (a parameter of the kernel missing from the override)")
		big := maps.Clone(a100Xgemm)
		big["KWG"], big["MWG"], big["NWG"] = 512, 1024, 1024
		other.Xgemm = big
		_, err = opencl.OpenTuned(arg, other)
		require.ErrorContains(t, err, "need 4194304 bytes of local memory")

		other.Xgemm = nil
		d3, err := opencl.OpenTuned(arg, other)
		require.NoError(t, err)
		defer d3.Close()
		require.Equal(t, "CLBlast", d3.Info().BLAS)
		require.Equal(t, "CLBlast", d.Info().BLAS, "the OpenCL device's parameters: the last Device opened decides")
		require.Nil(t, d3.Tuning().Xgemm)
		l3, _, err := spec.LinearAt(d3, seed, 150, 1999, 37)
		require.NoError(t, err, "CLBlast's database again")
		require.InDeltaSlice(t, l1, l3, 1e-4, "CLBlast's database, as the A100's set")
	})
}
