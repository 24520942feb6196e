//go:build !unix

package npyfile

import "errors"

// Map is not available on this system: the caller reads with Rows.
func (f *File) Map() ([]float32, func() error, error) {
	return nil, nil, errors.New("mapping files is not supported here")
}
