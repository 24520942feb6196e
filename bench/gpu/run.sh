#!/usr/bin/env bash
# bench/gpu/run.sh: xent's GPU checks and benchmarks in one call that fits a
# lease (15 minutes of device time, the machine's start included): about 5
# minutes, stage by stage, each under a time limit of its own, writing at
# most 8 files into $OUT (or .gpu/out):
#
#   env.txt       the GPU, its driver, `xent devices`, what each stage took
#   tune.txt      `xent tune` (coordinate descent over registers, work-group,
#                 unrolling, rows in flight, the gradient pass's direction,
#                 at 2048×50257 and 2048×256000, float32 and bfloat16,
#                 kernel-only; then the fused linear's path, CLBlast's (with
#                 its own Xgemm parameters and its entries for the A100,
#                 RTX 4090 and RTX 2080 Ti) or linear.cl's tiles, at
#                 2048×50257×768, and CLBlast's forward with and without
#                 wide tiles, XENT_OPENCL_WIDE), with the
#                 compiler's register counts
#   tuning.json   the best, as a tuning table: the later stages run with it
#                 (XENT_TUNING)
#   clblast_xgemm_1_32.json
#                 CLBlast's own tuner of its Xgemm kernel (stage blastune,
#                 asked for: clblast_tuner_xgemm's first search on a quarter
#                 of its 578 sets, every result timed), whose fastest set is
#                 a candidate of the tune stage and a path of the linear
#                 stage
#   tests.log     the binding's bounds test (which rule the driver applies to
#                 rectangular transfers) and the OpenCL suite, -short: the
#                 whole case table, PyTorch's golden values, the confident
#                 rows, the fused linear (its tiny tiles sampled), resident
#                 buffers, groups, shards, chunks
#   bench.jsonl   `xent bench`, kernel-only (logits resident), float32 and
#                 bfloat16, at 1024×50257, 4096×128256 and 8192×256000, with
#                 the device copy probe (one report a line), and 8×256000
#                 with rows split in up to 16 and 64 (XENT_OPENCL_SPLIT,
#                 lines {"split": N, "report": ...}), and 65536×1024 and
#                 16384×4096 at 1, 4 and 16 rows a work-group
#                 (XENT_OPENCL_PACK, lines {"pack": N, ...}); with the keep
#                 stage, fused rows of 1024×50257 kept whole in registers
#                 (XENT_OPENCL_RC at 256, 512 and 1024 work-items, lines
#                 {"keep": ...}); with the options stage, 8192×256000 with
#                 the row kernels built with -cl-denorms-are-zero and
#                 -Dexp=native_exp (XENT_OPENCL_OPTIONS, lines
#                 {"options": ...}); bench-old.jsonl
#                 the same from the commit before, run after each size
#                 (prepare.sh with XENT_GPU_OLD)
#   e2e.txt       end to end at 1024×50257 (host logits, transfers counted)
#                 with the calls' traces (XENT_OPENCL_TRACE), at the staging
#                 defaults, logits in pinned memory (batch.AllocHost), 16
#                 copying goroutines (XENT_OPENCL_COPY_THREADS) and the
#                 variants XENT_GPU_E2E names
#   peers.jsonl   PyTorch CUDA (bench/peers/pytorch_gpu.py) at the same sizes:
#                 F.cross_entropy forward and forward + backward, copy and sum
#                 probes; Liger and CCE where they import; with the linear
#                 stage F.linear + F.cross_entropy in float32 (TF32 off) and
#                 bfloat16 too, and F.linear_cross_entropy's chunked path
#                 where the torch has it
#   linear.jsonl  `xent bench --ops linear` at 1024×50257×768, 8192×128256×4096
#                 and 8192×256000×2304 (CCE's Gemma 2 shape), when asked for:
#                 CLBlast's path (with its database's parameters, the same
#                 with a 1 GiB budget, then with the blastune stage's
#                 parameters), linear.cl's kernels in tiles of 32
#                 and 64 (XENT_GPU_LINEAR names others), a line each;
#                 with the distill stage, a top-64 distillation at
#                 1024×50257×768 on CLBlast's path without and with the
#                 pick (XENT_OPENCL_PICK), with the pick and wide tiles
#                 for the passes without gradients (XENT_OPENCL_WIDE), and
#                 on linear.cl's tiles of 32
#
# The machine needs no Go toolchain: build here and carry .gpu/ (bench/gpu/
# prepare.sh does it: CGO_ENABLED=0 binaries, xz-compressed, Debian's ICD
# loader and CLBlast unpacked beside them). It finds libnvidia-opencl.so.1,
# writes an ICD directory and sets OCL_ICD_VENDORS (containers often lack the
# ICD file). XENT_GPU_STAGES (default "tune tests bench e2e peers"; blastune,
# keep, options, linear and distill too on request, in this order: blastune
# tune tests bench keep options e2e linear distill peers) picks stages; XENT_GPU_SPEC names the device (default: the first OpenCL GPU).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
bin=${XENT_GPU_BIN:-$root/.gpu}
out=${OUT:-$root/.gpu/out}
mkdir -p "$out"
stages=" ${XENT_GPU_STAGES:-tune tests bench e2e peers} "
t00=$SECONDS
log() { echo "$*" | tee -a "$out/env.txt"; }

# Unpack the carried binaries.
for f in "$bin"/*.xz; do
	[ -e "$f" ] && xz -dkf "$f" && chmod +x "${f%.xz}"
done
if [ ! -x "$bin/xent" ] || [ ! -x "$bin/opencl.test" ]; then
	command -v go >/dev/null || { echo "run.sh: no binaries in $bin and no Go toolchain to build them" >&2; exit 1; }
	bench/gpu/prepare.sh || exit 1
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
		log "ICD: $lib (OCL_ICD_VENDORS=$icd)"
	else
		log "ICD: no libnvidia-opencl.so.1 found; using the system's ICD files"
	fi
fi
# The ICD loader and CLBlast: the system's, else the carried ones.
if ! ldconfig -p 2>/dev/null | grep -q 'libOpenCL\.so\.1'; then
	loader=$(find "$bin" -name 'libOpenCL.so.1*' -type f 2>/dev/null | head -1)
	[ -n "$loader" ] && export XENT_OPENCL_LIB=$loader && log "loader: carried $loader"
fi
if ! ldconfig -p 2>/dev/null | grep -q 'libclblast\.so\.1'; then
	blast=$(find "$bin" -name 'libclblast.so.1*' -type f 2>/dev/null | head -1)
	[ -n "$blast" ] && export XENT_CLBLAST_LIB=$blast && log "CLBlast: carried $blast"
fi
export XENT_REQUIRE_OPENCL=1 XENT_REQUIRE_CLBLAST=1

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv | tee -a "$out/env.txt"
log "host: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), $(nproc) threads"
"$bin/xent" devices >>"$out/env.txt" 2>&1
gpu=${XENT_GPU_SPEC:-$(awk '/^opencl:/{spec=$1} /kind +gpu/{print spec; exit}' "$out/env.txt")}
log "GPU: ${gpu:-none}"
[ -n "$gpu" ] || { echo "run.sh: no OpenCL GPU" >&2; exit 1; }
spec=${gpu#opencl:}

# stage NAME LIMIT CMD...: runs CMD (a command, or a function of this
# script) in a shell of its own under a time limit, and says what it took.
export bin out gpu spec
status=0
stage() {
	local name=$1 limit=$2
	shift 2
	local t0=$SECONDS
	echo "== $name (limit ${limit} s)" >&2
	timeout --kill-after=5 "$limit" bash -o pipefail -c "$(printf '%q ' "$@")"
	local rc=$?
	[ "$rc" = 0 ] || status=1
	log "stage $name: $((SECONDS - t0)) s, exit $rc$([ "$rc" = 124 ] && echo ' (time limit)')"
}

if [[ $stages == *" blastune "* ]]; then
	# CLBlast's own tuner of its Xgemm kernel (clblast-utils'
	# clblast_tuner_xgemm), its first search only (GEMMK 0, a fixed set of
	# 578) on a random part of it (1/XENT_GPU_XGEMM_FRACTION, default 1/4),
	# at its 1024³. It goes on to its other searches once it has written
	# that search's file: it is stopped there. The file is a candidate of
	# the tune stage (--xgemm) and a path of the linear stage
	# (XENT_OPENCL_XGEMM=FILE.json).
	blastune() {
		local dir pid
		[ -x "$bin/clblast_tuner_xgemm" ] || { echo "no clblast_tuner_xgemm in $bin (prepare.sh)"; return 1; }
		dir=$(mktemp -d)
		(cd "$dir" && LD_LIBRARY_PATH="${XENT_OPENCL_LIB:+$(dirname "$XENT_OPENCL_LIB"):}${LD_LIBRARY_PATH:-}" \
			exec "$bin/clblast_tuner_xgemm" -platform "${spec%%:*}" -device "${spec##*:}" -precision 32 \
			-fraction "${XENT_GPU_XGEMM_FRACTION:-4}") >"$dir/tuner.txt" 2>&1 &
		pid=$!
		# The file ends with "}" once whole.
		while kill -0 "$pid" 2>/dev/null && [ "$(tail -n1 "$dir/clblast_xgemm_1_32.json" 2>/dev/null)" != "}" ]; do sleep 1; done
		kill "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
		[ "$(tail -n1 "$dir/clblast_xgemm_1_32.json" 2>/dev/null)" = "}" ] || { echo "the tuner wrote no file:"; tail -c 2000 "$dir/tuner.txt"; return 1; }
		cp "$dir/clblast_xgemm_1_32.json" "$out/"
		grep -a -E '^\* (Found|Exploring|Got|Best)' "$dir/tuner.txt" | tee -a "$out/env.txt"
	}
	export -f blastune
	stage blastune 90 blastune
fi
xtuned=
[ -s "$out/clblast_xgemm_1_32.json" ] && xtuned=$out/clblast_xgemm_1_32.json

if [[ $stages == *" tune "* ]]; then
	# xent tune by coordinate descent from today's default, the compiler's
	# register counts in its log; the best goes into $out/tuning.json,
	# which the later stages use (XENT_TUNING), the tests included.
	tune() {
		XENT_OPENCL_BUILD_LOG=1 XENT_TUNING="$out/tuning.json" "$bin/xent" tune --device "$gpu" --batch 2048 --vocab 50257,256000 \
			--dtype float32,bfloat16 --repeat 5 --regs 0,32,40,64 --wg 256,512,1024 --unroll 2,4,8 --unroll-half 2,4,8 \
			--flight 0,64 --rc 0 --rev 0,1 --linear 2048x50257x768 --lin-tile 0,16,32,64,64/8 --xgemm none,a100,rtx4090,rtx2080ti${xtuned:+,$xtuned} \
			--write >"$out/tune.txt" 2>&1
		local rc=$?
		grep -E '^(best|xent tune|lin_tile)' "$out/tune.txt"
		return $rc
	}
	export -f tune
	export xtuned
	stage tune 150 tune
	[ -s "$out/tuning.json" ] && export XENT_TUNING="$out/tuning.json" && log "tuning: $(tr -d '\n' <"$out/tuning.json")"
fi

if [[ $stages == *" tests "* ]]; then
	tests() {
		(cd device/opencl/internal/cl && "$bin/cl.test" -test.v -test.count=1 -test.run 'TestRectBounds|TestBufferChecks') >"$out/tests.log" 2>&1
		local a=$?
		(cd device/opencl && XENT_TEST_OPENCL=$spec "$bin/opencl.test" -test.v -test.short -test.count=1) >>"$out/tests.log" 2>&1
		local b=$?
		# what the driver is: its compiler's warnings (TestBuildWarnings),
		# whether it flushes subnormals, its work-item limits
		grep -E '^(--- FAIL|ok|FAIL|PASS)|the driver, given|the compiler warns|subnormals flushed|work-items \[' "$out/tests.log" | head -40
		grep -E '^--- (PASS|FAIL)' "$out/tests.log" | awk '{n[$2]++} END {for (k in n) printf "%s %d\n", k, n[k]}'
		[ $a = 0 ] && [ $b = 0 ]
	}
	export -f tests
	stage tests 90 tests
fi

if [[ $stages == *" bench "* ]]; then
	bench() {
		: >"$out/bench.jsonl"
		[ -x "$bin/xent-old" ] && : >"$out/bench-old.jsonl"
		local size
		for size in "1024 50257" "4096 128256" "8192 256000"; do
			set -- $size
			"$bin/xent" bench --batch "$1" --vocab "$2" --dtype float32,bfloat16 --device "$gpu" --mode kernel --repeat 5 --json | tr -d '\n' >>"$out/bench.jsonl" || return 1
			echo >>"$out/bench.jsonl"
			# The commit before the change, right after, at the same size.
			if [ -x "$bin/xent-old" ]; then
				"$bin/xent-old" bench --batch "$1" --vocab "$2" --dtype float32,bfloat16 --device "$gpu" --mode kernel --repeat 5 --json | tr -d '\n' >>"$out/bench-old.jsonl" || return 1
				echo >>"$out/bench-old.jsonl"
			fi
		done
		# Few rows: 8 work-groups on a device of many compute units; then
		# split over several a row (XENT_OPENCL_SPLIT, opt-in, never timed
		# on a GPU before), each its own line {"split": N, "report": ...}.
		"$bin/xent" bench --batch 8 --vocab 256000 --dtype float32,bfloat16 --device "$gpu" --mode kernel --repeat 5 --json | tr -d '\n' >>"$out/bench.jsonl" || return 1
		echo >>"$out/bench.jsonl"
		local sp
		for sp in 16 64; do
			printf '{"split": %d, "report": ' "$sp" >>"$out/bench.jsonl"
			XENT_OPENCL_SPLIT=$sp "$bin/xent" bench --batch 8 --vocab 256000 --dtype float32,bfloat16 --device "$gpu" --mode kernel --repeat 5 --json | tr -d '\n' >>"$out/bench.jsonl" || return 1
			echo "}" >>"$out/bench.jsonl"
		done
		# Short rows: one work-group a row, then several rows a work-group
		# (XENT_OPENCL_PACK, opt-in, never timed on a GPU before), each its
		# own line {"pack": N, "report": ...}.
		local pk
		for size in "65536 1024" "16384 4096"; do
			set -- $size
			for pk in 1 4 16; do
				printf '{"pack": %d, "report": ' "$pk" >>"$out/bench.jsonl"
				XENT_OPENCL_PACK=$pk "$bin/xent" bench --batch "$1" --vocab "$2" --dtype float32,bfloat16 --device "$gpu" --mode kernel --repeat 5 --json | tr -d '\n' >>"$out/bench.jsonl" || return 1
				echo "}" >>"$out/bench.jsonl"
			done
		done
	}
	export -f bench
	stage bench 150 bench
fi

if [[ $stages == *" keep "* ]]; then
	# A fused row kept whole in registers between its two passes (RC
	# float4s a work-item: rows of up to 4·RC·WG columns are read once, so
	# forward + backward is one read and one write): at 1024×50257 that
	# takes RC 25 at 512 work-items, 50 at 256, 13 at 1024. Never timed on a
	# GPU (its tuning table has rc 0; the tune stage tries rc 0 only; RC 16
	# at 256 kept no row of 50257 and was 25% slower). Lines
	# {"keep": "...", "report": ...} appended to bench.jsonl.
	keep() {
		local v envs
		for v in XENT_OPENCL_WG=512,XENT_OPENCL_RC=25 XENT_OPENCL_WG=256,XENT_OPENCL_RC=50 XENT_OPENCL_WG=1024,XENT_OPENCL_RC=13 XENT_OPENCL_WG=512,XENT_OPENCL_RC=25,XENT_OPENCL_REGS=128; do
			IFS=, read -ra envs <<<"$v"
			printf '{"keep": "%s", "report": ' "$v" >>"$out/bench.jsonl"
			env "${envs[@]}" "$bin/xent" bench --ops fused --batch 1024 --vocab 50257 --dtype float32,bfloat16 --device "$gpu" --mode kernel --repeat 5 --json | tr -d '\n' >>"$out/bench.jsonl" || return 1
			echo "}" >>"$out/bench.jsonl"
		done
	}
	export -f keep
	stage keep 45 keep
fi

if [[ $stages == *" options "* ]]; then
	# Why bfloat16 is not 1.6× float32: at 8192×256000 both ran at about
	# 1.1·10^12 logits a second on the H200 (forward 1.81 against 1.99 ms),
	# as if each logit's instructions, not its bytes, were the bound. The
	# row kernels built with -cl-denorms-are-zero (exp without the
	# denormal path) and with -Dexp=native_exp (the hardware's exp2 alone:
	# less exact, an experiment only) say how much of it is exp
	# (XENT_OPENCL_OPTIONS). Lines {"options": "...", "report": ...}
	# appended to bench.jsonl.
	options() {
		local o
		for o in "" "-cl-denorms-are-zero" "-Dexp=native_exp" "-cl-denorms-are-zero -Dexp=native_exp"; do
			printf '{"options": "%s", "report": ' "$o" >>"$out/bench.jsonl"
			XENT_OPENCL_OPTIONS=$o "$bin/xent" bench --ops lse,fused --batch 8192 --vocab 256000 --dtype float32,bfloat16 --device "$gpu" --mode kernel --repeat 5 --json | tr -d '\n' >>"$out/bench.jsonl" || return 1
			echo "}" >>"$out/bench.jsonl"
		done
	}
	export -f options
	stage options 45 options
fi

if [[ $stages == *" e2e "* ]]; then
	# Host logits end to end (transfers counted), with the calls' own
	# account of their time (XENT_OPENCL_TRACE): the staging defaults, then
	# logits in batch.AllocHost's pinned memory (no staging copies; never
	# timed on a GPU before), chunks of 256 MiB, no staging, the commit
	# before.
	e2e() {
		local v x
		for v in ${XENT_GPU_E2E:-default XENT_BENCH_PINNED=1 XENT_OPENCL_COPY_THREADS=16 XENT_OPENCL_CHUNK_MIB=256 XENT_OPENCL_PINNED=0 old}; do
			x=$bin/xent
			[ "$v" = old ] && { x=$bin/xent-old; [ -x "$x" ] || continue; }
			echo "== $v"
			local envs=(XENT_OPENCL_TRACE=1)
			[[ $v == *=* ]] && envs+=("$v")
			env "${envs[@]}" "$x" bench --batch 1024 --vocab 50257 --dtype float32,bfloat16 --device "$gpu" \
				--ops lse,fused --mode end-to-end --repeat 3 2>&1 | grep -E 'trace|end-to-end'
		done >"$out/e2e.txt" 2>&1
		grep -E '^==|end-to-end' "$out/e2e.txt"
	}
	export -f e2e
	stage e2e 60 e2e
fi

if [[ $stages == *" linear "* ]]; then
	# CLBlast's path (LIN_TILE=0, whatever the tuning says) with its
	# database's parameters, the same with a budget of 1 GiB (--budget:
	# chunks of 1024 rows of 50257 classes, 2093 of 128256, where the
	# default's are 83 and 64: on a 2-core CPU with OpenBLAS 256 rows made
	# forward + backward 0.8× the time; a GPU's Sgemm of 83 rows may lose
	# more), then with the blastune stage's fastest set, then linear.cl's
	# kernels (opt-in, never timed on a GPU before) in tiles of 32 and 64, and
	# of 64 with 8 × 8 entries a work-item (LIN_REG=8), shape by shape: one
	# line {"path": ..., "report": xent bench's JSON} each. A path is
	# comma-separated environment assignments and xent bench flags (--...).
	linear() {
		: >"$out/linear.jsonl"
		local shape v
		for shape in "1024 50257 768 3" "8192 128256 4096 1" "8192 256000 2304 1"; do
			set -- $shape
			for v in ${XENT_GPU_LINEAR:-XENT_OPENCL_LIN_TILE=0,XENT_OPENCL_XGEMM=none XENT_OPENCL_LIN_TILE=0,XENT_OPENCL_XGEMM=none,--budget=1073741824 ${xtuned:+XENT_OPENCL_LIN_TILE=0,XENT_OPENCL_XGEMM=$xtuned} XENT_OPENCL_LIN_TILE=32 XENT_OPENCL_LIN_TILE=64 XENT_OPENCL_LIN_TILE=64,XENT_OPENCL_LIN_REG=8}; do
				local parts envs=() flags=()
				IFS=, read -ra parts <<<"$v"
				for p in "${parts[@]}"; do
					if [[ $p == --* ]]; then flags+=("$p"); else envs+=("$p"); fi
				done
				printf '{"path": "%s", "report": ' "$v" >>"$out/linear.jsonl"
				env "${envs[@]}" "$bin/xent" bench --ops linear --batch "$1" --vocab "$2" --hidden "$3" --device "$gpu" --repeat "$4" "${flags[@]}" --json | tr -d '\n' >>"$out/linear.jsonl" || return 1
				echo "}" >>"$out/linear.jsonl"
			done
		done
	}
	export -f linear
	export xtuned
	stage linear 240 linear
fi

if [[ $stages == *" distill "* ]]; then
	# A fused linear's top-64 distillation at 1024×50257×768
	# (linear-fused-distill beside the plain passes): CLBlast's path with the
	# student's logits computed apart on the host (the default) and picked
	# from its tiles (XENT_OPENCL_PICK=1, opt-in, never timed on a GPU), the
	# same with the passes without gradients in wide tiles
	# (XENT_OPENCL_WIDE=1, opt-in, untimed: its linear-forward line against
	# the first two's), and linear.cl's tiles of 32 (which always pick);
	# lines {"distill": path, "report": ...} appended to linear.jsonl.
	distill() {
		local v envs
		for v in XENT_OPENCL_LIN_TILE=0,XENT_OPENCL_PICK=0 XENT_OPENCL_LIN_TILE=0,XENT_OPENCL_PICK=1 XENT_OPENCL_LIN_TILE=0,XENT_OPENCL_PICK=1,XENT_OPENCL_WIDE=1 XENT_OPENCL_LIN_TILE=32; do
			IFS=, read -ra envs <<<"$v"
			printf '{"distill": "%s", "report": ' "$v" >>"$out/linear.jsonl"
			env "${envs[@]}" "$bin/xent" bench --ops linear --batch 1024 --vocab 50257 --hidden 768 --teacher-k 64 --device "$gpu" --repeat 3 --json | tr -d '\n' >>"$out/linear.jsonl" || return 1
			echo "}" >>"$out/linear.jsonl"
		done
	}
	export -f distill
	stage distill 120 distill
fi

if [[ $stages == *" peers "* ]]; then
	# The fused linear's shapes only with the linear stage.
	# (PyTorch's own F.linear_cross_entropy, chunked, where its torch has
	# it, beside F.linear + F.cross_entropy: 15 s more.)
	lin= limit=50
	[[ $stages == *" linear "* ]] && lin="--linear 1024x50257x768,8192x128256x4096,8192x256000x2304 --linear-repeat 2" limit=65
	stage peers $limit python3 bench/peers/pytorch_gpu.py --sizes 1024x50257,4096x128256,8192x256000,65536x1024,16384x4096 --dtypes float32,bfloat16 \
		$lin --repeat 7 >"$out/peers.jsonl"
fi

log "total: $((SECONDS - t00)) s"
exit $status
