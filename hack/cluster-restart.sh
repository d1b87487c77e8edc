#!/usr/bin/env bash
# Restarts etcd or the kube-apiserver of a hack/cluster-up.sh control plane the hard way: SIGKILL,
# then the exact command line cluster-up.sh recorded (same ports, same etcd data dir, log appended),
# and waits until it is healthy again. For fault-injection runs (hack/soak.sh).
#
#   hack/cluster-restart.sh --dir DIR etcd|apiserver
set -euo pipefail
log_tag=cluster-restart
source "$(dirname "$0")/lib.sh"

dir= what=
while (($#)); do
  case $1 in
    --dir) dir=$2; shift 2 ;;
    etcd|apiserver) what=$1; shift ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
[[ -n $dir && -n $what ]] || die "usage: hack/cluster-restart.sh --dir DIR etcd|apiserver"
[[ -f $dir/$what.cmd && -f $dir/ports ]] ||
  die "$dir has no $what.cmd or ports: was it started by this version of hack/cluster-up.sh?"
source "$dir/ports" # etcd=, peer=, apiserver= (ports)

expect=$what; [[ $what == apiserver ]] && expect=kube-apiserver
pid=$(our_pid "$dir/$what.pid" "$expect")
[[ -n $pid ]] || die "$what of $dir is not running"
kill -9 "$pid"
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
kill -0 "$pid" 2>/dev/null && die "$what (PID $pid) survived SIGKILL"

# The command line was written with printf %q: eval restores exactly its words.
eval "nohup $(cat "$dir/$what.cmd") >>\"\$dir/\$what.log\" 2>&1 </dev/null &"
echo $! >"$dir/$what.pid"
if [[ $what == etcd ]]; then
  wait_healthy 150 "$dir/etcd.pid" etcd_healthy "$etcd" || die "etcd did not become healthy again"
else
  wait_healthy 300 "$dir/apiserver.pid" apiserver_ready "$dir" "$apiserver" ||
    die "kube-apiserver was not ready again within 60s"
fi
log "$what restarted (PID $pid → $(cat "$dir/$what.pid"))"
