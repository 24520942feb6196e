package opencl_test

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"

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
	linearTest(t, func(t *testing.T) { spec.RunLinearGolden(t, openTest(t), 1e-5) })
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
