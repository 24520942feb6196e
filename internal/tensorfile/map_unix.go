//go:build unix

package tensorfile

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// load maps the file read-only (the pages come from the page cache as
// they are touched) and returns its bytes and a function that unmaps them.
// An empty file is read (it cannot be mapped).
func load(path string) ([]byte, func(), error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	size := st.Size()
	if size == 0 || int64(int(size)) != size || !st.Mode().IsRegular() {
		b, err := os.ReadFile(path)
		return b, func() {}, err
	}
	b, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: mmap: %w", path, err)
	}
	_ = unix.Madvise(b, unix.MADV_WILLNEED)
	return b, func() { _ = unix.Munmap(b) }, nil
}
