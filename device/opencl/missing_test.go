package opencl_test

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/xentlab/xent/device"
)

// TestMissingLibrary runs this test binary again with XENT_OPENCL_LIB
// pointing nowhere (the library is loaded once per process): "opencl"
// fails with ErrNotAvailable, "auto" falls back to the CPU and logs why.
func TestMissingLibrary(t *testing.T) {
	if os.Getenv("XENT_MISSING_CHILD") == "1" {
		var logged []string
		device.Logf = func(f string, a ...any) { logged = append(logged, f) }
		_, err := device.Open("opencl")
		if !errors.Is(err, device.ErrNotAvailable) {
			t.Fatalf("opencl: %v is not ErrNotAvailable", err)
		}
		d, err := device.Open("auto")
		if err != nil || d.Info().Backend != "cpu" {
			t.Fatalf("auto: %v, %v", d, err)
		}
		if len(logged) != 1 {
			t.Fatalf("auto logged %d lines, want 1", len(logged))
		}
		device.Open("auto")
		if len(logged) != 1 {
			t.Fatal("auto logs its fallback once")
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestMissingLibrary$", "-test.v")
	cmd.Env = append(os.Environ(), "XENT_MISSING_CHILD=1", "XENT_OPENCL_LIB=/nonexistent/libOpenCL.so.1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "PASS") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}
