#!/usr/bin/env bash
# CPU per request of each proxy at saturation: wrk (closed loop, -t1 -c32) drives each
# proxy in turn in front of one zero-delay mockllm, alternating ROUNDS times, and the
# proxy's user and system CPU (from /proc/PID/stat) is divided by the requests wrk
# counted. Proxies: Tollgate, nginx (the bench's config) and the two bench/baseline
# stacks (fasthttp, epoll). On a shared machine compare within a round only.
#
#   scripts/bench-saturate.sh [ROUNDS] [SECONDS]      # default 6 rounds of 4 s
#   PATHS="tollgate nginx" scripts/bench-saturate.sh  # a subset
#   BASE_BIN=/tmp/tollgate-old PATHS="tollgate base" scripts/bench-saturate.sh
#                                                     # another gateway build, alternated
#   MODE=stream TPOT=1ms scripts/bench-saturate.sh    # streams of 16 tokens (nginx
#                                                     # with proxy_buffering off)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-6}
SECS=${2:-4}
MODE=${MODE:-chat}
TPOT=${TPOT:-0s}
# The fasthttp baseline reads an answer whole before passing it on, so it is no
# measure for streams; the epoll baseline passes bytes on as they come.
case $MODE in
  chat) STREAM=false; PATHS=${PATHS:-"tollgate nginx fasthttp epoll"} ;;
  stream) STREAM=true; PATHS=${PATHS:-"tollgate nginx epoll"} ;;
  *) echo "MODE is chat or stream, not $MODE" >&2; exit 2 ;;
esac

need() {
  [ -x "$2" ] || command -v "$1" >/dev/null 2>&1 && return
  echo "== installing $3"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -qq --no-install-recommends "$3" >/dev/null 2>&1 || {
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "$3" >/dev/null
  }
}
need wrk /usr/bin/wrk wrk
need nginx /usr/sbin/nginx nginx-light

DIR=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$DIR/nginx.pid" ] && kill "$(cat "$DIR/nginx.pid" 2>/dev/null)" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(free_port)
declare -A PORT ADMIN
for p in tollgate base nginx fasthttp epoll; do PORT[$p]=$(free_port); ADMIN[$p]=$(free_port); done

echo "== building into $DIR"
go build -o "$DIR/mockllm" ./cmd/mockllm
go build -o "$DIR/tollgate" ./cmd/tollgate
go build -o "$DIR/baseline" ./bench/baseline

# The bench's own configs for the chat scenario, moved to this run's dir and ports.
for p in tollgate base fasthttp epoll; do
  sed -e "s#127.0.0.1:18080#127.0.0.1:${PORT[$p]}#" -e "s#127.0.0.1:19090#127.0.0.1:${ADMIN[$p]}#" \
    -e "s#127.0.0.1:18001#127.0.0.1:$UP#" bench/testdata/gateway-chat.yaml > "$DIR/$p.yaml"
done
nginx_sed=(-e "s#/tmp/b#$DIR#g" -e "s#127.0.0.1:18001#127.0.0.1:$UP#" -e "s#127.0.0.1:18081#127.0.0.1:${PORT[nginx]}#")
# Streams pass through nginx as they come, as the bench's stream scenario has it.
[ "$STREAM" = true ] &&
  nginx_sed+=(-e 's#proxy_read_timeout 300s;#proxy_read_timeout 300s; proxy_buffering off; proxy_request_buffering off;#')
sed "${nginx_sed[@]}" bench/testdata/nginx-chat.conf > "$DIR/nginx.conf"

"$DIR/mockllm" --listen "127.0.0.1:$UP" --max-tokens 32 > "$DIR/mockllm.log" 2>&1 & PIDS+=($!)
declare -A PROCS
for p in $PATHS; do
  case $p in
    tollgate) "$DIR/tollgate" --config "$DIR/tollgate.yaml" > "$DIR/tollgate.log" 2>&1 & PIDS+=($!); PROCS[$p]=$! ;;
    base)
      [ -x "${BASE_BIN:-}" ] || { echo "path base needs BASE_BIN, a gateway binary" >&2; exit 2; }
      "$BASE_BIN" --config "$DIR/base.yaml" > "$DIR/base.log" 2>&1 & PIDS+=($!); PROCS[$p]=$! ;;
    fasthttp|epoll) TOLLGATE_BASELINE=$p "$DIR/baseline" --config "$DIR/$p.yaml" > "$DIR/$p.log" 2>&1 & PIDS+=($!); PROCS[$p]=$! ;;
    nginx) /usr/sbin/nginx -p "$DIR" -c "$DIR/nginx.conf" > "$DIR/nginx.log" 2>&1 & PIDS+=($!) ;;
    *) echo "unknown path $p (tollgate, base, nginx, fasthttp, epoll)" >&2; exit 2 ;;
  esac
done

body='{"model":"MODEL","stream":'$STREAM',"max_tokens":16,"messages":[{"role":"user","content":"Say something about gateways."}]}'
for m in chat mock-1; do
  cat > "$DIR/post-$m.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Mock-Tpot"] = "$TPOT"
wrk.body = '${body/MODEL/$m}'
EOF
done
url() { echo "http://127.0.0.1:${PORT[$1]}/v1/chat/completions"; }
script() { if [ "$1" = nginx ]; then echo "$DIR/post-mock-1.lua"; else echo "$DIR/post-chat.lua"; fi; }

for p in $PATHS; do
  for _ in $(seq 100); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' -H "X-Mock-Tpot: $TPOT" \
      -d "$(sed -n "s/^wrk.body = '\(.*\)'$/\1/p" "$(script "$p")")" "$(url "$p")" || true)
    [ "$code" = 200 ] && break
    sleep 0.1
  done
  [ "$code" = 200 ] || { echo "$p does not answer 200 (got $code); logs in $DIR" >&2; trap - EXIT; exit 1; }
done
# nginx's CPU is its master's and workers'.
pids_of() {
  if [ "$1" = nginx ]; then
    local m; m=$(cat "$DIR/nginx.pid"); echo "$m $(pgrep -P "$m" | tr '\n' ' ')"
  else
    echo "${PROCS[$1]}"
  fi
}
cpu() { local u=0 s=0 a b; for p in $1; do read -r a b < <(awk '{print $14, $15}' "/proc/$p/stat"); u=$((u + a)); s=$((s + b)); done; echo "$u $s"; }
tick=$(getconf CLK_TCK)

echo "== $(nproc) cores, $(date -u +%FT%TZ), $MODE (X-Mock-Tpot $TPOT), wrk -t1 -c32 -d${SECS}s, $ROUNDS rounds"
echo "| round | path | req/s | CPU µs/req | user | system |"
echo "| ---: | --- | ---: | ---: | ---: | ---: |"
for r in $(seq "$ROUNDS"); do
  for p in $PATHS; do
    pids=$(pids_of "$p")
    read -r u0 s0 < <(cpu "$pids")
    out=$(wrk -t1 -c32 -d"${SECS}s" -s "$(script "$p")" "$(url "$p")")
    read -r u1 s1 < <(cpu "$pids")
    reqs=$(awk '/requests in/{print $1}' <<< "$out")
    bad=$(grep -E 'Non-2xx|Socket errors' <<< "$out" | tr '\n' ' ' || true)
    awk -v r="$r" -v p="$p" -v q="$reqs" -v s="$SECS" -v u=$((u1 - u0)) -v k=$((s1 - s0)) -v t="$tick" -v bad="$bad" \
      'BEGIN { f = 1e6 / t / q; printf "| %d | %s | %.0f | %.1f | %.1f | %.1f |%s\n", r, p, q / s, (u + k) * f, u * f, k * f, (bad == "" ? "" : " " bad) }'
  done
done
