package device

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/cpu"
)

// noLinear is a device without the fused linear (OpenCL without CLBlast).
type noLinear struct{ Device }

func (d noLinear) Caps() Caps {
	c := d.Device.Caps()
	c.Linear = false
	return c
}

// TestLinearFallback: what Open("auto") and Open("all") return for a
// device without the fused linear runs it on the CPU, says so in its
// Info, and is the same device as the one inside (whose buffers batch
// accepts).
func TestLinearFallback(t *testing.T) {
	inner := noLinear{NewCPU(cpu.Default)}
	d := linearOnCPU(inner)
	require.True(t, d.Caps().Linear)
	require.True(t, Same(d, inner))
	require.Contains(t, d.Info().Note, "runs on the CPU")
	require.Empty(t, inner.Info().Note)
	h := Matrix{Data: []float32{1, 2, 3, 4}, Rows: 2, Cols: 2, Stride: 2}
	w := Matrix{Data: []float32{1, 0, 0, 1, 1, 1}, Rows: 3, Cols: 2, Stride: 2}
	out := Out{Loss: make([]float32, 2)}
	for range 2 {
		require.NoError(t, d.LinearCrossEntropy(context.Background(), out, nil, &Linear{H: h, W: w}, []int32{0, 2}, &Problem{}))
	}
	require.Greater(t, out.Loss[0], float32(0))
}
