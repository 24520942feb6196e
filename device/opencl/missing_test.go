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
// fails with ErrNotAvailable, "auto" falls back to the CPU and says why
// in its Info, writing nothing to stderr.
func TestMissingLibrary(t *testing.T) {
	if os.Getenv("XENT_MISSING_CHILD") == "1" {
		_, err := device.Open("opencl")
		if !errors.Is(err, device.ErrNotAvailable) {
			t.Fatalf("opencl: %v is not ErrNotAvailable", err)
		}
		d, err := device.Open("auto")
		if err != nil || d.Info().Backend != "cpu" {
			t.Fatalf("auto: %v, %v", d, err)
		}
		if n := d.Info().Note; !strings.Contains(n, "auto: no GPU or accelerator (opencl: ") {
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
