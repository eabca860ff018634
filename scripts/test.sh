#!/usr/bin/env bash
# Runs every check the project has, on a fresh machine: installs what the tests need
# (redis-server, promtool, nginx), then gofmt, go vet, the race-enabled test suite,
# allocation budgets, each benchmark once, the Prometheus rule checks and the load
# harness smoke run. CI runs exactly this (via .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || need+=(nginx-light)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt would change:"; echo "$unformatted"; exit 1; fi

echo "== go vet"
go vet ./...

echo "== go test -race"
# -parallel 8: the parallel tests spend most of their time waiting on sockets, timers
# and child processes (a run of the gateway package at the default of one per core
# kept the two cores 22 % busy); eight at once take a third off its time.
go test -race -count=1 -timeout 8m -parallel 8 ./...

echo "== allocation budgets (built without -race)"
go test -count=1 -run 'Alloc' ./...

echo "== benchmarks, once each"
go test -count=1 -run '^$' -bench . -benchtime 1x ./... >/tmp/tollgate-bench-once.log || { cat /tmp/tollgate-bench-once.log; exit 1; }

if [ -x scripts/check-observability.sh ]; then
  echo "== promtool checks"
  scripts/check-observability.sh
fi

if [ -x scripts/bench-smoke.sh ]; then
  echo "== load harness smoke run"
  scripts/bench-smoke.sh
fi
echo "== all checks passed"
