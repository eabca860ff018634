#!/usr/bin/env bash
# The bench figures to take on a machine with cores to pin (8 or more): max in rounds,
# chat at 2,000 req/s and stream at 500 streams/s, each with mockllm, the gateway or
# nginx, and the load generator on cores of their own. Not yet run on 16 cores; an
# estimate from the step count is 8 minutes there.
#
#   scripts/bench-pinned.sh [OUT_DIR] [harness flags...]
#
# OUT_DIR defaults to bench/results. GATEWAY_CORES (default 2) is the gateway's and
# nginx's share; the harness sizes mockllm's (--upstream-cores) and says when the
# machine has too few cores to pin. Runs `go run ./bench` where Go is installed;
# elsewhere (or with BENCH_BUNDLE=1) it unpacks bin/bench-bundle.tgz, which
# scripts/bench-bundle.sh builds for a machine without Go or nginx, and runs that.
# Extra flags go to every run and override the ones below.
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/results
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  out=$1
  shift
fi
gw=${GATEWAY_CORES:-2}

b=bin/bench-bundle
if command -v go >/dev/null && [ "${BENCH_BUNDLE:-0}" != 1 ]; then
  run=(go run ./bench) # builds from this checkout: never a stale bundle
else
  if [ -f "$b.tgz" ]; then
    rm -rf "$b"
    tar -C bin -xzf "$b.tgz"
  fi
  if [ ! -x "$b/bench" ]; then
    echo "bench-pinned: no Go here and no $b.tgz (build it with scripts/bench-bundle.sh)" >&2
    exit 1
  fi
  export LD_LIBRARY_PATH="$PWD/$b/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  run=("$b/bench" --tollgate-bin "$b/tollgate" --mockllm-bin "$b/mockllm" --nginx-bin "$b/nginx")
fi
# Descriptors for 256 connections per path and nginx's workers.
ulimit -n 65536 2>/dev/null || true

common=(--pin --gateway-cores "$gw" --out "$out" --quiet)
set -x
"${run[@]}" "${common[@]}" --scenario max --max-rounds 5 --step 1s --max-start 2000 "$@"
"${run[@]}" "${common[@]}" --scenario chat --rate 2000 --duration 10s "$@"
"${run[@]}" "${common[@]}" --scenario stream --rate 500 --duration 20s "$@"
