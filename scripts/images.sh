#!/usr/bin/env bash
# Container images for the real node (kube-controlplane --real-node), built here without
# Docker: Debian's busybox-static put together with umoci. See tests/controlplane/README.md.
#
#   scripts/images.sh build              build if needed into target/controlplane/images:
#                                        pause.tar  docker archive, tag localhost/kube-controlplane/pause:busybox
#                                                   (kube-controlplane --real-node imports it as the sandbox image)
#                                        app/       OCI layout, tag "1": the app image (entrypoint
#                                                   tests/controlplane/images/app-run.sh)
#   scripts/images.sh push ADDR OUT      push the app image to the registry at ADDR (127.0.0.1:PORT, plain
#                                        HTTP) as ADDR/appimage-test/app:1 and write OUT, lines KEY=VALUE:
#                                        APP_IMAGE (name:tag), APP_MANIFEST_DIGEST, APP_IMAGE_ID (config digest)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$OUT" in /*) ;; *) OUT="$ROOT/$OUT" ;; esac
OUT="$OUT/controlplane/images"
SRC="$ROOT/tests/controlplane/images"
BUSYBOX=/bin/busybox

log() { echo "images.sh: $*" >&2; }

# make_image LAYOUT TAG ROOTFS_SETUP_FN CONFIG_ARGS...: a one-layer image from a fresh rootfs.
make_image() {
    local layout="$1" tag="$2" setup="$3"
    shift 3
    local work
    work="$(mktemp -d "$OUT/work.XXXXXX")"
    [ -d "$layout" ] || umoci init --layout "$layout"
    umoci new --image "$layout:$tag"
    umoci unpack --image "$layout:$tag" "$work/bundle" >/dev/null
    "$setup" "$work/bundle/rootfs"
    umoci repack --image "$layout:$tag" "$work/bundle" >/dev/null
    umoci config --image "$layout:$tag" --os linux --architecture amd64 "$@"
    umoci gc --layout "$layout"
    rm -rf "$work"
}

busybox_rootfs() {
    local rootfs="$1"
    mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/tmp" "$rootfs/proc" "$rootfs/sys" "$rootfs/dev"
    cp "$BUSYBOX" "$rootfs/bin/busybox"
    local applet
    for applet in sh cat echo find sort wc httpd sleep ls; do
        ln -s busybox "$rootfs/bin/$applet"
    done
    echo 'root:x:0:0:root:/:/bin/sh' >"$rootfs/etc/passwd"
    echo 'root:x:0:' >"$rootfs/etc/group"
}

app_rootfs() {
    busybox_rootfs "$1"
    mkdir -p "$1/app" "$1/etc/app"
    cp "$SRC/app-run.sh" "$1/app/run.sh"
    chmod 0755 "$1/app/run.sh"
    printf 'built into the image; replaced by the rendered config\n' >"$1/etc/app/default.conf"
}

source_hash() {
    { cat "${BASH_SOURCE[0]}" "$SRC/app-run.sh"; sha256sum "$BUSYBOX"; } | sha256sum | cut -d' ' -f1
}

build() {
    command -v umoci >/dev/null || { log "error: umoci missing (Debian package umoci)"; exit 1; }
    command -v skopeo >/dev/null || { log "error: skopeo missing (Debian package skopeo)"; exit 1; }
    [ -x "$BUSYBOX" ] || { log "error: $BUSYBOX missing (Debian package busybox-static)"; exit 1; }
    mkdir -p "$OUT"
    exec 8>"$OUT/../images.lock"
    flock 8
    local hash
    hash="$(source_hash)"
    if [ -f "$OUT/stamp" ] && [ "$(cat "$OUT/stamp")" = "$hash" ]; then
        log "up to date: $OUT"
        return 0
    fi
    rm -rf "${OUT:?}"/*
    make_image "$OUT/pause-oci" busybox busybox_rootfs \
        --config.entrypoint /bin/sleep --config.cmd 2147483647 --config.workingdir /
    skopeo copy -q "oci:$OUT/pause-oci:busybox" \
        "docker-archive:$OUT/pause.tar:localhost/kube-controlplane/pause:busybox" >&2
    rm -rf "$OUT/pause-oci"
    make_image "$OUT/app" 1 app_rootfs \
        --config.entrypoint /bin/sh --config.cmd /app/run.sh --config.workingdir / \
        --config.env APP_CONFIG_DIR=/etc/app --config.env APP_PORT=8080 --config.exposedports 8080/tcp
    echo "$hash" >"$OUT/stamp"
    log "built $OUT/pause.tar and $OUT/app"
}

push() {
    local addr="$1" out="$2" image digest config
    image="$addr/appimage-test/app:1"
    local tmp
    tmp="$(mktemp)"
    skopeo copy -q --preserve-digests --dest-tls-verify=false --digestfile "$tmp" \
        "oci:$OUT/app:1" "docker://$image" >&2
    digest="$(cat "$tmp")"
    rm -f "$tmp"
    config="$(skopeo inspect --tls-verify=false --raw "docker://$addr/appimage-test/app@$digest" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["config"]["digest"])')"
    printf 'APP_IMAGE=%s\nAPP_MANIFEST_DIGEST=%s\nAPP_IMAGE_ID=%s\n' "$image" "$digest" "$config" >"$out.tmp"
    mv -f "$out.tmp" "$out"
    cat "$out"
}

case "${1:-}" in
build) build ;;
push)
    [ $# -eq 3 ] || { echo "usage: $0 push ADDR OUT" >&2; exit 2; }
    push "$2" "$3"
    ;;
*)
    echo "usage: $0 build | push ADDR OUT" >&2
    exit 2
    ;;
esac
