#!/usr/bin/env bash
# The demo: a whole cluster on loopback (kube-apiserver + etcd, kube-controller-manager,
# kube-scheduler and 3 simulated kwok nodes), the AppImage CRD, the seed walkthrough through
# `kubectl appimage`, then a Deployment of the seed AppImage running on the nodes, and a Pod of
# a demo AppImage really running on a real node (containerd + kubelet, when this machine can run
# one; otherwise one line says why and the demo goes on with kwok). Interactive runs stay up
# until Ctrl-C; set DEMO_NO_WAIT=1 to stop at the end.
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

# The real node (containerd, kubelet, a CNI bridge, a local registry) when this machine can.
real=()
if scripts/controlplane.sh build-real-node >/dev/null 2>"$dir/real-node-build.log"; then
  real=(--real-node)
else
  echo "real node: cannot be built here ($(tail -n 1 "$dir/real-node-build.log")); going on with kwok only"
fi
start_cluster() {
  "$cp_bin" --dir "$dir/cluster" --nodes 3 --node-labels appimage.demo/pool=demo "${real[@]}" \
    --parent-pid $$ >"$dir/controlplane.out" 2>"$dir/controlplane.log" &
  cp_pid=$!
  pids=("$cp_pid")
}
say "Starting a v1.33 cluster in $dir: apiserver + etcd, controller-manager, scheduler, 3 kwok nodes${real:+, a real node}"
start_cluster
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
  if ! kill -0 "$cp_pid" 2>/dev/null; then
    [ ${#real[@]} -gt 0 ] || { cat "$dir/controlplane.log" >&2; exit 1; }
    echo "real node: could not start ($(grep -v '^\s*$' "$dir/controlplane.log" | tail -n 1)); going on with kwok only"
    real=()
    rm -rf "$dir/cluster"
    start_cluster
  fi
  sleep 1
done
grep -q '^READY ' "$dir/controlplane.out" || { echo "the cluster was not ready in 120 s" >&2; cat "$dir/controlplane.log" >&2; exit 1; }
export KUBECONFIG="$dir/cluster/kubeconfig"
run kubectl get --raw /readyz; echo
run kubectl get nodes -L appimage.test/node,appimage.demo/pool

say "Installing the AppImage CRD"
run kubectl apply -f charts/appimage-webhook/crds/appimages.kuscia.secretflow.yaml
# A CRD has no conditions for a moment after its create, and kubectl wait fails at once on that.
for _ in $(seq 1 50); do
  kubectl get crd/appimages.kuscia.secretflow -o jsonpath='{.status.conditions}' 2>/dev/null | grep -q . && break
  sleep 0.2
done
run kubectl wait --for=condition=Established --timeout=60s crd/appimages.kuscia.secretflow
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

# A Deployment of the seed AppImage (signed and applied by demo-webhook.sh): the ReplicaSet
# controller creates its Pods, the webhook injects them, the scheduler puts them on the kwok
# nodes, kwok makes them Running, and the EndpointSlice controller fills their Services.
demo_deployment() {
  say "A Deployment of the seed AppImage, on the simulated nodes"
  cat >"$dir/deployment.yaml" <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: secretflow}
spec:
  replicas: 3
  selector: {matchLabels: {app: secretflow}}
  template:
    metadata:
      labels: {app: secretflow, kuscia.secretflow/app-image: secretflow-image}
      annotations: {appimage.kuscia.secretflow/task-id: demo-deploy}
    spec:
      # A template needs an image; the webhook sets the AppImage's (its signature covers it).
      containers: [{name: secretflow, image: replaced.invalid/by-the-webhook}]
YAML
  cat "$dir/deployment.yaml"
  run kubectl apply -f "$dir/deployment.yaml"
  run kubectl rollout status deployment/secretflow --timeout=120s
  run kubectl get pods -l app=secretflow -o wide
  say "The Pods are injected: the AppImage's image, allocated ports, the task config"
  run kubectl get pods -l app=secretflow -o custom-columns='NAME:.metadata.name,IMAGE:.spec.containers[0].image,PORTS:.spec.containers[0].ports[*].containerPort,TASK:.metadata.annotations.appimage\.kuscia\.secretflow/task-id'
  say "Their Services (made by the webhook's reconciler) and endpoints (the EndpointSlice controller)"
  local sel=kuscia.secretflow/app-image=secretflow-image
  for _ in $(seq 1 120); do
    [ "$(kubectl get endpointslices -l "$sel" -o jsonpath='{range .items[*]}{.endpoints[*].addresses[*]}{"\n"}{end}' | grep -c .)" -ge 9 ] && break
    sleep 0.5
  done
  run kubectl get services -l "$sel"
  run kubectl get endpointslices -l "$sel"
}

# A demo AppImage on the app image (tests/controlplane/images: prints its config files and
# serves them over HTTP), Kuscia-style: image.id is the image ID. The webhook checks it against
# the cluster's registry and pins the Pod to the manifest that has it; the Pod really runs.
demo_real_node() {
  say "A Pod of a demo AppImage, running for real on real-node-0"
  local registry; registry=$(cat "$dir/cluster/registry.addr")
  run scripts/images.sh push "$registry" "$dir/images.env"
  # shellcheck source=/dev/null
  . "$dir/images.env"
  cat >"$dir/demo-app.yaml" <<YAML
apiVersion: kuscia.secretflow/v1alpha1
kind: AppImage
metadata: {name: demo-app}
spec:
  image: {name: "${APP_IMAGE%:*}", tag: "${APP_IMAGE##*:}", id: "$APP_IMAGE_ID"}
  configTemplates:
    app.conf: |
      greeting: hello from a real container
      domain: {{.KUSCIA_DOMAIN_ID}}
      task: "{{.TASK_ID}}"
  deployTemplates:
    - name: app
      spec:
        containers:
          - name: app
            configVolumeMounts: [{mountPath: /etc/app/app.conf, subPath: app.conf}]
        restartPolicy: Always
YAML
  cat "$dir/demo-app.yaml"
  kubectl appimage sign -f "$dir/demo-app.yaml" --key "$keys/appimage.key" >"$dir/demo-app.signed.yaml"
  run kubectl appimage apply -f "$dir/demo-app.signed.yaml"
  cat >"$dir/demo-pod.yaml" <<'YAML'
apiVersion: v1
kind: Pod
metadata:
  name: demo-app
  labels: {kuscia.secretflow/app-image: demo-app}
  annotations: {appimage.kuscia.secretflow/task-id: demo-real}
spec:
  containers: []
  nodeSelector: {appimage.kuscia.secretflow/real-node: "true"}
  tolerations: [{key: appimage.kuscia.secretflow/real-node, operator: Exists, effect: NoSchedule}]
YAML
  run kubectl create -f "$dir/demo-pod.yaml"
  run kubectl wait --for=condition=Ready pod/demo-app --timeout=120s
  run kubectl get pod demo-app -o custom-columns='NAME:.metadata.name,NODE:.spec.nodeName,IP:.status.podIP,IMAGE:.spec.containers[0].image,IMAGE-ID:.metadata.annotations.kuscia\.secretflow/image-id'
  local ip; ip=$(kubectl get pod demo-app -o jsonpath='{.status.podIP}')
  say "Its rendered config, from the container itself (curl to the Pod IP on the node's bridge)"
  run curl -s "http://$ip:8080/app.conf"
}

if [ -f scripts/demo-webhook.sh ]; then
  # shellcheck source=/dev/null
  . scripts/demo-webhook.sh
  demo_deployment
  if [ ${#real[@]} -gt 0 ]; then
    demo_real_node || echo "real node: the demo Pod did not run (see kubectl describe pod demo-app); the rest stands"
  fi
fi

say "Explore it yourself"
cat <<MSG
  export KUBECONFIG=$KUBECONFIG
  export PATH=$dir/bin:\$PATH
  kubectl get appimages
  kubectl appimage describe secretflow-image
  kubectl get pods -o wide
  kubectl scale deployment secretflow --replicas=6
MSG
if [ -t 0 ] && [ -z "${DEMO_NO_WAIT:-}" ]; then
  echo "The control plane keeps running; press Ctrl-C to stop."
  wait "$cp_pid"
fi
