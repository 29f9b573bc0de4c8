#!/usr/bin/env bash
# Build the kubectl-appimage release archive of one platform and its krew manifest.
#
#   scripts/release.sh [--target TRIPLE] [--binary PATH] [--out-dir DIR] [--template FILE]
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
# Writes DIR/kubectl-appimage-<os>-<arch>.tar.gz (kubectl-appimage + LICENSE, a deterministic
# tar: same inputs, same bytes) and DIR/appimage.yaml: the krew manifest with this platform's
# release URI and sha256 filled in. The hash step is `cargo run -p appimage-e2e --bin
# krew-manifest` (SHA-256 from the sha2 crate); set KREW_MANIFEST to a built krew-manifest
# binary to use it instead. Needs GNU tar (gtar on macOS). See krew/README.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO_URL=https://github.com/kuscia-appimage/kubectl-appimage

usage() {
    sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}
die() {
    echo "release.sh: $*" >&2
    exit 1
}

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
# Deterministic: fixed times and owners, no name/time in the gzip header; members named in
# sorted order (--sort=name only orders what tar finds in directories).
"$tar" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
    -C "$stage" -cf - LICENSE kubectl-appimage | gzip -n >"$archive.tmp"
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
