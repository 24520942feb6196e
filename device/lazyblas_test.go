package device_test

import (
	"context"
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/batch"
	"github.com/xentlab/xent/cpu"
	"github.com/xentlab/xent/device"
	"github.com/xentlab/xent/device/blas"
)

// TestLazyBLAS: a CPU device loads no BLAS for the row kernels (its Info
// says when one is chosen), and blas.Default's at its first fused linear,
// which its Info then names. In a process of its own (the test binary run
// again), as the choice is the process's.
func TestLazyBLAS(t *testing.T) {
	if os.Getenv("XENT_LAZY_BLAS_CHILD") != "1" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestLazyBLAS$", "-test.count=1")
		cmd.Env = append(os.Environ(), "XENT_LAZY_BLAS_CHILD=1")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		require.Contains(t, string(out), "PASS")
		return
	}
	ctx := context.Background()
	dev := device.NewCPU(cpu.Default())
	require.Nil(t, blas.Chosen(), "nothing loaded before any call")
	l, err := batch.New(dev)
	require.NoError(t, err)
	x := batch.NewMatrix([]float32{1, 2, 3, 4, 5, 6}, 2, 3)
	_, err = l.Forward(ctx, x, []int32{0, 2})
	require.NoError(t, err)
	require.Nil(t, blas.Chosen(), "the row kernels load no BLAS")
	require.Contains(t, dev.Info().BLAS, "chosen at the first fused linear")

	lin, err := batch.NewLinear(dev)
	require.NoError(t, err)
	h, w := batch.NewMatrix([]float32{1, 0, 0, 1}, 2, 2), batch.NewMatrix([]float32{1, 2, 3, 4, 5, 6}, 3, 2)
	_, err = lin.Forward(ctx, h, w, nil, []int32{0, 2})
	require.NoError(t, err)
	b, _ := blas.Default()
	require.Equal(t, b, blas.Chosen(), "chosen at the first fused linear")
	require.Equal(t, b.Name(), dev.Info().BLAS)
}
