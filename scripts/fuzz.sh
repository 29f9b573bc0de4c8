#!/usr/bin/env bash
# Fuzzing with cargo-fuzz (libFuzzer, nightly Rust, AddressSanitizer). The project is fuzz/,
# outside the workspace (its own lock file and target dir).
#
#   scripts/fuzz.sh smoke [TARGET...]    each target for FUZZ_SECONDS (default 20) seconds (CI smoke)
#   scripts/fuzz.sh long [TARGET...]     each target for FUZZ_RUNS (default 10000000) executions
#   scripts/fuzz.sh regress [TARGET...]  each target once over its fuzz/regressions/<target>/ inputs
#   scripts/fuzz.sh build                build every target
#
# Targets: render, admission_mutate, manifest, signature (see fuzz/fuzz_targets/). Seeds are
# committed in fuzz/seeds/<target>; the growing corpus is fuzz/corpus/<target> and crash inputs
# land in fuzz/artifacts/<target> (neither is committed: copy a crash to fuzz/regressions/<target>/).
# FUZZ_SANITIZER picks the sanitizer (see below). Every run is niced (nice -n 19) and logs to target/fuzz-logs/<target>.<mode>.log; each prints
# one summary line: target, executions, seconds, exec/s, result.
#
# On a fresh machine it installs what it needs: the nightly toolchain (rustup; stable with
# RUSTC_BOOTSTRAP=1 if that fails) and cargo-fuzz (cargo install).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ALL_TARGETS=(render admission_mutate manifest signature)
LOGS="$ROOT/target/fuzz-logs"

log() { echo "fuzz.sh: $*" >&2; }

# cargo-fuzz passes unstable compiler flags: nightly, or stable with RUSTC_BOOTSTRAP=1 where no
# nightly can be installed (FUZZ_TOOLCHAIN=stable picks that directly).
TOOLCHAIN="${FUZZ_TOOLCHAIN:-nightly}"

ensure_tools() {
    if [ "$TOOLCHAIN" = nightly ] && ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
        log "installing the nightly toolchain"
        if ! rustup toolchain install nightly --profile minimal >&2; then
            log "no nightly toolchain; using stable with RUSTC_BOOTSTRAP=1"
            TOOLCHAIN=stable
        fi
    fi
    if [ "$TOOLCHAIN" != nightly ]; then
        export RUSTC_BOOTSTRAP=1
    fi
    if ! cargo fuzz --version >/dev/null 2>&1; then
        log "installing cargo-fuzz"
        cargo install cargo-fuzz >&2
    fi
}

# FUZZ_SANITIZER: none (default: safe Rust; 3-5x the executions per second) or address
# (AddressSanitizer, for the unsafe code of dependencies such as the YAML parser). Each has
# its own target dir, so switching does not rebuild the other.
SANITIZER="${FUZZ_SANITIZER:-none}"

fuzz() {
    local cmd=$1
    shift
    (cd "$ROOT/fuzz" && nice -n 19 cargo +"$TOOLCHAIN" fuzz "$cmd" --sanitizer "$SANITIZER" \
        --target-dir "target/$SANITIZER" "$@")
}

# Summarise a libFuzzer log: executions, seconds, exec/s, result.
summary() {
    local target=$1 logfile=$2 status=$3 seconds=$4
    local execs rate result
    execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$logfile" | tail -1 | awk '{print $2}')
    rate=$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$logfile" | tail -1 | awk '{print $2}')
    if [ "$status" -eq 0 ]; then
        result=ok
    elif grep -q 'Test unit written to' "$logfile"; then
        result="CRASH $(grep -o 'Test unit written to .*' "$logfile" | tail -1 | sed 's/Test unit written to //')"
    else
        result="failed (exit $status)"
    fi
    printf '%-18s execs=%-10s seconds=%-6s exec/s=%-7s %s\n' "$target" "${execs:-?}" "$seconds" "${rate:-?}" "$result"
}

run_target() {
    local mode=$1 target=$2
    shift 2
    mkdir -p "$ROOT/fuzz/corpus/$target" "$LOGS"
    local logfile="$LOGS/$target.$mode.log" start status=0
    start=$(date +%s)
    fuzz run "$target" "corpus/$target" "seeds/$target" -- \
        -print_final_stats=1 -timeout=30 -rss_limit_mb=3072 "$@" >"$logfile" 2>&1 || status=$?
    summary "$target" "$logfile" "$status" "$(($(date +%s) - start))"
    return "$status"
}

mode=${1:-smoke}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${ALL_TARGETS[@]}")

ensure_tools
mkdir -p "$LOGS"
case "$mode" in
    build)
        fuzz build >&2
        ;;
    smoke | long)
        fuzz build >&2
        failed=0
        for t in "${targets[@]}"; do
            if [ "$mode" = smoke ]; then
                run_target smoke "$t" "-max_total_time=${FUZZ_SECONDS:-20}" || failed=1
            else
                run_target long "$t" "-runs=${FUZZ_RUNS:-10000000}" || failed=1
            fi
        done
        exit "$failed"
        ;;
    regress)
        fuzz build >&2
        failed=0
        for t in "${targets[@]}"; do
            dir="$ROOT/fuzz/regressions/$t"
            inputs=()
            if [ -d "$dir" ]; then
                while IFS= read -r f; do inputs+=("$f"); done < <(find "$dir" -type f ! -name '*.md' | sort)
            fi
            if [ ${#inputs[@]} -eq 0 ]; then
                printf '%-18s no regression inputs\n' "$t"
                continue
            fi
            # Given files, libFuzzer runs each once and stops at the first crash.
            if fuzz run "$t" "${inputs[@]}" >"$LOGS/$t.regress.log" 2>&1; then
                printf '%-18s %d regression inputs pass\n' "$t" "${#inputs[@]}"
            else
                printf '%-18s FAILS on a regression input (see %s)\n' "$t" "$LOGS/$t.regress.log"
                failed=1
            fi
        done
        exit "$failed"
        ;;
    *)
        echo "usage: scripts/fuzz.sh smoke|long|regress|build [TARGET...]" >&2
        exit 2
        ;;
esac
