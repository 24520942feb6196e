package device_test

import (
	"testing"

	"github.com/xentlab/xent/cpu"
	"github.com/xentlab/xent/device"
	"github.com/xentlab/xent/internal/spec"
)

// impls returns the row kernels the CPU tests run: every one this CPU
// has, or under -short (the race detector's run, which is after the
// concurrency, the same for every kernel) the default one alone; the full
// run checks each.
func impls() []*cpu.Impl {
	if testing.Short() {
		return []*cpu.Impl{cpu.Default()}
	}
	return cpu.Impls()
}

func TestSpecCPU(t *testing.T) {
	for _, impl := range impls() {
		t.Run(impl.Name(), func(t *testing.T) { spec.Run(t, device.NewCPU(impl), 1e-5) })
	}
}

func TestGoldenCPU(t *testing.T) {
	for _, impl := range impls() {
		if impl == nil {
			continue
		}
		t.Run(impl.Name(), func(t *testing.T) {
			spec.RunGolden(t, device.NewCPU(impl), 1e-5)
			spec.RunDistillGolden(t, device.NewCPU(impl), 1e-5)
		})
	}
}

func TestResidentCPU(t *testing.T) { spec.RunResident(t, device.NewCPU(cpu.Default()), 1e-5) }

func TestConcurrentCPU(t *testing.T) { spec.RunConcurrent(t, device.NewCPU(cpu.Default())) }

func TestNoGrowthCPU(t *testing.T) { spec.RunNoGrowth(t, device.NewCPU(cpu.Default())) }

// TestGroupCPU: a group of two CPU devices passes the shared table.
func TestGroupCPU(t *testing.T) {
	g, err := device.NewGroup(device.SplitRows, device.NewCPU(cpu.Portable()), device.NewCPU(cpu.Default()))
	if err != nil {
		t.Fatal(err)
	}
	spec.Run(t, g, 1e-5)
}

func TestPast2p31CPU(t *testing.T) { spec.RunPast2p31(t, device.NewCPU(cpu.Default())) }

// TestShardsCPU: vocabulary shards' partials merged give the unsplit loss
// and each shard's Backward the unsplit gradient, for every kernel.
func TestShardsCPU(t *testing.T) {
	for _, impl := range impls() {
		if impl != nil {
			t.Run(impl.Name(), func(t *testing.T) { spec.RunShards(t, device.NewCPU(impl), 1e-5) })
		}
	}
}

// TestDistillCPU: top-k distillation (batch.Distill) against the float64
// reference, for every kernel, and through a group that splits the
// vocabulary.
func TestDistillCPU(t *testing.T) {
	for _, impl := range impls() {
		if impl != nil {
			t.Run(impl.Name(), func(t *testing.T) { spec.RunDistill(t, device.NewCPU(impl), 1e-5) })
		}
	}
	g, err := device.NewGroup(device.SplitColumns, device.NewCPU(cpu.Portable()), device.NewCPU(cpu.Default()))
	if err != nil {
		t.Fatal(err)
	}
	t.Run("group", func(t *testing.T) { spec.RunDistill(t, g, 1e-5) })
	t.Run("shards", func(t *testing.T) { spec.RunDistillShards(t, device.NewCPU(cpu.Default()), 1e-5) })
	t.Run("resident", func(t *testing.T) { spec.RunDistillResident(t, device.NewCPU(cpu.Default())) })
}

// TestGroupColumnsCPU: a group of two CPU devices that splits the
// vocabulary passes the shared table.
func TestGroupColumnsCPU(t *testing.T) {
	g, err := device.NewGroup(device.SplitColumns, device.NewCPU(cpu.Portable()), device.NewCPU(cpu.Default()))
	if err != nil {
		t.Fatal(err)
	}
	spec.Run(t, g, 1e-5)
}
