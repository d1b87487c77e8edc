#!/usr/bin/env bash
# Stops exactly the processes hack/cluster-up.sh started from DIR (by the PIDs it recorded).
#
#   hack/cluster-down.sh [--dir DIR]      default .run/cluster
set -uo pipefail
log_tag=cluster-down
source "$(dirname "$0")/lib.sh"

dir=$repo_root/.run/cluster
while (($#)); do
  case $1 in
    --dir) dir=$2; shift 2 ;;
    -h|--help) sed -n '2,4p' "$0"; exit 0 ;;
    *) die "unknown argument $1" ;;
  esac
done

stop_pid_file() { # pid file, expected command name: never kill a recycled PID that is not ours
  local file=$1 expect=$2 pid
  pid=$(our_pid "$file" "$expect")
  if [[ -n $pid ]]; then
    kill "$pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
  fi
  rm -f "$file"
}

stop_pid_file "$dir/apiserver.pid" kube-apiserver
stop_pid_file "$dir/etcd.pid" etcd
# etcd's data is of no use once it is stopped (cluster-up.sh starts afresh): free the disk, keep logs.
[[ -f $dir/etcd.pid ]] || rm -rf "$dir/etcd-data"
if [[ -f $dir/watchdog.pid ]] && [[ $(cat "$dir/watchdog.pid") != "$PPID" ]]; then
  stop_pid_file "$dir/watchdog.pid" cluster-down.sh
fi
rm -f "$dir/watchdog.pid"
exit 0
