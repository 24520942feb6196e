package opencl

import "unsafe"

// boolBytes views a []bool as the bytes the kernel writes (0 or 1): Go
// stores a bool as one byte holding 0 or 1.
func boolBytes(b []bool) []byte {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&b[0])), len(b))
}
