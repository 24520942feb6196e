package opencl

import (
	"context"
	"fmt"

	"github.com/xentlab/xent/device"
)

// errLinear is the error of the fused linear operations, which the OpenCL
// device does not have yet: callers fall back to the CPU with errors.Is
// (device.ErrNotImplemented).
var errLinear = fmt.Errorf("opencl: %w: no fused linear cross-entropy on OpenCL yet (the CPU has it)", device.ErrNotImplemented)

// LinearCrossEntropy implements device.Device (ErrNotImplemented).
func (d *Device) LinearCrossEntropy(context.Context, device.Out, *device.LinearGrad, *device.Linear, []int32, *device.Problem) error {
	return errLinear
}

// LinearPartials implements device.Device (ErrNotImplemented).
func (d *Device) LinearPartials(context.Context, []device.Partial, *device.Linear, []int32, *device.Problem) error {
	return errLinear
}

// LinearBackward implements device.Device (ErrNotImplemented).
func (d *Device) LinearBackward(context.Context, device.LinearGrad, *device.Linear, []int32, []device.Partial, *device.Problem) error {
	return errLinear
}
