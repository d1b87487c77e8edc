#!/usr/bin/env bash
# Runs COMMAND as a child and stops it (SIGTERM, then SIGKILL after 10 s) when process PID exits
# or when this script gets SIGTERM/SIGINT, so a test process that exits without cleaning up (a
# static, a panic) never leaves a local kelos-controller behind holding its fixed port.
#
#   hack/kelos-child.sh --watch-pid PID -- COMMAND [ARGS…]
set -uo pipefail
[[ ${1:-} == --watch-pid && -n ${2:-} && ${3:-} == -- && $# -ge 4 ]] ||
  { echo "usage: $0 --watch-pid PID -- COMMAND [ARGS…]" >&2; exit 2; }
watch=$2
shift 3

"$@" &
child=$!
stop() {
  kill -TERM "$child" 2>/dev/null
  for _ in $(seq 100); do kill -0 "$child" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$child" 2>/dev/null
  wait "$child" 2>/dev/null
  exit 0
}
trap stop TERM INT
while kill -0 "$watch" 2>/dev/null && kill -0 "$child" 2>/dev/null; do
  sleep 0.2 &
  wait $! # interruptible, so a signal is handled at once
done
kill -0 "$child" 2>/dev/null && stop
wait "$child"
