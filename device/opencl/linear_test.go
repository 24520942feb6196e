package opencl_test

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/cpu"
	"github.com/xentlab/xent/device"
	"github.com/xentlab/xent/device/opencl"
	"github.com/xentlab/xent/internal/spec"
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
	linearTest(t, func(t *testing.T) { spec.RunLinearFilter(t, openTest(t)) })
}

// TestLinearConfidentOpenCL: confident rows through the fused linear (see
// spec.RunLinearConfident).
func TestLinearConfidentOpenCL(t *testing.T) {
	linearTest(t, func(t *testing.T) { spec.RunLinearConfident(t, openTest(t)) })
}
