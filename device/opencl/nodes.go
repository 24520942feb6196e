package opencl

import (
	"path/filepath"
	"runtime"
)

// devRoot is where gpuNode looks for device nodes (a variable for tests).
var devRoot = "/dev"

// gpuNodes are the device nodes, under devRoot, that the drivers of GPUs
// and accelerators make on Linux: DRM (Intel, AMD, NVIDIA's open module,
// Xilinx's XRT, most embedded GPUs), NVIDIA's own, AMD's compute (KFD),
// WSL2's GPU (dxg), Qualcomm's Adreno (kgsl), Arm's Mali, Imagination's
// PowerVR, Vivante's, the kernel's accelerator class, and the FPGA cards'
// of AMD and Intel.
var gpuNodes = []string{"dri/*", "nvidia*", "kfd", "dxg", "kgsl*", "mali*", "pvr*", "galcore", "accel/*", "xclmgmt*", "intel-fpga*", "acl*"}

// gpuNode reports whether the system may have an OpenCL GPU or
// accelerator, and if not, why: on Linux and Android, whether one of
// gpuNodes is there. Listing the platforms loads every OpenCL driver
// installed, whatever its devices, and a CPU's (PoCL, with LLVM) takes
// about 25 ms to load: where no GPU or accelerator node exists, "auto"
// takes the CPU without it. Elsewhere it is always true.
func gpuNode() (bool, string) {
	if runtime.GOOS != "linux" && runtime.GOOS != "android" {
		return true, ""
	}
	for _, p := range gpuNodes {
		if m, _ := filepath.Glob(filepath.Join(devRoot, p)); len(m) > 0 {
			return true, ""
		}
	}
	return false, "no device node of a GPU in " + devRoot + ", so OpenCL was not loaded (--device opencl loads it)"
}
