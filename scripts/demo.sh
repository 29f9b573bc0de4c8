#!/usr/bin/env bash
# The demo: a real kube-apiserver + etcd on loopback, the AppImage CRD, and the seed walkthrough
# through `kubectl appimage`. Interactive runs stay up until Ctrl-C; set DEMO_NO_WAIT=1 to stop
# at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export GOTOOLCHAIN=local

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '\033[36m$ %s\033[0m\n' "$*"; "$@"; }

say "Building the control plane (cached) and the binaries"
cp_bin=$(scripts/controlplane.sh build | tail -n 1)
cargo build --workspace --bins --quiet

dir=$(mktemp -d "${TMPDIR:-/tmp}/appimage-demo.XXXXXX")
mkdir -p "$dir/bin"
kubectl_bin=/usr/lib/google-cloud-sdk/bin/kubectl.1.33
[ -x "$kubectl_bin" ] || kubectl_bin=$(command -v kubectl)
ln -s "$kubectl_bin" "$dir/bin/kubectl"
for b in kubectl-appimage appimage-webhook; do
  [ -x "target/debug/$b" ] && ln -s "$root/target/debug/$b" "$dir/bin/$b"
done
export PATH="$dir/bin:$PATH"

say "Starting kube-apiserver v1.33 + etcd in $dir"
"$cp_bin" --dir "$dir/cluster" --parent-pid $$ >"$dir/controlplane.out" 2>"$dir/controlplane.log" &
cp_pid=$!
pids=("$cp_pid")
cleanup() {
  trap - EXIT INT TERM
  printf '\nStopping...\n'
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  echo "stopped; state left in $dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
for _ in $(seq 1 120); do
  grep -q '^READY ' "$dir/controlplane.out" 2>/dev/null && break
  kill -0 "$cp_pid" 2>/dev/null || { cat "$dir/controlplane.log" >&2; exit 1; }
  sleep 1
done
export KUBECONFIG="$dir/cluster/kubeconfig"
run kubectl get --raw /readyz; echo

say "Installing the AppImage CRD"
run kubectl apply -f charts/appimage-webhook/crds/appimages.kuscia.secretflow.yaml
run kubectl wait --for=condition=Established crd/appimages.kuscia.secretflow
for _ in $(seq 1 50); do kubectl get appimages >/dev/null 2>&1 && break; sleep 0.2; done

say "The seed walkthrough, through the plugin"
run kubectl plugin list 2>/dev/null | grep appimage
run kubectl appimage validate -f examples/secretflow-image.yaml
run kubectl appimage apply -f examples/secretflow-image.yaml
run kubectl appimage get
run kubectl get appimage secretflow-image
run kubectl appimage apply -f examples/secretflow-image-update.yaml
printf '\033[36m$ %s\033[0m\n' "kubectl get appimage secretflow-image -o yaml | grep '\- name: global' -A 3"
kubectl get appimage secretflow-image -o yaml | grep '\- name: global' -A 3
run kubectl appimage describe secretflow-image
run kubectl appimage render secretflow-image --task-id t1 --show-config task-config.conf
run kubectl appimage render secretflow-image --task-id t1 -o manifests

if [ -f scripts/demo-webhook.sh ]; then
  # shellcheck source=/dev/null
  . scripts/demo-webhook.sh
fi

say "Explore it yourself"
cat <<MSG
  export KUBECONFIG=$KUBECONFIG
  export PATH=$dir/bin:\$PATH
  kubectl get appimages
  kubectl appimage describe secretflow-image
MSG
if [ -t 0 ] && [ -z "${DEMO_NO_WAIT:-}" ]; then
  echo "The control plane keeps running; press Ctrl-C to stop."
  wait "$cp_pid"
fi
