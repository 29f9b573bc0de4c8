#!/usr/bin/env bash
# Build (cached) the pinned packaging tools from source with the local Go toolchain:
#
#   scripts/tools.sh helm|kubeconform|krew|cosign     last stdout line = the binary's path
#
# Binaries go to target/tools/bin. A binary is rebuilt only when it is missing or was built
# from another version than the one pinned here (read back with `go version -m`) or with
# other link flags (a stamp file beside it).
# Cold builds on a shared 2-core machine (empty Go build cache): helm 3-4 min, krew 20-40 s,
# kubeconform 5-10 s; module downloads come on top the first time. Progress goes to stderr.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="${TOOLS_DIR:-$ROOT/target/tools}"
BIN_DIR="$TOOLS_DIR/bin"

# Pinned versions: the Go package to install and its module version.
HELM_PKG=helm.sh/helm/v3/cmd/helm
HELM_VERSION=v3.22.0
# helm v3.22.0 builds with k8s.io/client-go v0.37.x, i.e. Kubernetes 1.37.
HELM_K8S_MINOR=37
KUBECONFORM_PKG=github.com/yannh/kubeconform/cmd/kubeconform
KUBECONFORM_VERSION=v0.8.0
# v0.4.4 (not v0.4.5): the newest krew release the Go module proxy serves. The proxy refuses
# the module's version list, which `go install pkg@version` needs for its deprecation check,
# so krew is installed from a throwaway module that requires it (same build list: krew's own
# go.mod requirements, selected by MVS).
KREW_MODULE=sigs.k8s.io/krew
KREW_PKG=sigs.k8s.io/krew/cmd/krew
KREW_VERSION=v0.4.4
# cosign: only for the signature interoperability test (sign-blob with a cosign key pair).
COSIGN_PKG=github.com/sigstore/cosign/v2/cmd/cosign
COSIGN_VERSION=v2.4.1

log() { echo "tools.sh: $*" >&2; }

find_go() {
    if command -v go >/dev/null 2>&1; then
        command -v go
    elif [ -x /usr/local/go/bin/go ]; then
        echo /usr/local/go/bin/go
    else
        log "error: Go toolchain not found (need Go >= 1.26 on PATH or in /usr/local/go)"
        exit 1
    fi
}

# The version of MODULE a Go binary was built from (main module or dependency), or nothing.
built_version() {
    local go="$1" bin="$2" module="$3"
    [ -x "$bin" ] || return 0
    "$go" version -m "$bin" 2>/dev/null |
        awk -v m="$module" '($1 == "mod" || $1 == "dep") && $2 == m { print $3; exit }'
}

# install_tool NAME MODULE PKG VERSION [module-mode] [LDFLAGS]
install_tool() {
    local name="$1" module="$2" pkg="$3" version="$4" mode="${5:-}" ldflags="${6:-}"
    local bin="$BIN_DIR/$name" go
    go="$(find_go)"
    mkdir -p "$BIN_DIR"
    # Serialize concurrent builds of the same tool (parallel tests call this script).
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$TOOLS_DIR/$name.lock"
        flock 9
    fi
    # -trimpath keeps -ldflags out of the binary's build info: a stamp file records them.
    local stamp="$BIN_DIR/.$name.stamp" want="$pkg@$version $ldflags"
    if [ "$(built_version "$go" "$bin" "$module")" = "$version" ] &&
        [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        log "up to date: $bin ($version)"
        echo "$bin"
        return 0
    fi
    export GOTOOLCHAIN=local
    log "building $name $version with $("$go" version) (first time: minutes)..."
    local start=$SECONDS
    # Install into a private GOBIN, then move into place, so a half-built binary never
    # looks current to another caller.
    TMP_BUILD="$(mktemp -d "$TOOLS_DIR/.build-$name.XXXXXX")"
    trap 'rm -rf "$TMP_BUILD"' EXIT
    if [ "$mode" = module-mode ]; then
        mkdir "$TMP_BUILD/mod"
        printf 'module tools.local/%s\n\ngo 1.20\n\nrequire %s %s\n' "$name" "$module" "$version" \
            >"$TMP_BUILD/mod/go.mod"
        (cd "$TMP_BUILD/mod" && GOFLAGS="-mod=mod -buildvcs=false" GOBIN="$TMP_BUILD" nice "$go" install -trimpath -ldflags="$ldflags" "$pkg") >&2
    else
        GOBIN="$TMP_BUILD" nice "$go" install -trimpath -ldflags="$ldflags" "$pkg@$version" >&2
    fi
    mv -f "$TMP_BUILD/$name" "$bin"
    printf '%s' "$want" >"$stamp"
    log "built $bin ($version) in $((SECONDS - start))s"
    echo "$bin"
}

case "${1:-}" in
helm)
    # Stamp what helm's own release build (its Makefile) stamps: the version (`helm version`)
    # and the default Kubernetes version of `helm template` / `helm lint` (.Capabilities),
    # which is the client-go minor + 1.
    install_tool helm helm.sh/helm/v3 "$HELM_PKG" "$HELM_VERSION" "" \
        "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 \
-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$HELM_K8S_MINOR \
-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 \
-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$HELM_K8S_MINOR"
    ;;
kubeconform) install_tool kubeconform github.com/yannh/kubeconform "$KUBECONFORM_PKG" "$KUBECONFORM_VERSION" ;;
krew) install_tool krew "$KREW_MODULE" "$KREW_PKG" "$KREW_VERSION" module-mode ;;
cosign) install_tool cosign github.com/sigstore/cosign/v2 "$COSIGN_PKG" "$COSIGN_VERSION" ;;
*)
    echo "usage: $0 helm|kubeconform|krew|cosign" >&2
    exit 2
    ;;
esac
