// Package dl opens a shared library at run time and finds its symbols,
// without cgo: dlopen and dlsym through purego on Linux, Android, macOS,
// FreeBSD and NetBSD; LoadLibrary and GetProcAddress on Windows. The
// functions found are bound with purego.RegisterFunc, which calls them
// in the system's C calling convention on each of those.
//
// Names lists the files a library is tried as on this system, for the
// libraries xent loads: the OpenCL ICD loader, CLBlast and a CBLAS.
package dl

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
)

// ErrUnsupported is returned (wrapped) by Open on a system where xent
// loads no library.
var ErrUnsupported = errors.New("loading a shared library is not supported on " + runtime.GOOS)

// A Library is a library's names on each system: the file names (or
// paths) it is tried as, in order.
type Library struct {
	Unix    []string // Linux, Android, FreeBSD, NetBSD
	Darwin  []string
	Windows []string
}

// The libraries xent loads.
var (
	// OpenCL is the ICD loader (vendor libraries such as libpocl.so do
	// not export the cl* names; on macOS, Apple's framework is one).
	OpenCL = Library{
		Unix:    []string{"libOpenCL.so.1", "libOpenCL.so"},
		Darwin:  []string{"/System/Library/Frameworks/OpenCL.framework/OpenCL"},
		Windows: []string{"OpenCL.dll"},
	}
	// CLBlast is CLBlast's C API.
	CLBlast = Library{
		Unix:    []string{"libclblast.so.1", "libclblast.so"},
		Darwin:  []string{"libclblast.dylib", "/opt/homebrew/lib/libclblast.dylib", "/usr/local/lib/libclblast.dylib"},
		Windows: []string{"clblast.dll"},
	}
	// BLAS is a CBLAS with cblas_sgemm: OpenBLAS (Debian's
	// libopenblas0-pthread), on macOS Apple's Accelerate too.
	BLAS = Library{
		Unix: []string{"libopenblas.so.0", "libopenblas.so"},
		Darwin: []string{"/System/Library/Frameworks/Accelerate.framework/Accelerate",
			"/opt/homebrew/opt/openblas/lib/libopenblas.dylib", "/usr/local/opt/openblas/lib/libopenblas.dylib"},
		Windows: []string{"libopenblas.dll", "openblas.dll"},
	}
)

// Names returns the names l is tried as on goos (runtime.GOOS).
func (l Library) Names(goos string) []string {
	switch goos {
	case "windows":
		return l.Windows
	case "darwin", "ios":
		return l.Darwin
	}
	return l.Unix
}

// OpenFirst opens the first of l's names on this system that loads, or
// the file name (a path, or a name the system's loader searches) where
// it is not "" (an environment variable's). It returns the name it
// opened; its error names every name tried and why each failed.
func OpenFirst(l Library, name string) (h uintptr, opened string, err error) {
	names := l.Names(runtime.GOOS)
	if name != "" {
		names = []string{name}
	}
	var why []string
	for _, n := range names {
		h, err := Open(n)
		if err == nil {
			return h, n, nil
		}
		why = append(why, err.Error())
	}
	return 0, "", errors.New(strings.Join(why, "; "))
}

// Open opens the library name: a path, or a file name the system's
// loader searches for (LD_LIBRARY_PATH and the cache on Linux, PATH and
// the system directories on Windows).
func Open(name string) (uintptr, error) {
	h, err := open(name)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	return h, nil
}

// Sym returns the address of the symbol name in the library h, or an
// error: a missing symbol is never address 0.
func Sym(h uintptr, name string) (uintptr, error) {
	p, err := sym(h, name)
	if err == nil && p == 0 {
		err = errors.New("address 0")
	}
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	return p, nil
}
