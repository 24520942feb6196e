// Package opencl is the OpenCL back end of xent: a [device.Device] that
// runs the kernels of package [kernels] on any OpenCL 1.2 device, through
// the run-time loaded binding in internal/cl (no cgo), and, where CLBlast
// loads, a [device.FusedLinear].
//
// # Selection
//
// Importing the package registers it with package [device] (the xent
// command does, unless built with the noopencl tag): [device.Open]("opencl") takes the first GPU or accelerator, else the
// first OpenCL device of any kind; "opencl:P:D" takes device D of platform
// P (as `xent devices` numbers them); "auto" takes the first GPU or
// accelerator and falls back to the CPU (Go) device, saying why in
// [device.Info].Note. A CPU
// OpenCL device such as PoCL is used only when named.
//
// # Data
//
// The host-slice API (CrossEntropy, LogSumExp) copies the logits in, runs
// the kernel and copies the results out. Matrices larger than what one
// buffer may hold (CL_DEVICE_MAX_MEM_ALLOC_SIZE, a quarter of global
// memory) are split into row chunks, double-buffered on two queues so that
// the upload of chunk k+1 overlaps the kernel of chunk k. Resident buffers
// (Upload) keep logits on the device for training loops: forward and
// backward run many times and only what is needed is read back.
//
// # Fused linear
//
// The fused linear cross-entropy ([ce.Linear]) runs the loop of package
// internal/tiles over a tile of logits in a device buffer: CLBlast's
// products and xent.cl's row kernels on one in-order queue, the call's
// buffers made once, the host waiting only where the loop needs a value
// (a tiled vocabulary's partials, the gradient filter's block maxima) and
// at the end. Half-precision H and W are widened on the host. Without
// CLBlast, [device.LinearOf] runs it on the CPU, and Info().Note says so.
//
// A Device is safe for concurrent use: calls, a fused linear call whole,
// and the Release of its buffers are serialized by one lock.
// Programs are built once per device and cached by (device, driver
// version, source hash, build options).
package opencl
