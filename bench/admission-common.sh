# Pieces the admission benchmarks share (sourced by bench/admission.sh and bench/admission-e2e.sh):
# a control plane with the CRDs, the benchmark bodies, and a release admission server with its
# own CA. Expects hack/lib.sh sourced, the release binaries in $bin, and $dir (state directory).

# Starts a control plane in $dir/cluster (stopped by bench_cleanup), installs the CRDs, writes the
# bodies of bench/make_reviews.py into $dir/bodies and creates the bench namespace with the
# benchmark TaskSpawner (8 hooks). Defines kubectl() and sets $kubeconfig.
bench_cluster_up() {
  kubeconfig=$(hack/cluster-up.sh --dir "$dir/cluster")
  kubectl() { "$(cat "$dir/cluster/tools")/kubectl" --kubeconfig "$kubeconfig" "$@"; }
  "$bin/kelos-hooks-admission" crds | kubectl apply --server-side -f - >/dev/null
  kubectl wait --for condition=Established crd/taskspawners.kelos.dev crd/tasks.kelos.dev --timeout 30s >/dev/null
  python3 bench/make_reviews.py "$dir/bodies" bench
  kubectl create namespace bench >/dev/null
  kubectl apply -f "$dir/bodies/taskspawner.json" >/dev/null
}

# Starts the admission server (extra flags: "$@") with a fresh CA in $dir/pki, waits for
# /readyz. Sets $url (webhook port), $mport (probes, metrics), $server_pid.
bench_admission_start() {
  "$bin/kelos-hooks-certs" ca --out "$dir/pki" >/dev/null
  "$bin/kelos-hooks-certs" serving --ca-dir "$dir/pki" --out "$dir/pki" --name server --san 127.0.0.1 >/dev/null
  local port; port=$(free_port); mport=$(free_port)
  KUBECONFIG=$kubeconfig "$bin/kelos-hooks-admission" serve --listen "127.0.0.1:$port" \
    --metrics-listen "127.0.0.1:$mport" --tls-cert-file "$dir/pki/server.crt" \
    --tls-key-file "$dir/pki/server.key" --log-format json "$@" >"$dir/server.log" 2>&1 &
  server_pid=$!
  url=https://127.0.0.1:$port
  for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$mport/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fsS "http://127.0.0.1:$mport/readyz" >/dev/null || die "admission server not ready (see $dir/server.log)"
}

bench_cleanup() {
  [[ -n ${server_pid:-} ]] && kill "$server_pid" 2>/dev/null
  hack/cluster-down.sh --dir "$dir/cluster"
}

bench_machine() {
  printf 'machine: %s cores, %s; %s\n' "$(nproc)" "$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)" \
    "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
}
