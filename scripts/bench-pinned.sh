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
#
# SET picks what runs: `main` (the default: the three runs above), `baselines` (max in
# rounds on --paths tollgate,nginx with each bench/baseline stack in the gateway's place,
# then with the gateway, alternated: where the gateway's cost against nginx comes from on
# this machine; bench/README.md, "Baselines") or `all`.
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
  baseline=""
  gateway=()
  if [ "${SET:-main}" != main ]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    go build -o "$tmp/baseline" ./bench/baseline
    go build -o "$tmp/tollgate" ./cmd/tollgate
    baseline=$tmp/baseline
    gateway=(--tollgate-bin "$tmp/tollgate")
  fi
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
  run=("$b/bench" --mockllm-bin "$b/mockllm" --nginx-bin "$b/nginx")
  baseline=$b/baseline
  gateway=(--tollgate-bin "$b/tollgate")
fi
# Descriptors for 256 connections per path and nginx's workers.
ulimit -n 65536 2>/dev/null || true

common=(--pin --gateway-cores "$gw" --out "$out" --quiet)
ladder=(--scenario max --max-rounds 5 --step 1s --max-start 2000)
case ${SET:-main} in
  main | baselines | all) ;;
  *) echo "bench-pinned: SET is main, baselines or all" >&2; exit 2 ;;
esac
set -x
if [ "${SET:-main}" != baselines ]; then
  "${run[@]}" "${gateway[@]}" "${common[@]}" "${ladder[@]}" "$@"
  "${run[@]}" "${gateway[@]}" "${common[@]}" --scenario chat --rate 2000 --duration 10s "$@"
  "${run[@]}" "${gateway[@]}" "${common[@]}" --scenario stream --rate 500 --duration 20s "$@"
fi
if [ "${SET:-main}" != main ]; then
  for stack in epoll fasthttp; do
    TOLLGATE_BASELINE=$stack "${run[@]}" --tollgate-bin "$baseline" "${common[@]}" "${ladder[@]}" --paths tollgate,nginx "$@"
  done
  "${run[@]}" "${gateway[@]}" "${common[@]}" "${ladder[@]}" --paths tollgate,nginx "$@"
fi
