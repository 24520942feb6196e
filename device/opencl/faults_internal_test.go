package opencl

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/xentlab/xent/device/opencl/internal/cl"
)

// handles returns the OpenCL devices for this package's internal tests;
// with XENT_REQUIRE_OPENCL=1 none fails the test, otherwise it skips.
func handles(t *testing.T) []handle {
	t.Helper()
	hs, err := enumerate()
	if err != nil || len(hs) == 0 {
		if os.Getenv("XENT_REQUIRE_OPENCL") == "1" {
			t.Fatalf("XENT_REQUIRE_OPENCL=1 but no OpenCL device: %v", err)
		}
		t.Skipf("no OpenCL device: %v", err)
	}
	return hs
}

// TestBuildError: a program that does not compile returns a *BuildError
// naming the status, carrying the options and the compiler's log, and
// leaves no object behind.
func TestBuildError(t *testing.T) {
	hs := handles(t)
	before := cl.Live()
	ctx, err := cl.CreateContext(hs[0].dev)
	if err != nil {
		t.Fatal(err)
	}
	_, err = cl.BuildProgram(ctx, hs[0].dev, "__kernel void broken(__global float *x) { x[0] = undefined_name; }", "-DWG=64")
	var be *BuildError
	if !errors.As(err, &be) {
		t.Fatalf("want a *cl.BuildError, got %v", err)
	}
	if be.Status != -11 || !strings.Contains(err.Error(), "CL_BUILD_PROGRAM_FAILURE (-11)") || !strings.Contains(be.Log, "undefined_name") || be.Options != "-DWG=64" {
		t.Fatalf("build error lacks status, log or options: %v", err)
	}
	if err := ctx.Release(); err != nil {
		t.Fatal(err)
	}
	if cl.Live() != before {
		t.Fatalf("live objects %d, want %d", cl.Live(), before)
	}
}

// TestStatusNames: status codes become errors that name them, and the
// device-loss codes are wrapped as such.
func TestStatusNames(t *testing.T) {
	for st, want := range map[cl.Status]string{-5: "CL_OUT_OF_RESOURCES (-5)", -4: "CL_MEM_OBJECT_ALLOCATION_FAILURE (-4)", -9999: "CL_UNKNOWN_ERROR (-9999)"} {
		if st.Error() != want {
			t.Errorf("%d: %q, want %q", int32(st), st.Error(), want)
		}
	}
	d := &Device{h: handle{name: "test device"}}
	err := d.wrap(cl.Status(-5))
	if !strings.Contains(err.Error(), "device lost or out of resources") || !errors.Is(err, cl.Status(-5)) {
		t.Errorf("lost device: %v", err)
	}
	var st Status // the exported name users match with errors.As
	if !errors.As(err, &st) || st != -5 || !st.Lost() {
		t.Errorf("errors.As(%v, *opencl.Status) gives %v", err, st)
	}
}
