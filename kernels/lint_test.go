package kernels

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestLint compiles Source and LinearSource with clang's -Wall -Wextra
// -Werror (syntax and semantics only, OpenCL C 1.2), at defines the
// device's builds use: the row kernels at the GPU's and the CPU's
// default tunings, rows kept in registers, every ALIGN, packed rows, and
// linear.cl's tiles (with none of the row kernels' defines, as it is
// built). The OpenCL build option -Werror turns on only a
// compiler's default warnings, and each vendor's compiler has its own
// (NVIDIA's counted four where PoCL's clang counted three): a source
// clean under clang's wider set gives them fewer places to differ.
// opencl.TestBuildWarnings builds the same sources on the runtimes.
//
// Debian's PoCL depends on clang, so CI (XENT_REQUIRE_OPENCL=1) has
// one; elsewhere the test is skipped without it.
func TestLint(t *testing.T) {
	clang := ""
	for _, name := range []string{"clang", "clang-15", "clang-16", "clang-17", "clang-18", "clang-19", "clang-14"} {
		if p, err := exec.LookPath(name); err == nil {
			clang = p
			break
		}
	}
	if clang == "" {
		if os.Getenv("XENT_REQUIRE_OPENCL") == "1" {
			t.Fatal("XENT_REQUIRE_OPENCL=1 but no clang on PATH (Debian's pocl-opencl-icd brings clang-15)")
		}
		t.Skip("no clang on PATH")
	}
	const flags = "-DF_SMOOTH=1 -DF_WEIGHTS=2 -DF_SOFTCAP=4 -DF_ZLOSS=8 -DF_TEMP=16"
	rows := []string{
		"-DWG=256 -DUNROLL=2 -DUNROLL_HALF=2 -DRC=0 -DREV=1 -DALIGN=0",
		"-DWG=64 -DUNROLL=1 -DUNROLL_HALF=1 -DRC=8 -DREV=1 -DALIGN=1 -DFMA_W=16",
		"-DWG=1 -DUNROLL=1 -DUNROLL_HALF=2 -DRC=8 -DREV=0 -DALIGN=3",
		"-DWG=128 -DUNROLL=8 -DUNROLL_HALF=16 -DRC=64 -DREV=1 -DALIGN=2",
		"-DWG=256 -DUNROLL=4 -DUNROLL_HALF=8 -DRC=0 -DREV=1 -DALIGN=1 -DPACK=4",
	}
	dir := t.TempDir()
	lint := func(name, src, defines string) {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		args := append([]string{"-x", "cl", "-cl-std=CL1.2", "-Xclang", "-finclude-default-header",
			"-fsyntax-only", "-Wall", "-Wextra", "-Werror"}, strings.Fields(flags+" "+defines)...)
		out, err := exec.Command(clang, append(args, path)...).CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Errorf("%s with %s: %v\n%s", name, defines, err, out)
		}
	}
	for _, d := range rows {
		lint("Source.cl", Source, d)
	}
	for _, tile := range []string{"-DLT=16 -DLR=4", "-DLT=32 -DLR=4", "-DLT=64 -DLR=4", "-DLT=64 -DLR=8"} {
		lint("LinearSource.cl", LinearSource, "-DLK=8 "+tile) // the row kernels' tuning at xent.cl's defaults, as device/opencl builds it
	}
}
