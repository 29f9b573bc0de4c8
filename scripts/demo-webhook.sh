# Sourced by scripts/demo.sh: the admission webhook on the demo's control plane.
# Uses: $dir (work dir), pids (array of processes to stop), say/run helpers, kubectl on PATH.

say "Signing the AppImage and starting appimage-webhook"
keys="$dir/keys"; tls="$dir/tls"; mkdir -p "$keys/trusted" "$tls"
run kubectl appimage keygen --private-key "$keys/appimage.key" --public-key "$keys/trusted/appimage.pub"
kubectl appimage sign -f examples/secretflow-image-update.yaml --key "$keys/appimage.key" >"$dir/signed.yaml"
run kubectl appimage verify -f "$dir/signed.yaml" --key "$keys/trusted/appimage.pub"
run kubectl appimage apply -f "$dir/signed.yaml"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tls/ca.key" \
  -out "$tls/ca.crt" -days 1 -subj /CN=appimage-demo-ca 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tls/tls.key" \
  -out "$tls/tls.csr" -subj /CN=appimage-webhook 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' >"$tls/san.ext"
openssl x509 -req -in "$tls/tls.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" -CAcreateserial \
  -out "$tls/tls.crt" -days 1 -extfile "$tls/san.ext" 2>/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# With the cluster's registry, image ids are checked there (the demo AppImage on the real node).
registry_args=()
if [ -f "$dir/cluster/registry.addr" ]; then
  registry_args=(--verify-image-ids --insecure-registry "$(cat "$dir/cluster/registry.addr")")
fi
appimage-webhook --listen "127.0.0.1:$port" --tls-cert-file "$tls/tls.crt" --tls-key-file "$tls/tls.key" \
  --trusted-keys-dir "$keys/trusted" --kubeconfig "$KUBECONFIG" --log-format text "${registry_args[@]}" \
  >"$dir/webhook.log" 2>&1 &
pids+=("$!")
for _ in $(seq 1 100); do
  curl -sf --cacert "$tls/ca.crt" "https://127.0.0.1:$port/readyz" >/dev/null && break
  sleep 0.2
done
echo "webhook ready on https://127.0.0.1:$port (log: $dir/webhook.log)"

ca=$(base64 -w0 <"$tls/ca.crt")
cat >"$dir/webhook.yaml" <<YAML
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {name: appimage-webhook}
webhooks:
- name: pods.appimage.kuscia.secretflow
  admissionReviewVersions: ["v1"]
  sideEffects: None
  failurePolicy: Fail
  reinvocationPolicy: IfNeeded
  timeoutSeconds: 5
  clientConfig: {url: "https://127.0.0.1:$port/mutate", caBundle: $ca}
  objectSelector:
    matchExpressions: [{key: kuscia.secretflow/app-image, operator: Exists}]
  namespaceSelector:
    matchExpressions: [{key: kubernetes.io/metadata.name, operator: NotIn, values: [kube-system]}]
  rules: [{operations: ["CREATE"], apiGroups: [""], apiVersions: ["v1"], resources: ["pods"]}]
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: appimage-webhook}
webhooks:
- name: pods.validate.appimage.kuscia.secretflow
  admissionReviewVersions: ["v1"]
  sideEffects: None
  failurePolicy: Fail
  timeoutSeconds: 5
  clientConfig: {url: "https://127.0.0.1:$port/validate-pods", caBundle: $ca}
  objectSelector:
    matchExpressions: [{key: kuscia.secretflow/app-image, operator: Exists}]
  namespaceSelector:
    matchExpressions: [{key: kubernetes.io/metadata.name, operator: NotIn, values: [kube-system]}]
  rules: [{operations: ["UPDATE"], apiGroups: [""], apiVersions: ["v1"], resources: ["pods", "pods/ephemeralcontainers"]}]
YAML
run kubectl apply -f "$dir/webhook.yaml"

say "A Pod that carries only the label"
cat >"$dir/pod.yaml" <<'YAML'
apiVersion: v1
kind: Pod
metadata:
  name: secretflow-task-0
  labels: {kuscia.secretflow/app-image: secretflow-image}
  annotations: {appimage.kuscia.secretflow/task-id: demo-task-1}
spec:
  containers: []
YAML
cat "$dir/pod.yaml"
for _ in $(seq 1 50); do kubectl create -f "$dir/pod.yaml" --dry-run=server >/dev/null 2>&1 && break; sleep 0.2; done
run kubectl create -f "$dir/pod.yaml"
run kubectl get pod secretflow-task-0 -o yaml
printf '\033[36m$ %s\033[0m\n' "kubectl get pod secretflow-task-0 -o jsonpath='{.metadata.annotations.config\.appimage\.kuscia\.secretflow/task-config\.conf}'"
kubectl get pod secretflow-task-0 -o jsonpath='{.metadata.annotations.config\.appimage\.kuscia\.secretflow/task-config\.conf}'
echo
if kubectl get services -l kuscia.secretflow/pod-identity=secretflow-task-0 2>/dev/null | grep -q .; then
  run kubectl get services -l kuscia.secretflow/pod-identity=secretflow-task-0
fi
