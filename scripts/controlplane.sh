#!/usr/bin/env bash
# Build (cached) and run kube-controlplane: a whole test cluster in one Go binary
# (kube-apiserver v1.33 + embedded etcd in-process; kube-controller-manager,
# kube-scheduler and kwok nodes as children). See tests/controlplane/README.md.
#
#   scripts/controlplane.sh build                build if needed; last stdout line = binary path
#   scripts/controlplane.sh run DIR [FLAGS...]   build if needed, then exec the binary --dir DIR FLAGS
#                                                (e.g. --nodes 3 --node-labels zone=a); with --real-node,
#                                                build-real-node first
#   scripts/controlplane.sh build-real-node      what --real-node needs: Debian's containerd, runc,
#                                                containernetworking-plugins, busybox-static, umoci, skopeo
#                                                (apt-get when missing), the kubelet (same module and release
#                                                as the apiserver, next to the binary), helm (for the chart
#                                                on the real node) and the images
#                                                (scripts/images.sh build); last stdout line = kubelet path
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$ROOT/tests/controlplane"
OUT_DIR="$ROOT/target/controlplane"
BIN="$OUT_DIR/kube-controlplane"
STAMP="$OUT_DIR/kube-controlplane.stamp"

log() { echo "controlplane.sh: $*" >&2; }

find_go() {
    if command -v go >/dev/null 2>&1; then
        command -v go
    elif [ -x /usr/local/go/bin/go ]; then
        echo /usr/local/go/bin/go
    else
        log "error: Go toolchain not found (need Go >= 1.24 on PATH or in /usr/local/go)"
        exit 1
    fi
}

source_hash() {
    (
        cd "$SRC"
        # go.mod, go.sum and every .go file, in a stable order.
        { printf '%s\n' go.mod go.sum; find . -maxdepth 1 -name '*.go' -printf '%P\n' | LC_ALL=C sort; } |
            while read -r f; do printf '%s\n' "$f"; cat "$f"; done | sha256sum | cut -d' ' -f1
    )
}

build() {
    mkdir -p "$OUT_DIR"
    # Serialize concurrent builds (e.g. parallel test processes).
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$OUT_DIR/build.lock"
        flock 9
    fi
    local hash
    hash="$(source_hash)"
    if [ -x "$BIN" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$hash" ]; then
        log "up to date: $BIN"
        echo "$BIN"
        return 0
    fi
    local go
    go="$(find_go)"
    export GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:--mod=readonly}"
    log "using $("$go" version)"
    log "downloading Go modules (first time: several minutes)..."
    (cd "$SRC" && "$go" mod download) >&2
    log "building kube-controlplane (first time: several minutes)..."
    local start=$SECONDS
    rm -f "$STAMP"
    (cd "$SRC" && nice "$go" build -trimpath -o "$BIN.tmp" .) >&2
    mv -f "$BIN.tmp" "$BIN"
    echo "$hash" >"$STAMP"
    log "built $BIN in $((SECONDS - start))s"
    echo "$BIN"
}

KUBELET="$OUT_DIR/kubelet"
KUBELET_STAMP="$OUT_DIR/kubelet.stamp"

# install_missing TOOL:PACKAGE...: apt-get install the packages of the missing tools.
install_missing() {
    local need=() t
    for t in "$@"; do
        if [[ "${t%%:*}" == /* ]]; then
            [ -e "${t%%:*}" ] || need+=("${t#*:}")
        else
            command -v "${t%%:*}" >/dev/null 2>&1 || need+=("${t#*:}")
        fi
    done
    [ ${#need[@]} -gt 0 ] || return 0
    if ! command -v apt-get >/dev/null 2>&1; then
        log "error: missing ${need[*]} (Debian packages) and no apt-get"
        exit 1
    fi
    log "installing ${need[*]} from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null 2>&1 &&
            apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null; }
}

build_real_node() {
    install_missing containerd:containerd ctr:containerd runc:runc /usr/lib/cni/bridge:containernetworking-plugins \
        /bin/busybox:busybox-static umoci:umoci skopeo:skopeo
    build >/dev/null
    exec 9>"$OUT_DIR/build.lock"
    flock 9
    # The release the module requires, stamped into the kubelet as the upstream build does
    # (Node.status.nodeInfo.kubeletVersion; unstamped it says v0.0.0-master).
    local version ldflags hash
    version="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ { print $2; exit }' "$SRC/go.mod")"
    ldflags="-X k8s.io/component-base/version.gitVersion=$version"
    ldflags+=" -X k8s.io/component-base/version.gitMajor=$(echo "$version" | cut -d. -f1 | tr -d v)"
    ldflags+=" -X k8s.io/component-base/version.gitMinor=$(echo "$version" | cut -d. -f2)"
    ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
    hash="$( (cd "$SRC" && cat go.mod go.sum && echo "$ldflags") | sha256sum | cut -d' ' -f1)"
    if [ -x "$KUBELET" ] && [ -f "$KUBELET_STAMP" ] && [ "$(cat "$KUBELET_STAMP")" = "$hash" ]; then
        log "up to date: $KUBELET"
    else
        local go start=$SECONDS
        go="$(find_go)"
        export GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:--mod=readonly}"
        log "building the kubelet (k8s.io/kubernetes/cmd/kubelet, the module's tool; first time: minutes)..."
        rm -f "$KUBELET_STAMP"
        (cd "$SRC" && nice "$go" build -trimpath -ldflags "$ldflags" -o "$KUBELET.tmp" k8s.io/kubernetes/cmd/kubelet) >&2
        mv -f "$KUBELET.tmp" "$KUBELET"
        echo "$hash" >"$KUBELET_STAMP"
        log "built $KUBELET in $((SECONDS - start))s"
    fi
    build_helm
    exec 9>&-
    "$ROOT/scripts/images.sh" build
    echo "$KUBELET"
}

# helm, for the chart on the real node (tests/e2e/tests/real_node_chart.rs): built from its Go
# module (its own go.mod: helm v3.18 is built on k8s.io v0.33, like this cluster) into
# target/controlplane/helm, unless it is there at this version.
HELM_VERSION=v3.18.6
HELM="$OUT_DIR/helm"
build_helm() {
    if [ -x "$HELM" ] && "$HELM" version --template '{{.Version}}' 2>/dev/null | grep -qx "$HELM_VERSION"; then
        log "up to date: $HELM"
        return 0
    fi
    local go start=$SECONDS
    go="$(find_go)"
    log "building helm $HELM_VERSION from its Go module (first time: minutes)..."
    (cd "$OUT_DIR" && GOTOOLCHAIN=local GOFLAGS= GOBIN="$OUT_DIR" nice "$go" install \
        -ldflags "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
        "helm.sh/helm/v3/cmd/helm@$HELM_VERSION") >&2
    log "built $HELM in $((SECONDS - start))s"
}

case "${1:-}" in
build)
    build
    ;;
build-real-node)
    build_real_node
    ;;
run)
    if [ $# -lt 2 ]; then
        echo "usage: $0 run DIR [--nodes N] [--node-labels k=v,...]" >&2
        exit 2
    fi
    bin="$(build | tail -n1)"
    dir="$2"
    shift 2
    for arg in "$@"; do
        [ "$arg" != --real-node ] || build_real_node >/dev/null
    done
    exec "$bin" --dir "$dir" "$@"
    ;;
*)
    echo "usage: $0 build | build-real-node | run DIR [--nodes N] [--node-labels k=v,...] [--real-node]" >&2
    exit 2
    ;;
esac
