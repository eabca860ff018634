#!/usr/bin/env bash
# Builds into bin/bench-bundle/ everything a pinned bench run needs on a Linux x86-64
# machine that has no Go, no nginx and no network: the harness, mockllm, tollgate and
# bench/baseline (static, stripped) and Debian's nginx with the libraries it loads beyond glibc
# (2.34 or newer there), and bin/bench-bundle.tgz of it (about 25 MB, 61 MB unpacked)
# to copy there. scripts/bench-pinned.sh uses the bundle, or unpacks the archive,
# when it finds either.
set -euo pipefail
cd "$(dirname "$0")/.."
out=bin/bench-bundle
rm -rf "$out"
mkdir -p "$out/lib"

export CGO_ENABLED=0
for p in ./cmd/tollgate ./cmd/mockllm ./bench ./bench/baseline; do
  go build -trimpath -ldflags "-s -w" -o "$out/$(basename "$p")" "$p"
done

if [ ! -x /usr/sbin/nginx ]; then
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get install -y -qq --no-install-recommends nginx-light >/dev/null 2>&1 || {
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends nginx-light >/dev/null
  }
fi
cp /usr/sbin/nginx "$out/nginx"
# Every library nginx loads except glibc's own, which must match the target's loader.
ldd /usr/sbin/nginx | awk '/=> \// {print $3}' |
  grep -v -E '/(libc|libm|libdl|libpthread|librt)\.so' |
  while read -r lib; do cp -L "$lib" "$out/lib/"; done

tar -C bin -czf bin/bench-bundle.tgz bench-bundle
ls -l "$out" "$out/lib" bin/bench-bundle.tgz
