package device

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/ce"
	"github.com/xentlab/xent/cpu"
)

// noLinear is a device without the fused linear (OpenCL without CLBlast).
type noLinear struct{ Device }

func (d noLinear) Caps() Caps {
	c := d.Device.Caps()
	c.Linear = false
	return c
}

// TestLinearFallback: LinearOf gives a device without its own fused
// linear the CPU's, which computes it, and a device with one its own.
func TestLinearFallback(t *testing.T) {
	c := NewCPU(cpu.Default())
	require.Same(t, c, LinearOf(c).(*CPUDevice))
	inner := noLinear{c}
	f := LinearOf(inner)
	require.Same(t, fallback(), f.(*CPUDevice))
	require.Contains(t, FallbackBLAS(), "the CPU's")
	h := ce.Matrix{Data: []float32{1, 2, 3, 4}, Rows: 2, Cols: 2, Stride: 2}
	w := ce.Matrix{Data: []float32{1, 0, 0, 1, 1, 1}, Rows: 3, Cols: 2, Stride: 2}
	out := ce.Out{Loss: make([]float32, 2)}
	for range 2 {
		require.NoError(t, f.LinearCrossEntropy(context.Background(), out, nil, &ce.Linear{H: h, W: w}, []int32{0, 2}, &ce.Problem{}))
	}
	require.Greater(t, out.Loss[0], float32(0))
}
