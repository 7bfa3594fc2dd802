#!/usr/bin/env bash
# Before/after of performance changes: the same replay with several mailguard binaries.
#
#   scripts/bench/compare.sh CAPTURE PROFILE RUNS BINARY...
#
# Build each commit to compare (e.g. `git worktree add /tmp/x COMMIT && cargo build
# --release` there, or copy target/release/mailguard aside after each build), then pass the
# binaries. Prints one line per binary: median wall seconds and CPU seconds (user + system)
# of `mailguard replay CAPTURE -o OUT --profile PROFILE`, from hyperfine (-N, 1 warm-up).
# The output goes to a temporary file next to the capture and is removed.
set -euo pipefail
[ $# -ge 4 ] || { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
in=$1 prof=$2 runs=$3
shift 3
out=$(mktemp --suffix=.pcap "${TMPDIR:-/tmp}/compare.XXXXXX")
json=$(mktemp --suffix=.json "${TMPDIR:-/tmp}/compare.XXXXXX")
trap 'rm -f "$out" "$json"' EXIT
args=()
for b in "$@"; do args+=(-n "$b" "$b replay $in -o $out --profile $prof"); done
hyperfine -N --style none --warmup 1 --runs "$runs" --export-json "$json" "${args[@]}" >/dev/null
python3 - "$json" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1]))["results"]:
    print(f"{r['command']}\twall {r['median']:.3f} s\tcpu {r['user'] + r['system']:.3f} s")
PY
