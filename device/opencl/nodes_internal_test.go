package opencl

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestGPUNode: each kind of node in gpuNodes makes gpuNode true; none, or
// only a CPU's and a disk's, false, naming the folder.
func TestGPUNode(t *testing.T) {
	if runtime.GOOS != "linux" && runtime.GOOS != "android" {
		if ok, _ := gpuNode(); !ok {
			t.Fatal("gpuNode is false off Linux")
		}
		t.Skip("device nodes are looked for on Linux and Android only")
	}
	defer func(old string) { devRoot = old }(devRoot)
	nodes := func(names ...string) string {
		dir := t.TempDir()
		for _, n := range names {
			p := filepath.Join(dir, n)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	for _, n := range []string{"dri/renderD128", "dri/card0", "nvidia0", "nvidiactl", "kfd", "dxg", "kgsl-3d0", "mali0", "pvr_sync", "galcore", "accel/accel0", "xclmgmt256", "intel-fpga-port.0", "acla10_ref0"} {
		devRoot = nodes("cpu/0/msr", "vda", n)
		if ok, why := gpuNode(); !ok {
			t.Errorf("%s: no node found (%s)", n, why)
		}
	}
	devRoot = nodes("cpu/0/msr", "vda", "null", "dri.txt/x")
	ok, why := gpuNode()
	if ok || !strings.Contains(why, "no device node of a GPU in "+devRoot+",") || !strings.Contains(why, "--device opencl loads it") {
		t.Errorf("without a node: %v, %q", ok, why)
	}
}
