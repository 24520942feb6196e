#!/usr/bin/env bash
# Times bench/simdslow built without and with GOEXPERIMENT=simd, and with
# the experiment plus GODEBUG=asyncpreemptoff=1, on this machine; its
# arguments go to each (-n, the loop's count).
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/plain" ./bench/simdslow
GOEXPERIMENT=simd go build -o "$tmp/simd" ./bench/simdslow
echo "$(go version), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), AVX-512F: $(grep -qw avx512f /proc/cpuinfo && echo yes || echo no)"
printf '%-48s ' "normal build:"; "$tmp/plain" "$@"
printf '%-48s ' "GOEXPERIMENT=simd:"; "$tmp/simd" "$@"
printf '%-48s ' "GOEXPERIMENT=simd, GODEBUG=asyncpreemptoff=1:"; GODEBUG=asyncpreemptoff=1 "$tmp/simd" "$@"
