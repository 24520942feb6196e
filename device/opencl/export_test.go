package opencl

import "github.com/xentlab/xent/device/opencl/internal/cl"

// Test hooks for the external test package.

func SetRowBase(d *Device, n uint64) { d.rowBase = n }

func SetMaxGroups(d *Device, n int) { d.maxGroups = n }

// SetSplit makes every call of d split its rows in about n (rows.cl's
// FOR_SPLITS), whatever their number; 0 restores the tuning's rule.
func SetSplit(d *Device, n int) { d.forceSplit = n }

// SetPack makes every call of d run at its tuning's Pack rows a
// work-group, whatever the columns (rows.cl's FOR_ROWS with PACK > 1).
func SetPack(d *Device, on bool) { d.forcePack = on }

// Packed reports whether a call of d has run the kernels of several rows
// a work-group.
func Packed(d *Device) bool {
	d.p.packMu.Lock()
	defer d.p.packMu.Unlock()
	_, ok := d.p.packed[d.packs()]
	return ok
}

// Kept returns the OpenCL objects d keeps from call to call (its staging
// buffers): what Live counts beyond the calls' own.
func Kept(d *Device) int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	var n int64
	for _, st := range d.stages {
		if st != nil {
			n++
		}
	}
	return n
}

func ChunkRowsOf(d *Device, rows, cols, stride int) (int, error) {
	return d.chunkRows(rows, cols, stride, 4)
}

// MaxWG returns the largest work-group size the kernels may be built with
// on d's OpenCL device.
func MaxWG(d *Device) (int, error) { return maxWG(d.h) }

// WG returns the work-group size d's kernels were built with.
func WG(d *Device) int { return d.p.tn.WG }

// Pinned returns the number of transfers whose host memory is still
// pinned, process-wide.
func Pinned() int64 { return cl.Pinned() }

// HostWaits returns the host's waits for the device so far, process-wide.
func HostWaits() int64 { return cl.HostWaits() }

// BlastOverride sets CLBlast's parameters of kernel on d's OpenCL device.
func BlastOverride(d *Device, kernel string, m map[string]int) error {
	return cl.BlastOverride(d.h.dev, kernel, m)
}

// SetDevRoot makes "auto" look for GPU device nodes under dir (see
// gpuNode).
func SetDevRoot(dir string) { devRoot = dir }
