//go:build !unix && !windows

package mapped

import "os"

// Supported reports whether this system maps files.
const Supported = false

func mapFile(*os.File, int, bool) ([]byte, func() error, error) { return nil, nil, ErrUnsupported }
