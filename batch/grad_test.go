package batch_test

import (
	"reflect"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/batch"
	"github.com/xentlab/xent/cpu"
	"github.com/xentlab/xent/device"
)

// TestGradIsNotAMatrix: a gradient destination and an input matrix are
// types that do not convert into each other, so that a call with the two
// swapped (ForwardBackward(ctx, x, g, …)) does not compile, for logits,
// shards and the fused linear.
func TestGradIsNotAMatrix(t *testing.T) {
	matrix, grad := reflect.TypeFor[batch.Matrix](), reflect.TypeFor[batch.Grad]()
	require.False(t, matrix.AssignableTo(grad))
	require.False(t, grad.AssignableTo(matrix))
	require.False(t, matrix.ConvertibleTo(grad))
	for name, f := range map[string]any{
		"Loss.ForwardBackward": (*batch.Loss).ForwardBackward,
		"Loss.Backward":        (*batch.Loss).Backward,
	} {
		ft := reflect.TypeOf(f)
		// receiver, ctx, grad, x
		require.Equal(t, grad, ft.In(2), "%s: the destination", name)
		require.Equal(t, matrix, ft.In(3), "%s: the logits", name)
	}
	lg := reflect.TypeFor[batch.LinearGrads]()
	for _, field := range []string{"H", "W"} {
		f, ok := lg.FieldByName(field)
		require.True(t, ok)
		require.Equal(t, grad, f.Type, "LinearGrads.%s", field)
	}
	x := batch.NewMatrix(make([]float32, 6), 2, 3)
	require.Equal(t, x, batch.InPlace(x).Matrix())
	require.Equal(t, x, batch.GradInto(x).Matrix())
	require.Equal(t, x, batch.NewGrad(x.Data, 2, 3).Matrix())
	h := batch.NewHalfMatrix(make([]uint16, 6), batch.BF16, 2, 3)
	require.Equal(t, h, batch.NewHalfGrad(h.Half, batch.BF16, 2, 3).Matrix())
}

// TestAllocHost: a device without pinned memory gives a dense matrix of
// the Go heap, in each type; sizes below 0 and other types are errors
// naming them.
func TestAllocHost(t *testing.T) {
	dev := device.NewCPU(cpu.Default())
	for _, typ := range []batch.DType{batch.F32, batch.BF16, batch.F16} {
		m, free, err := batch.AllocHost(dev, 3, 5, typ)
		require.NoError(t, err)
		require.Equal(t, 3, m.Rows)
		require.Equal(t, 5, m.Stride)
		require.Equal(t, typ, m.Type)
		require.Equal(t, 15, len(m.Data)+len(m.Half))
		require.NoError(t, free())
	}
	_, _, err := batch.AllocHost(dev, -1, 5, batch.F32)
	require.ErrorIs(t, err, batch.ErrShape)
	_, _, err = batch.AllocHost(dev, 1, 5, batch.DType(9))
	require.ErrorIs(t, err, batch.ErrOption)
}
