// Package mapped maps a file into memory, read-only: mmap on Unix
// systems, a view of a file mapping on Windows. The pages come from the
// system's file cache as they are touched; nothing is copied.
package mapped

import (
	"errors"
	"os"
	"runtime"
)

// ErrUnsupported is returned by Map on a system that maps no files (the
// caller reads instead).
var ErrUnsupported = errors.New("mapping files is not supported on " + runtime.GOOS)

// Map maps the first size bytes of f, size > 0 and at most f's length,
// and returns them and a function that unmaps them. The bytes are
// read-only: a write faults. Sequential tells the system that they will
// be read in order (Unix: madvise). f may be closed once mapped.
func Map(f *os.File, size int, sequential bool) ([]byte, func() error, error) {
	if size <= 0 {
		return nil, nil, errors.New("nothing to map")
	}
	return mapFile(f, size, sequential)
}
