//go:build !(darwin || freebsd || linux || netbsd || android || windows)

package dl

func open(string) (uintptr, error) { return 0, ErrUnsupported }

func sym(uintptr, string) (uintptr, error) { return 0, ErrUnsupported }
