//go:build !unix

package npyfile

import "errors"

// Map is not available on this system: the caller reads with Rows.
func (f *File) Map() ([]float32, func() error, error) {
	return nil, nil, errors.New("mapping files is not supported here")
}

// MapF16 is Map for float16; mapping is not supported here.
func (f *File) MapF16() ([]uint16, func() error, error) {
	return nil, nil, errors.New("mapping files is not supported here")
}

// MapBF16 is Map for bfloat16; mapping is not supported here.
func (f *File) MapBF16() ([]uint16, func() error, error) {
	return nil, nil, errors.New("mapping files is not supported here")
}
