package device_test

import (
	"testing"

	"github.com/xentlab/xent/cpu"
	"github.com/xentlab/xent/device"
	"github.com/xentlab/xent/internal/spec"
)

func TestSpecCPU(t *testing.T) {
	impls := []*cpu.Impl{cpu.Portable}
	if cpu.SIMD != nil {
		impls = append(impls, cpu.SIMD)
	}
	for _, impl := range impls {
		t.Run(impl.Name(), func(t *testing.T) { spec.Run(t, device.NewCPU(impl), 1e-5) })
	}
}
