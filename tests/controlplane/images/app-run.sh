#!/bin/sh
# The app image's entrypoint (tests/controlplane/images, built by scripts/images.sh): prints
# every file under its config directory, then serves that directory over HTTP.
#   APP_CONFIG_DIR  directory to print and serve (default /etc/app)
#   APP_PORT        HTTP port (default 8080)
# Output per file, sorted by path: a line "=== <path> <size in bytes>", the file's bytes,
# then a newline; after the last file a line "=== end". The sizes let a reader take the
# bytes back exactly, newline or not.
dir="${APP_CONFIG_DIR:-/etc/app}"
port="${APP_PORT:-8080}"
find "$dir" -type f -o -type l | sort | while read -r f; do
    case "$f" in */..*) continue ;; esac # a projected volume's timestamped copies
    [ -f "$f" ] || continue
    echo "=== $f $(wc -c <"$f")"
    cat "$f"
    echo
done
echo "=== end"
exec httpd -f -p "$port" -h "$dir"
