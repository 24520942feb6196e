// Package opencl is the OpenCL back end of xent.
package opencl
