package device_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/batch"
	"github.com/xentlab/xent/ce"
	"github.com/xentlab/xent/cpu"
	"github.com/xentlab/xent/device"
	"github.com/xentlab/xent/device/blas"
	"github.com/xentlab/xent/internal/gen"
	"github.com/xentlab/xent/internal/spec"
	"github.com/xentlab/xent/internal/tiles"
)

// linearCPUs returns a CPU device for every BLAS this host has (gonum
// always, OpenBLAS where it loads; XENT_REQUIRE_BLAS=1 makes its absence a
// failure, as CI does) and the fastest row kernel, plus the portable
// kernel on gonum.
func linearCPUs(t *testing.T) map[string]*device.CPUDevice {
	devs := map[string]*device.CPUDevice{
		"gonum":          device.NewCPU(cpu.Default()).WithBLAS(blas.Gonum()),
		"gonum/portable": device.NewCPU(cpu.Portable()).WithBLAS(blas.Gonum()),
	}
	if o, err := blas.OpenBLAS(); err == nil {
		devs["openblas"] = device.NewCPU(cpu.Default()).WithBLAS(o)
	} else if os.Getenv("XENT_REQUIRE_BLAS") == "1" {
		t.Fatalf("XENT_REQUIRE_BLAS=1: %v", err)
	} else {
		t.Logf("OpenBLAS not tested: %v", err)
	}
	return devs
}

// eachLinearCPU returns the devices the per-BLAS tests run: linearCPUs, or
// under -short (the race detector's run: the tile driver's goroutines are
// the same on every BLAS) one of them, OpenBLAS where it loads. The group
// and versus tests still take them all.
func eachLinearCPU(t *testing.T) map[string]*device.CPUDevice {
	devs := linearCPUs(t)
	if !testing.Short() {
		return devs
	}
	for _, one := range []string{"openblas", "gonum"} {
		if d, ok := devs[one]; ok {
			return map[string]*device.CPUDevice{one: d}
		}
	}
	return devs
}

func TestLinearCPU(t *testing.T) {
	for name, d := range eachLinearCPU(t) {
		t.Run(name, func(t *testing.T) { spec.RunLinear(t, d, 1e-5) })
	}
}

func TestLinearGoldenCPU(t *testing.T) {
	for name, d := range eachLinearCPU(t) {
		t.Run(name, func(t *testing.T) {
			spec.RunLinearGolden(t, d, 1e-5)
			spec.RunLinearDistillGolden(t, d, 1e-5)
		})
	}
}

func TestLinearShardsCPU(t *testing.T) {
	for name, d := range eachLinearCPU(t) {
		t.Run(name, func(t *testing.T) { spec.RunLinearShards(t, d, 1e-5) })
	}
}

// TestLinearDistillCPU: the fused linear's distillation on each BLAS and
// kernel, and through a group that splits W's classes.
func TestLinearDistillCPU(t *testing.T) {
	var members []device.Device
	for name, d := range eachLinearCPU(t) {
		t.Run(name, func(t *testing.T) { spec.RunLinearDistill(t, d, 1e-5) })
		members = append(members, d)
	}
	g, err := device.NewGroup(device.SplitRows, members...)
	require.NoError(t, err)
	t.Run("group", func(t *testing.T) { spec.RunLinearDistill(t, g, 1e-5) })
}

func TestLinearCaps(t *testing.T) {
	require.True(t, device.NewCPU(cpu.Default()).Caps().Linear)
	g, err := device.NewGroup(device.SplitRows, device.NewCPU(cpu.Default()), device.NewCPU(cpu.Portable()))
	require.NoError(t, err)
	require.True(t, g.Caps().Linear, "a group of devices that have it has it")
}

// TestLinearGroupCPU splits W's classes across a group of CPU devices (the
// AVX2 kernels on OpenBLAS, the portable ones on gonum): the whole table,
// the golden values and the shards, merged in class order.
func TestLinearGroupCPU(t *testing.T) {
	devs := linearCPUs(t)
	var members []device.Device
	for _, name := range []string{"openblas", "gonum/portable", "gonum"} {
		if d, ok := devs[name]; ok {
			members = append(members, d)
		}
	}
	g, err := device.NewGroup(device.SplitRows, members...)
	require.NoError(t, err)
	spec.RunLinear(t, g, 1e-5)
	spec.RunLinearGolden(t, g, 1e-5)
	spec.RunLinearShards(t, g, 1e-5)
	spec.RunLinearVersus(t, g, devs["gonum"], 2e-5, 1e-4)
}

// BenchmarkLinear times the fused linear forward and forward + backward at
// GPT-2 small's head (1024 × 50257 × 768) through each BLAS, with
// GFLOP/s (2·N·V·D forward, 6·N·V·D forward + backward) and the bytes
// allocated per call: go test -bench Linear -benchtime 3x ./device.
func BenchmarkLinear(b *testing.B) {
	const n, v, d = 1024, 50257, 768
	hd, wd, tg := gen.Linear(rand.New(rand.NewPCG(1, 2)), n, d, v, 0.04, 1)
	h, w := batch.NewMatrix(hd, n, d), batch.NewMatrix(wd, v, d)
	g := batch.LinearGrads{H: batch.NewGrad(make([]float32, n*d), n, d), W: batch.NewGrad(make([]float32, v*d), v, d)}
	devs := map[string]*device.CPUDevice{"gonum": device.NewCPU(cpu.Default()).WithBLAS(blas.Gonum())}
	if o, err := blas.OpenBLAS(); err == nil {
		devs["openblas"] = device.NewCPU(cpu.Default()).WithBLAS(o)
	}
	for _, name := range []string{"gonum", "openblas"} {
		dev, ok := devs[name]
		if !ok {
			continue
		}
		l, err := batch.NewLinear(dev)
		require.NoError(b, err)
		for _, op := range []string{"forward", "fused"} {
			b.Run(fmt.Sprintf("blas=%s/op=%s/%dx%dx%d", name, op, n, v, d), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					var err error
					if op == "forward" {
						_, err = l.Forward(b.Context(), h, w, nil, tg)
					} else {
						_, err = l.ForwardBackward(b.Context(), g, h, w, nil, tg, batch.One)
					}
					require.NoError(b, err)
				}
				work := 2.0
				if op == "fused" {
					work = 6
				}
				b.ReportMetric(work*n*v*d/(b.Elapsed().Seconds()/float64(b.N))/1e9, "GFLOP/s")
			})
		}
	}
}

// TestLinearVersusGonum: OpenBLAS against gonum, and each the same bits
// when run twice.
func TestLinearVersusGonum(t *testing.T) {
	devs := linearCPUs(t)
	o, ok := devs["openblas"]
	if !ok {
		t.Skip("OpenBLAS not loaded")
	}
	spec.RunLinearVersus(t, o, devs["gonum"], 2e-5, 1e-4)
	spec.RunLinearVersus(t, devs["gonum"], o, 2e-5, 1e-4)
}

func TestLinearPast2p31CPU(t *testing.T) { spec.RunLinearPast2p31(t, device.NewCPU(cpu.Default())) }

// TestLinearPickCPU: a distillation's logits at the teacher's classes
// from the tiles' own products (device.LinearPicker).
// Through a group, each member's classes from its own tiles.
func TestLinearPickCPU(t *testing.T) {
	spec.RunLinearPick(t, device.NewCPU(cpu.Default()))
	g, err := device.NewGroup(device.SplitRows, device.NewCPU(cpu.Default()), device.NewCPU(cpu.Portable()))
	require.NoError(t, err)
	t.Run("group", func(t *testing.T) { spec.RunLinearPick(t, g) })
}

func TestLinearResidentCPU(t *testing.T) {
	spec.RunLinearResident(t, device.NewCPU(cpu.Default()), device.NewCPU(cpu.Portable()))
}

func TestLinearFilterCPU(t *testing.T) {
	for name, d := range eachLinearCPU(t) {
		t.Run(name, func(t *testing.T) { spec.RunLinearFilter(t, d) })
	}
}

// TestLinearConfidentCPU: confident rows through the fused linear (see
// spec.RunLinearConfident), on every BLAS and row kernel.
func TestLinearConfidentCPU(t *testing.T) {
	for name, d := range eachLinearCPU(t) {
		t.Run(name, func(t *testing.T) { spec.RunLinearConfident(t, d) })
	}
}

// TestLinearPlanCPU: with OpenBLAS the CPU's default budget holds
// min(N, 256) whole rows of the vocabulary, within 256 MiB, or the shared
// default's 64 rows when more; a budget that is set is kept; a pass
// without gradients takes wide tiles. Gonum's Sgemm keeps the shared
// default and the same tiles without gradients.
func TestLinearPlanCPU(t *testing.T) {
	o, err := blas.OpenBLAS()
	if err != nil {
		if os.Getenv("XENT_REQUIRE_BLAS") == "1" {
			t.Fatalf("XENT_REQUIRE_BLAS=1: %v", err)
		}
		t.Skipf("OpenBLAS not loaded: %v", err)
	}
	d := device.NewCPU(cpu.Default()).WithBLAS(o)
	for _, c := range []struct {
		n, v, budget int
		r, cols      int
	}{
		{1024, 50257, 0, 256, 50257},            // GPT-2's head: 51 MB
		{100, 50257, 0, 100, 50257},             // N rows
		{10, 1000, 0, 10, 1000},                 // a small call: ce.DefaultBudget holds it
		{1024, 256000, 0, 256, 256000},          // Gemma's: 262 MB, within 256 MiB
		{1024, 500000, 0, 134, 500000},          // 256 MiB: 134 rows
		{1024, 2000000, 0, 64, 2000000},         // 64 rows (512 MB), the shared default
		{1024, 50257, 16 << 20, 83, 50257},      // a budget set: 16 MiB
		{1024, 50257, 4 * 50257 * 10, 64, 7852}, // too few whole rows: 64 rows × tiles of the classes
	} {
		lin := &ce.Linear{H: ce.Matrix{Rows: c.n, Cols: 8}, W: ce.Matrix{Rows: c.v, Cols: 8}, Budget: c.budget}
		tg := make([]int32, c.n)
		pl := d.LinearPlan(lin, tg, true)
		require.Equal(t, [2]int{c.r, c.cols}, [2]int{pl.R, pl.C}, "N %d, V %d, budget %d", c.n, c.v, c.budget)
		require.Equal(t, c.budget, lin.Budget, "lin unchanged")
		g := device.NewCPU(cpu.Default()).WithBLAS(blas.Gonum())
		pg := g.LinearPlan(lin, tg, true)
		require.Equal(t, tiles.PlanOf(lin, tg), pg, "gonum: the shared default")
		require.Equal(t, pg, g.LinearPlan(lin, tg, false), "gonum: the same tiles without gradients")
	}
	lin := &ce.Linear{H: ce.Matrix{Rows: 1024, Cols: 768}, W: ce.Matrix{Rows: 50257, Cols: 768}}
	pl := d.LinearPlan(lin, make([]int32, 1024), false)
	require.Equal(t, [2]int{1024, 12564}, [2]int{pl.R, pl.C}, "without gradients: every row × the budget's classes")
}
