package opencl_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/xentlab/xent/device"
	"github.com/xentlab/xent/device/opencl"
)

// TestMissingLibrary runs this test binary again with XENT_OPENCL_LIB
// pointing nowhere (the library is loaded once per process): "opencl"
// fails with ErrNotAvailable, "auto" falls back to the CPU and says why
// in its Info, writing nothing to stderr. Where no GPU device node is
// there, "auto" does not even try the library: its note says so, and not
// the library's error.
func TestMissingLibrary(t *testing.T) {
	if os.Getenv("XENT_MISSING_CHILD") == "1" {
		if runtime.GOOS == "linux" || runtime.GOOS == "android" { // where "auto" looks for device nodes (elsewhere it loads the library)
			opencl.SetDevRoot(t.TempDir()) // no node: the library is not loaded
			d, err := device.Open("auto")
			if err != nil || d.Info().Backend != "cpu" {
				t.Fatalf("auto without a node: %v, %v", d, err)
			}
			if n := d.Info().Note; !strings.Contains(n, "auto: no GPU or accelerator (opencl: no device node of a GPU in ") ||
				!strings.Contains(n, "so OpenCL was not loaded") || strings.Contains(n, "no OpenCL library") {
				t.Fatalf("auto's note %q does not say that it loaded nothing", n)
			}
			fakeGPUNode(t)
		}
		_, err := device.Open("opencl")
		if !errors.Is(err, device.ErrNotAvailable) {
			t.Fatalf("opencl: %v is not ErrNotAvailable", err)
		}
		d, err := device.Open("auto")
		if err != nil || d.Info().Backend != "cpu" {
			t.Fatalf("auto: %v, %v", d, err)
		}
		if n := d.Info().Note; !strings.Contains(n, "auto: no GPU or accelerator (opencl: ") || !strings.Contains(n, "no OpenCL library") {
			t.Fatalf("auto's note %q does not say why", n)
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestMissingLibrary$", "-test.v")
	cmd.Env = append(os.Environ(), "XENT_MISSING_CHILD=1", "XENT_OPENCL_LIB=/nonexistent/libOpenCL.so.1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || !strings.Contains(string(out), "PASS") {
		t.Fatalf("child: %v\n%s%s", err, out, stderr.String())
	}
	if stderr.Len() > 0 {
		t.Fatalf("the library wrote to stderr: %q", stderr.String())
	}
}

// TestSimulatorNotChosen runs this test binary again with Oclgrind as the
// OpenCL library (a simulator that says its device is of every type,
// CPU included) and a GPU's device node: "auto" and "all" pass it by for
// the CPU ("auto" saying why); a bare "opencl", with no other device, and its
// number still open it, with its GPU defaults.
func TestSimulatorNotChosen(t *testing.T) {
	rt := os.Getenv("XENT_OCLGRIND_RT")
	if rt == "" {
		rt = "/usr/lib/oclgrind/liboclgrind-rt.so"
	}
	if os.Getenv("XENT_SIM_CHILD") == "1" {
		if runtime.GOOS == "linux" || runtime.GOOS == "android" {
			fakeGPUNode(t)
		}
		for _, spec := range []string{"auto", "all"} {
			d, err := device.Open(spec)
			if err != nil || d.Info().Backend != "cpu" {
				t.Fatalf("%s: %v, %v: not the CPU", spec, d, err)
			}
			if n := d.Info().Note; spec == "auto" && !strings.Contains(n, `only gpu (a simulator: it says it is a CPU too; auto and all pass it by) "Oclgrind Simulator"`) {
				t.Fatalf("%s's note %q does not say why", spec, n)
			}
			d.Close()
		}
		for _, spec := range []string{"opencl", "opencl:0:0"} {
			d, err := device.Open(spec)
			if err != nil || d.Info().Backend != "opencl" || d.Info().Kind != "gpu" {
				t.Fatalf("%s: %v, %v", spec, d, err)
			}
			d.Close()
		}
		return
	}
	if _, err := os.Stat(rt); err != nil {
		if os.Getenv("XENT_REQUIRE_OPENCL") == "1" {
			t.Fatalf("XENT_REQUIRE_OPENCL=1 and no Oclgrind runtime at %s (apt-get install oclgrind)", rt)
		}
		t.Skipf("no Oclgrind runtime at %s", rt)
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestSimulatorNotChosen$", "-test.v")
	cmd.Env = append(os.Environ(), "XENT_SIM_CHILD=1", "XENT_OPENCL_LIB="+rt)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || !strings.Contains(string(out), "PASS") {
		t.Fatalf("child: %v\n%s%s", err, out, stderr.String())
	}
}

// fakeGPUNode makes "auto" see a GPU's device node (dri/renderD128 in a
// directory of its own).
func fakeGPUNode(t *testing.T) {
	nodes := t.TempDir()
	if err := os.Mkdir(filepath.Join(nodes, "dri"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(nodes, "dri", "renderD128"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	opencl.SetDevRoot(nodes)
}
