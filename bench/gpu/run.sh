#!/usr/bin/env bash
# bench/gpu/run.sh: xent's OpenCL tests and benchmarks on a GPU host, in
# one go. On a lent NVIDIA machine it finds libnvidia-opencl.so.1, writes
# an ICD directory and sets OCL_ICD_VENDORS (containers often lack the ICD
# file), uses a carried ICD loader when libOpenCL.so.1 is absent, runs the
# OpenCL tests and benchmarks and prints a short table. Logs go to $OUT
# (or .gpu/out).
#
# The machine needs no Go toolchain: build here and carry .gpu/:
#   mkdir -p .gpu && CGO_ENABLED=0 go build -o .gpu/xent ./cmd/xent
#   CGO_ENABLED=0 go test -c -o .gpu/opencl.test ./device/opencl
#   (cd .gpu && apt-get download ocl-icd-libopencl1 && dpkg -x ocl-icd-libopencl1_*.deb icd)
#   (cd .gpu && apt-get download libclblast1 && dpkg -x libclblast1_*.deb clblast)
# (CLBlast needs only libOpenCL and the C++ runtime, which the host has.)
# With Go on the host and no binaries, it builds them itself.
# XENT_GPU_STAGES=tests stops after the tests; XENT_GPU_TUNE=1 adds a
# work-group × unrolling sweep; XENT_LONG=1 adds the 8.6 GB test past 2^31
# elements.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
bin=${XENT_GPU_BIN:-$root/.gpu}
out=${OUT:-$root/.gpu/out}
mkdir -p "$out"

if [ ! -x "$bin/xent" ] || [ ! -x "$bin/opencl.test" ]; then
	command -v go >/dev/null || { echo "run.sh: no binaries in $bin and no Go toolchain to build them" >&2; exit 1; }
	mkdir -p "$bin"
	CGO_ENABLED=0 go build -o "$bin/xent" ./cmd/xent || exit 1
	CGO_ENABLED=0 go test -c -o "$bin/opencl.test" ./device/opencl || exit 1
fi

# NVIDIA's OpenCL driver, as an ICD vendor.
if [ -z "${OCL_ICD_VENDORS:-}" ]; then
	lib=$(ldconfig -p 2>/dev/null | awk '/libnvidia-opencl\.so\.1/{print $NF; exit}')
	[ -n "$lib" ] || lib=$(find /usr/local/nvidia /usr/lib /usr/lib64 /usr/lib/x86_64-linux-gnu -name 'libnvidia-opencl.so.1' 2>/dev/null | head -1)
	if [ -n "$lib" ]; then
		icd=$(mktemp -d)
		echo "$lib" >"$icd/nvidia.icd"
		export OCL_ICD_VENDORS=$icd
		export LD_LIBRARY_PATH="$(dirname "$lib")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
		echo "ICD: $lib (OCL_ICD_VENDORS=$icd)"
	else
		echo "ICD: no libnvidia-opencl.so.1 found; using the system's ICD files"
	fi
fi
# The ICD loader: the system's, else a carried one.
if ! ldconfig -p 2>/dev/null | grep -q 'libOpenCL\.so\.1'; then
	loader=$(find "$bin" -name 'libOpenCL.so.1*' -type f 2>/dev/null | head -1)
	if [ -n "$loader" ]; then
		export XENT_OPENCL_LIB=$loader
		echo "loader: carried $loader"
	fi
fi
# CLBlast for the fused linear: the system's, else a carried one.
if ! ldconfig -p 2>/dev/null | grep -q 'libclblast\.so\.1'; then
	blast=$(find "$bin" -name 'libclblast.so.1*' -type f 2>/dev/null | head -1)
	if [ -n "$blast" ]; then
		export XENT_CLBLAST_LIB=$blast
		echo "CLBlast: carried $blast"
	fi
fi
export XENT_TESTDATA="$root/testdata" XENT_REQUIRE_OPENCL=1

command -v nvidia-smi >/dev/null && nvidia-smi -L
echo "== xent devices"
"$bin/xent" devices | tee "$out/devices.txt"
# The GPU, and the CPU variants of this binary, for the benchmarks.
gpu=$(awk '/^opencl:/{spec=$1} /kind +gpu/{print spec; exit}' "$out/devices.txt")
# Every CPU variant this host runs ("kernel avx512 (available: portable, avx2, avx512)").
devs=$(sed -n 's/.*available: \([^)]*\)).*/\1/p' "$out/devices.txt" | head -n 1 | sed 's/ //g; s/\([a-z0-9]*\)/cpu:\1/g')
[ -n "$devs" ] || devs="cpu:portable"
[ -n "$gpu" ] && devs="$devs,$gpu"
echo "benchmarked devices: $devs"

echo "== OpenCL tests (first GPU or accelerator)"
(cd "$root/device/opencl" && "$bin/opencl.test" -test.v -test.count=1 2>&1) >"$out/tests.log"
status=$?
grep -E '^(--- |ok|FAIL|PASS)|opencl_test.go:[0-9]+: device' "$out/tests.log"
echo "tests: exit $status"

if [ "${XENT_GPU_STAGES:-all}" = tests ]; then
	exit $status
fi

echo "== go test -bench (kernel-only and end-to-end)"
(cd "$root/device/opencl" && "$bin/opencl.test" -test.run XXX -test.bench OpenCL -test.benchtime 5x 2>&1) | tee "$out/gobench.txt" | grep -E '^Benchmark'

# The half-precision issue's sizes, float32 and bfloat16 side by side:
# kernel-only against the device copy probe, end to end against the
# pinned host→device probe.
for size in "1024 50257" "4096 128256" "8192 256000"; do
	set -- $size
	echo "== xent bench --batch $1 --vocab $2 --dtype float32,bfloat16 --device $devs"
	"$bin/xent" bench --batch "$1" --vocab "$2" --dtype float32,bfloat16 --device "$devs" --repeat 7 --json >"$out/bench_${1}x${2}.json"
done
echo "== vocabulary sweep"
"$bin/xent" bench --batch 1024 --sweep vocab=8192,32000,50257,128256,256000 --device "$devs" --ops lse,fused --repeat 5 --plot "$out/sweep.svg" --json >"$out/sweep.json"

# The fused linear on the GPU (CLBlast) against the CPU: GPT-2 small's
# head, Llama 3's, and CCE's Gemma 2 shape (8192 × 256000 × 2304).
if [ -n "$gpu" ]; then
	for shape in "1024 50257 768" "8192 128256 4096" "8192 256000 2304"; do
		set -- $shape
		echo "== xent bench --ops linear --batch $1 --vocab $2 --hidden $3 --device $gpu"
		"$bin/xent" bench --ops linear --batch "$1" --vocab "$2" --hidden "$3" --device "$gpu" --repeat 3 --json >"$out/linear_${1}x${2}x${3}.json" 2>"$out/linear_${1}x${2}x${3}.err"
		grep -E '"op"|"seconds_med"|"gflops"' "$out/linear_${1}x${2}x${3}.json" | paste - - - | sed 's/[",]//g'
	done
fi

if [ "${XENT_GPU_TUNE:-0}" = 1 ]; then
	# Work-group size and unrolling of the GPU kernels, kernel-only times.
	echo "== tuning $gpu"
	for size in "1024 50257" "4096 32000"; do
		set -- $size
		for wg in 128 256 512 1024; do
			for un in 1 2 4; do
				for rc in 0 16 32; do # the registers a fused row keeps (4·rc·wg columns read once)
					XENT_OPENCL_WG=$wg XENT_OPENCL_UNROLL=$un XENT_OPENCL_RC=$rc "$bin/xent" bench --batch "$1" --vocab "$2" --device "$gpu" --ops lse,fused --repeat 5 --json 2>/dev/null |
						awk -v wg=$wg -v un=$un -v rc=$rc -v sz="$1x$2" '/"op"/{op=$2} /"mode"/{mode=$2} /"gbps"/{if (mode ~ /kernel/) printf "tune %s wg=%d unroll=%d rc=%d %s %s GB/s\n", sz, wg, un, rc, op, $2}'
				done
			done
		done
	done | tee "$out/tune.txt"
fi
exit $status
