// Package opencl is the OpenCL back end of xent: a device.Device that runs
// the kernels of package kernels on any OpenCL 1.2 device, through the
// run-time loaded binding in internal/cl (no cgo).
//
// # Selection
//
// Importing the package registers it with package device (package batch
// does): device.Open("opencl") takes the first GPU or accelerator, else the
// first OpenCL device of any kind; "opencl:P:D" takes device D of platform
// P (as `xent devices` numbers them); "auto" takes the first GPU or
// accelerator and falls back to the CPU (Go) device, logging why. A CPU
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
// A Device is safe for concurrent use: calls are serialized on its queues.
// Programs are built once per device and cached by (device, driver
// version, source hash, build options).
package opencl
