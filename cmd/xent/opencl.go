//go:build !noopencl

package main

// The OpenCL back end: device.Open("opencl"), "auto" and "all" find GPUs
// through it. Build with -tags noopencl for a binary without it.
import _ "github.com/xentlab/xent/device/opencl"
