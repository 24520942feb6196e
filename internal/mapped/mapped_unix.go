//go:build unix

package mapped

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Supported reports whether this system maps files.
const Supported = true

func mapFile(f *os.File, size int, sequential bool) ([]byte, func() error, error) {
	b, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: mmap: %w", f.Name(), err)
	}
	if sequential {
		_ = unix.Madvise(b, unix.MADV_SEQUENTIAL)
	}
	_ = unix.Madvise(b, unix.MADV_WILLNEED)
	return b, func() error { return unix.Munmap(b) }, nil
}
