#!/usr/bin/env bash
# Keeps the load harness working: every scenario for a few seconds at a low rate
# through all three paths (mockllm directly, Tollgate, nginx), failing on any failed
# request. Figures from it mean nothing; see bench/README.md for real runs.
# Extra arguments go to the harness, e.g. scripts/bench-smoke.sh --keep
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/sbin/nginx ]; then
  echo "== installing nginx-light"
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get install -y -qq --no-install-recommends nginx-light >/dev/null 2>&1 || {
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends nginx-light >/dev/null
  }
fi

exec go run ./bench --smoke "$@"
