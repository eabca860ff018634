#!/usr/bin/env bash
# Checks the shipped Prometheus configuration with the real tools: the scrape
# config, the alert rules, and the alert rules' unit tests. Installs promtool
# (Debian's prometheus package) when it is missing. Exits non-zero on any
# failure.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null 2>&1; then
  echo "promtool not found; installing Debian's prometheus package"
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null ||
    { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
fi

dir=configs/prometheus
promtool check config "$dir/prometheus.yml"
promtool check rules "$dir/alerts.yml"
promtool test rules "$dir/alerts_test.yml"
