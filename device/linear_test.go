package device_test

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/cpu"
	"github.com/xentlab/xent/device"
	"github.com/xentlab/xent/device/blas"
	"github.com/xentlab/xent/internal/spec"
)

// linearCPUs returns a CPU device for every BLAS this host has (gonum
// always, OpenBLAS where it loads; XENT_REQUIRE_BLAS=1 makes its absence a
// failure, as CI does) and the fastest row kernel, plus the portable
// kernel on gonum.
func linearCPUs(t *testing.T) map[string]*device.CPUDevice {
	devs := map[string]*device.CPUDevice{
		"gonum":          device.NewCPU(cpu.Default).WithBLAS(blas.Gonum()),
		"gonum/portable": device.NewCPU(cpu.Portable).WithBLAS(blas.Gonum()),
	}
	if o, err := blas.OpenBLAS(); err == nil {
		devs["openblas"] = device.NewCPU(cpu.Default).WithBLAS(o)
	} else if os.Getenv("XENT_REQUIRE_BLAS") == "1" {
		t.Fatalf("XENT_REQUIRE_BLAS=1: %v", err)
	} else {
		t.Logf("OpenBLAS not tested: %v", err)
	}
	return devs
}

func TestLinearCPU(t *testing.T) {
	for name, d := range linearCPUs(t) {
		t.Run(name, func(t *testing.T) { spec.RunLinear(t, d, 1e-5) })
	}
}

func TestLinearGoldenCPU(t *testing.T) {
	for name, d := range linearCPUs(t) {
		t.Run(name, func(t *testing.T) { spec.RunLinearGolden(t, d, 1e-5) })
	}
}

func TestLinearShardsCPU(t *testing.T) {
	for name, d := range linearCPUs(t) {
		t.Run(name, func(t *testing.T) { spec.RunLinearShards(t, d, 1e-5) })
	}
}

func TestLinearCaps(t *testing.T) {
	require.True(t, device.NewCPU(cpu.Default).Caps().Linear)
	g, err := device.NewGroup(device.SplitRows, device.NewCPU(cpu.Default))
	require.NoError(t, err)
	require.False(t, g.Caps().Linear)
	require.ErrorIs(t, g.LinearPartials(t.Context(), nil, &device.Linear{}, nil, &device.Problem{}), device.ErrNotImplemented)
}
