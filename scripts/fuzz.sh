#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for a bounded time and keeps what crashes.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# SECONDS per target (default 60); TARGETs default to all (frame policy engine).
# Installs cargo-fuzz if missing. Works on the stable toolchain through RUSTC_BOOTSTRAP=1
# (cargo-fuzz needs nightly flags such as -Zsanitizer). Built without a sanitizer by default:
# mailguard is safe Rust, where AddressSanitizer finds little and costs ~5x the executions
# (170 vs 856 exec/s on the policy target); FUZZ_SANITIZER=address turns it back on. Each target's corpus grows in fuzz/corpus/<target> (not
# committed) and starts from fuzz/seeds/<target>. Any crashing input is copied into
# fuzz/regressions/<target>/, where tests/fuzz_regressions.rs replays it on stable; the
# script then exits 1.
set -euo pipefail

cd "$(dirname "$0")/.."
SECONDS_PER_TARGET="${1:-60}"
shift || true
TARGETS=("$@")
if [ "${#TARGETS[@]}" -eq 0 ]; then
    TARGETS=(frame policy engine)
fi
SANITIZER="${FUZZ_SANITIZER:-none}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install --locked cargo-fuzz
fi
if ! rustc --version | grep -q nightly; then
    export RUSTC_BOOTSTRAP=1
fi

found=0
for t in "${TARGETS[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t" "fuzz/regressions/$t"
    extra=()
    if [ "$t" != frame ]; then
        # Sessions need room: let inputs grow to 4 KiB at once instead of slowly.
        extra=("-dict=fuzz/smtp.dict" "-max_len=4096" "-len_control=0")
    fi
    echo "fuzz.sh: $t for ${SECONDS_PER_TARGET}s" >&2
    status=0
    cargo fuzz run -O --sanitizer "$SANITIZER" "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 "${extra[@]}" || status=$?
    for a in "fuzz/artifacts/$t"/crash-* "fuzz/artifacts/$t"/oom-* \
        "fuzz/artifacts/$t"/timeout-* "fuzz/artifacts/$t"/leak-*; do
        [ -f "$a" ] || continue
        cp -n "$a" "fuzz/regressions/$t/"
        echo "fuzz.sh: $t: kept $(basename "$a") in fuzz/regressions/$t/" >&2
        found=1
    done
    if [ "$status" -ne 0 ] && [ "$found" -eq 0 ]; then
        echo "fuzz.sh: $t: cargo fuzz failed (exit $status) without an artifact" >&2
        exit "$status"
    fi
done

if [ "$found" -ne 0 ]; then
    echo "fuzz.sh: crashes found; replay them with: cargo test --test fuzz_regressions" >&2
    exit 1
fi
echo "fuzz.sh: no crash in ${TARGETS[*]}"
