//go:build !unix

package tensorfile

import "os"

// load reads the file: mapping is not supported here.
func load(path string) ([]byte, func(), error) {
	b, err := os.ReadFile(path)
	return b, func() {}, err
}
