#!/usr/bin/env bash
# `make run`: a single-board cluster on this machine, with the example app
# applied. The server runs in the foreground; Ctrl-C stops it.
set -euo pipefail
bin=$(realpath "$1"); dir=$2
port=${BRAMBLE_PORT:-6443}
mkdir -p "$dir"
# The example app's image, built here and imported: no registry involved.
scripts/build-example-image.sh "$dir/kubia.tar"
"$bin" image import "$dir/kubia.tar" --data-dir "$dir/data"
"$bin" server --data-dir "$dir/data" --listen "127.0.0.1:$port" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null' EXIT INT TERM
for _ in $(seq 100); do
  [ -s "$dir/data/tls/ca.crt" ] && curl -sf --cacert "$dir/data/tls/ca.crt" "https://127.0.0.1:$port/readyz" >/dev/null && break
  kill -0 $server 2>/dev/null || exit 1
  sleep 0.1
done
"$bin" kubeconfig --data-dir "$dir/data" --server "https://127.0.0.1:$port" > "$dir/kubeconfig"
export KUBECONFIG=$dir/kubeconfig
kubectl apply -f examples/kubia-pod.yaml
kubectl wait --for=condition=Ready pod/kubia --timeout=60s
kubectl get pods -o wide
kubectl exec kubia -- wget -qO- http://127.0.0.1:8080/
cat <<MSG

bramble is running. In another shell:
  export KUBECONFIG=$dir/kubeconfig
  kubectl get pods -o wide
Ctrl-C stops the server; its state stays in $dir/data.
MSG
wait $server
