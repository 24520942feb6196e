#!/usr/bin/env bash
# bench/gpu/prepare.sh: builds what bench/gpu/run.sh runs on a GPU machine
# that has no Go toolchain, into .gpu/ (ignored by git): the xent command
# and the OpenCL test binaries (CGO_ENABLED=0, xz-compressed), Debian's
# ICD loader and CLBlast unpacked, and CLBlast's tuner of its Xgemm kernel
# (clblast-utils' clblast_tuner_xgemm, xz-compressed; CLBlast and its tuner
# need only libOpenCL and the C++ runtime, which such a machine has).
# Carry .gpu/ with the tree.
#
# XENT_GPU_OLD=COMMIT also builds that commit's xent as .gpu/xent-old, for
# run.sh's side-by-side benchmarks of a change (the bench stage).
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .gpu
CGO_ENABLED=0 go build -o .gpu/xent ./cmd/xent
rm -f .gpu/xent-old .gpu/xent-old.xz
if [ -n "${XENT_GPU_OLD:-}" ]; then
	old=$(mktemp -d)
	git worktree add -f --detach "$old" "$XENT_GPU_OLD" >/dev/null
	(cd "$old" && CGO_ENABLED=0 go build -o "$OLDPWD/.gpu/xent-old" ./cmd/xent)
	git worktree remove --force "$old"
	xz -6 -T0 -f .gpu/xent-old
fi
CGO_ENABLED=0 go test -c -o .gpu/opencl.test ./device/opencl
CGO_ENABLED=0 go test -c -o .gpu/cl.test ./device/opencl/internal/cl
for b in xent opencl.test cl.test; do
	xz -6 -T0 -f ".gpu/$b"
done
cd .gpu
rm -rf icd clblast ./*.deb
apt-get download -qq ocl-icd-libopencl1 libclblast1 clblast-utils 2>/dev/null
dpkg -x ocl-icd-libopencl1_*.deb icd
dpkg -x libclblast1_*.deb clblast
# CLBlast's own tuner of its Xgemm kernel (run.sh's blastune stage).
dpkg --fsys-tarfile clblast-utils_*.deb | tar -xO ./usr/bin/clblast_tuner_xgemm >clblast_tuner_xgemm
chmod +x clblast_tuner_xgemm
xz -6 -f clblast_tuner_xgemm
rm -f ./*.deb
# The libraries under their sonames, as files (links do not travel).
lib=usr/lib/x86_64-linux-gnu
mv -f "icd/$lib/libOpenCL.so.1.0.0" "icd/$lib/libOpenCL.so.1"
mv -f "clblast/$lib/libclblast.so.1.5.3" "clblast/$lib/libclblast.so.1"
rm -rf icd/usr/share clblast/usr/share
du -sh .
