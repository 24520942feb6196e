package dl

import (
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// system is a library every system of its kind has, and a function it
// exports.
func system(t *testing.T) (lib, fn string) {
	switch runtime.GOOS {
	case "windows":
		return "kernel32.dll", "GetTickCount"
	case "darwin":
		return "/usr/lib/libSystem.B.dylib", "strlen"
	case "linux":
		return "libc.so.6", "strlen"
	}
	t.Skipf("no known system library on %s", runtime.GOOS)
	return "", ""
}

// TestOpen: a system library opens and its function is found; a missing
// function and a missing library are errors naming them, never address 0.
func TestOpen(t *testing.T) {
	lib, fn := system(t)
	h, err := Open(lib)
	require.NoError(t, err)
	p, err := Sym(h, fn)
	require.NoError(t, err)
	require.NotZero(t, p)
	_, err = Sym(h, "xent_no_such_function")
	require.ErrorContains(t, err, "xent_no_such_function")
	_, err = Open("xent-no-such-library.so")
	require.ErrorContains(t, err, "xent-no-such-library.so")
}

// TestOpenFirst: the first of the names that loads; a name given (an
// environment variable's) alone; an error naming every name tried.
func TestOpenFirst(t *testing.T) {
	lib, _ := system(t)
	l := Library{Unix: []string{"xent-missing-1", lib}, Darwin: []string{"xent-missing-1", lib}, Windows: []string{"xent-missing-1", lib}}
	_, opened, err := OpenFirst(l, "")
	require.NoError(t, err)
	require.Equal(t, lib, opened)
	_, _, err = OpenFirst(l, "xent-missing-2")
	require.ErrorContains(t, err, "xent-missing-2")
	require.NotContains(t, err.Error(), lib, "the name given alone")
	l = Library{Unix: []string{"xent-missing-1", "xent-missing-2"}, Darwin: []string{"xent-missing-1", "xent-missing-2"}, Windows: []string{"xent-missing-1", "xent-missing-2"}}
	_, _, err = OpenFirst(l, "")
	require.Error(t, err)
	require.True(t, strings.Contains(err.Error(), "xent-missing-1") && strings.Contains(err.Error(), "xent-missing-2"), "%v", err)
}

// TestNames: each system's names for each library xent loads.
func TestNames(t *testing.T) {
	require.Equal(t, "libOpenCL.so.1", OpenCL.Names("linux")[0])
	require.Equal(t, "libOpenCL.so.1", OpenCL.Names("freebsd")[0])
	require.Equal(t, "OpenCL.dll", OpenCL.Names("windows")[0])
	require.Contains(t, OpenCL.Names("darwin")[0], "OpenCL.framework")
	require.Equal(t, "libopenblas.so.0", BLAS.Names("linux")[0])
	require.Contains(t, BLAS.Names("darwin")[0], "Accelerate.framework")
	require.Equal(t, "libopenblas.dll", BLAS.Names("windows")[0])
	require.Equal(t, "libclblast.so.1", CLBlast.Names("linux")[0])
	require.Equal(t, "clblast.dll", CLBlast.Names("windows")[0])
}
