package opencl

// Test hooks for the external test package.

func SetRowBase(d *Device, n uint64) { d.rowBase = n }

func ChunkRowsOf(d *Device, rows, cols, stride int) (int, error) {
	return d.chunkRows(rows, cols, stride)
}
