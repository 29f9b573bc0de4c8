#!/usr/bin/env bash
# Build the kubectl-appimage release archive of one platform and its krew manifest, or the
# appimage-webhook container image.
#
#   scripts/release.sh [--target TRIPLE] [--binary PATH] [--out-dir DIR] [--template FILE]
#   scripts/release.sh image [--libc musl|gnu] [--binary PATH] [--out-dir DIR] [--repository REPO]
#
#   --target TRIPLE   cross-build for this Rust target (x86_64/aarch64, linux/apple-darwin)
#                     instead of this machine's platform
#   --binary PATH     package this already built kubectl-appimage instead of building one
#                     (the platform is still --target's, or this machine's; the version is
#                     the one it reports when it runs here)
#   --out-dir DIR     where to write (default: target/release-archive)
#   --template FILE   krew manifest to start from (default: krew/appimage.yaml); pass the
#                     previous appimage.yaml to collect several platforms in one manifest
#
# Writes DIR/kubectl-appimage-<os>-<arch>.tar.gz (kubectl-appimage, kubectl_complete-appimage, LICENSE;
# a deterministic tar: same inputs, same bytes) and DIR/appimage.yaml: the krew manifest with this platform's
# release URI and sha256 filled in. The hash step is `cargo run -p appimage-e2e --bin
# krew-manifest` (SHA-256 from the sha2 crate); set KREW_MANIFEST to a built krew-manifest
# binary to use it instead. Needs GNU tar (gtar on macOS). See krew/README.md.
#
# `image` builds the webhook's image for this machine's architecture as an OCI archive,
# DIR/appimage-webhook-<version>.oci.tar (default DIR: target/image), tagged
# REPO:<version> (default REPO: kuscia-appimage/appimage-webhook, the chart's default). No
# container engine, no registry: a static appimage-webhook (musl; --libc gnu, or when the
# musl target cannot be installed, static glibc) is the only file of a scratch image, run as
# user 65532, put together with umoci; the archive is a deterministic tar of the OCI layout.
# --binary packages an already built static appimage-webhook instead. Needs umoci (Debian:
# `apt-get install umoci`), musl-gcc for the musl build (`apt-get install musl-tools`).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO_URL=https://github.com/kuscia-appimage/kubectl-appimage

usage() {
    sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}
die() {
    echo "release.sh: $*" >&2
    exit 1
}

# ---------------------------------------------------------------------------------------------
# release.sh image: the webhook's container image
# ---------------------------------------------------------------------------------------------
IMAGE_REPOSITORY=kuscia-appimage/appimage-webhook
IMAGE_USER=65532:65532
IMAGE_PORT=8443

# The image's binary is built with the `container` profile: release with thin instead of fat
# LTO and 16 codegen units, so that the last step (about 60% of a cold build, which the tests
# do on every CI run) can use every core; it costs a bigger binary (figures in README.md's
# image section). Defined here, not in Cargo.toml, so that it only serves this image; its
# output lands in target/<triple>/container, apart from others' builds.
CONTAINER_PROFILE=(
    --config 'profile.container.inherits="release"'
    --config 'profile.container.lto="thin"'
    --config 'profile.container.codegen-units=16'
    --profile container
)

# The Rust target triple of a static appimage-webhook for this machine: <arch>-unknown-linux-musl,
# installing the musl target with rustup when it is missing, else (or with --libc gnu)
# <arch>-unknown-linux-gnu with a static C runtime.
static_triple() {
    local libc="$1" arch
    arch="$(uname -m)"
    case "$arch" in x86_64 | aarch64) ;; *) die "unsupported architecture $arch (x86_64 or aarch64)" ;; esac
    if [ "$libc" = musl ]; then
        local triple="$arch-unknown-linux-musl"
        if [ -d "$(rustc --print target-libdir --target "$triple" 2>/dev/null)" ] ||
            rustup target add "$triple" >&2; then
            command -v musl-gcc >/dev/null 2>&1 ||
                die "musl-gcc is needed to build ring and mimalloc for $triple (Debian: apt-get install musl-tools), or pass --libc gnu"
            echo "$triple"
            return
        fi
        echo "release.sh: the $triple target cannot be installed; building a static glibc binary" >&2
    fi
    echo "$arch-unknown-linux-gnu"
}

# Build appimage-webhook statically for `triple`; prints the binary's path.
build_static_webhook() {
    local triple="$1" target_dir
    echo "release.sh: building a static appimage-webhook for $triple..." >&2
    case "$triple" in
    *-gnu) RUSTFLAGS='-C target-feature=+crt-static' \
        cargo build --locked -p appimage-webhook --target "$triple" "${CONTAINER_PROFILE[@]}" >&2 ;;
    *) cargo build --locked -p appimage-webhook --target "$triple" "${CONTAINER_PROFILE[@]}" >&2 ;;
    esac
    target_dir="$(cargo metadata --format-version 1 --no-deps |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
    echo "$target_dir/$triple/container/appimage-webhook"
}

# Fail unless `bin` is a static ELF executable: no program interpreter, no shared libraries.
check_static() {
    local bin="$1" headers
    command -v readelf >/dev/null 2>&1 || die "readelf is needed (Debian: apt-get install binutils)"
    headers="$(readelf -lW "$bin" 2>&1)" || die "$bin is not an ELF executable: $headers"
    if grep -q 'program interpreter' <<<"$headers" || readelf -dW "$bin" | grep -q '(NEEDED)'; then
        die "$bin is dynamically linked; the image has no libraries (build it with --libc musl or gnu)"
    fi
}

# The git revision of the sources, `-dirty` when tracked files have uncommitted changes.
source_revision() {
    local rev
    rev="${REVISION:-}"
    if [ -z "$rev" ]; then
        rev="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null)" ||
            die "cannot read the git revision of $ROOT; set REVISION"
        [ -z "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ] || rev="$rev-dirty"
    fi
    echo "$rev"
}

# The scratch image holding only `bin` as /appimage-webhook, in the OCI layout `layout` under
# `ref`. `epoch` is every timestamp, so the same binary and labels give the same image bytes.
# The layer is a GNU tar added verbatim: `umoci insert` (0.4.7) writes a tar without its
# padding and end blocks, which runtimes accept but `tar` and image scanners reject.
assemble_image() {
    local layout="$1" ref="$2" bin="$3" version="$4" revision="$5" epoch="$6" arch="$7"
    local created stage history
    created="$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)"
    history=(--history.created "$created" --history.created_by "scripts/release.sh image")
    stage="$(dirname "$layout")/rootfs"
    mkdir -p "$stage"
    install -m 0755 "$bin" "$stage/appimage-webhook"
    tar --mtime="@$epoch" --owner=0 --group=0 --numeric-owner --format=ustar \
        -C "$stage" -cf "$stage.tar" appimage-webhook
    umoci init --layout "$layout"
    umoci new --image "$layout:$ref"
    umoci raw add-layer --image "$layout:$ref" "${history[@]}" "$stage.tar"
    umoci config --image "$layout:$ref" "${history[@]}" --created "$created" \
        --os linux --architecture "$arch" \
        --config.user "$IMAGE_USER" --config.entrypoint /appimage-webhook \
        --config.exposedports "$IMAGE_PORT/tcp" \
        --config.label "org.opencontainers.image.title=appimage-webhook" \
        --config.label "org.opencontainers.image.description=Admission webhook that injects Kuscia AppImages into labelled Pods" \
        --config.label "org.opencontainers.image.version=$version" \
        --config.label "org.opencontainers.image.revision=$revision" \
        --config.label "org.opencontainers.image.source=$REPO_URL" \
        --config.label "org.opencontainers.image.licenses=Apache-2.0" \
        --config.label "org.opencontainers.image.created=$created"
    umoci gc --layout "$layout"
}

image() {
    local libc=musl binary="" out_dir="$ROOT/target/image" repository="$IMAGE_REPOSITORY"
    while [ $# -gt 0 ]; do
        case "$1" in
        --libc) libc="${2:?}"; shift 2 ;;
        --libc=*) libc="${1#*=}"; shift ;;
        --binary) binary="${2:?}"; shift 2 ;;
        --binary=*) binary="${1#*=}"; shift ;;
        --out-dir) out_dir="${2:?}"; shift 2 ;;
        --out-dir=*) out_dir="${1#*=}"; shift ;;
        --repository) repository="${2:?}"; shift 2 ;;
        --repository=*) repository="${1#*=}"; shift ;;
        -h | --help) usage ;;
        *) echo "release.sh image: unknown argument $1" >&2; usage ;;
        esac
    done
    case "$libc" in musl | gnu) ;; *) die "--libc is musl or gnu, not '$libc'" ;; esac
    command -v umoci >/dev/null 2>&1 || die "umoci is needed (Debian: apt-get install umoci)"
    case "$out_dir" in /*) ;; *) out_dir="$PWD/$out_dir" ;; esac
    [ -z "$binary" ] || case "$binary" in /*) ;; *) binary="$PWD/$binary" ;; esac
    cd "$ROOT"

    [ -n "$binary" ] || binary="$(build_static_webhook "$(static_triple "$libc")")"
    [ -x "$binary" ] || die "no executable at $binary"
    check_static "$binary"
    local version arch revision epoch
    version="$("$binary" --version | sed -n 's/^appimage-webhook //p')"
    case "$version" in
    [0-9]*.[0-9]*.[0-9]*) ;;
    *) die "cannot read the version of $binary (got '$version')" ;;
    esac
    case "$(uname -m)" in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; esac
    revision="$(source_revision)"
    epoch="${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || echo 0)}"

    local ref="$repository:$version" archive
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    assemble_image "$work/oci" "$ref" "$binary" "$version" "$revision" "$epoch" "$arch"
    mkdir -p "$out_dir"
    archive="$out_dir/appimage-webhook-$version.oci.tar"
    # oci-archive: the layout as a plain tar; fixed order, times and owners.
    tar --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner --mode=go+rX \
        --format=gnu -C "$work/oci" -cf "$archive.tmp" oci-layout index.json blobs
    mv -f "$archive.tmp" "$archive"
    echo "image: $archive"
    echo "reference: $ref"
    # The layer in the archive is gzip-compressed: this is what a registry stores.
    echo "size: $(wc -c <"$archive") bytes"
}

if [ "${1:-}" = image ]; then
    shift
    image "$@"
    exit 0
fi

target="" binary="" out_dir="$ROOT/target/release-archive" template="$ROOT/krew/appimage.yaml"
while [ $# -gt 0 ]; do
    case "$1" in
    --target) target="${2:?}"; shift 2 ;;
    --target=*) target="${1#*=}"; shift ;;
    --binary) binary="${2:?}"; shift 2 ;;
    --binary=*) binary="${1#*=}"; shift ;;
    --out-dir) out_dir="${2:?}"; shift 2 ;;
    --out-dir=*) out_dir="${1#*=}"; shift ;;
    --template) template="${2:?}"; shift 2 ;;
    --template=*) template="${1#*=}"; shift ;;
    -h | --help) usage ;;
    *) echo "release.sh: unknown argument $1" >&2; usage ;;
    esac
done

# The krew platform (os, arch) of a Rust target triple, or of this machine.
if [ -n "$target" ]; then
    case "$target" in
    x86_64-*) arch=amd64 ;;
    aarch64-*) arch=arm64 ;;
    *) die "unsupported target $target (x86_64 or aarch64)" ;;
    esac
    case "$target" in
    *-linux-*) os=linux ;;
    *-apple-darwin) os=darwin ;;
    *) die "unsupported target $target (linux or apple-darwin)" ;;
    esac
else
    case "$(uname -s)" in
    Linux) os=linux ;;
    Darwin) os=darwin ;;
    *) die "unsupported OS $(uname -s)" ;;
    esac
    case "$(uname -m)" in
    x86_64 | amd64) arch=amd64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) die "unsupported architecture $(uname -m)" ;;
    esac
fi

# Paths given relative to the caller's directory.
abs() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
out_dir="$(abs "$out_dir")" template="$(abs "$template")"
[ -n "$binary" ] && binary="$(abs "$binary")"

cd "$ROOT"
# The plugin's version, e.g. 0.1.0 -> release tag v0.1.0: what a given binary reports when it
# runs here, else the crate's version.
version=""
if [ -n "$binary" ] && [ -x "$binary" ]; then
    version="$("$binary" version 2>/dev/null | sed -n 's/^kubectl-appimage version v//p')" || true
fi
if [ -z "$version" ]; then
    version="$(cargo pkgid -p kubectl-appimage | sed 's/.*[@#]//')"
fi
case "$version" in
[0-9]*.[0-9]*.[0-9]*) ;;
*) die "cannot read the version of kubectl-appimage (got '$version')" ;;
esac

if [ -z "$binary" ]; then
    target_args=()
    [ -n "$target" ] && target_args=(--target "$target")
    echo "release.sh: building kubectl-appimage v$version for $os/$arch..." >&2
    cargo build --release --locked -p kubectl-appimage "${target_args[@]}" >&2
    target_dir="$(cargo metadata --format-version 1 --no-deps |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
    binary="$target_dir/${target:+$target/}release/kubectl-appimage"
fi
[ -x "$binary" ] || die "no executable at $binary"

# GNU tar for --sort/--mtime/--owner (gtar on macOS).
tar=tar
command -v gtar >/dev/null 2>&1 && tar=gtar
"$tar" --version 2>/dev/null | grep -q 'GNU tar' || die "GNU tar is needed (install gtar)"

name="kubectl-appimage-$os-$arch"
mkdir -p "$out_dir"
archive="$out_dir/$name.tar.gz"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
install -m 0755 "$binary" "$stage/kubectl-appimage"
install -m 0644 "$ROOT/LICENSE" "$stage/LICENSE"
install -m 0755 "$ROOT/krew/kubectl_complete-appimage" "$stage/kubectl_complete-appimage"
# Deterministic: fixed times and owners, no name/time in the gzip header; members named in
# sorted order (--sort=name only orders what tar finds in directories).
"$tar" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
    -C "$stage" -cf - LICENSE kubectl-appimage kubectl_complete-appimage | gzip -n >"$archive.tmp"
mv -f "$archive.tmp" "$archive"

uri="$REPO_URL/releases/download/v$version/$name.tar.gz"
manifest="$out_dir/appimage.yaml"
if [ -n "${KREW_MANIFEST:-}" ]; then
    "$KREW_MANIFEST" --template "$template" "$archive" "$uri" "$manifest" >&2
else
    cargo run -q -p appimage-e2e --bin krew-manifest -- \
        --template "$template" "$archive" "$uri" "$manifest" >&2
fi
echo "archive: $archive"
echo "manifest: $manifest"
