package tensorfile

import (
	"os"

	"github.com/xentlab/xent/internal/mapped"
)

// load maps the file read-only (the pages come from the page cache as
// they are touched) and returns its bytes and a function that unmaps them.
// An empty file, a file that is not a regular one, and any file on a
// system that maps none, are read.
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
	if size == 0 || int64(int(size)) != size || !st.Mode().IsRegular() || !mapped.Supported {
		b, err := os.ReadFile(path)
		return b, func() {}, err
	}
	b, unmap, err := mapped.Map(f, int(size), false)
	if err != nil {
		return nil, nil, err
	}
	return b, func() { _ = unmap() }, nil
}
