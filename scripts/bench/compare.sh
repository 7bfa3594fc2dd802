#!/usr/bin/env bash
# Before/after of performance changes: the same replay with several mailguard binaries.
#
#   scripts/bench/compare.sh CAPTURE PROFILE RUNS BINARY...
#
# Build each commit to compare (e.g. `git worktree add /tmp/x COMMIT && cargo build
# --release` there, or copy target/release/mailguard aside after each build), then pass the
# binaries. Prints one line per command: median wall seconds and median CPU seconds (user +
# system) of `mailguard replay CAPTURE -o OUT --profile PROFILE` over RUNS runs, after one
# warm-up round. The commands are alternated (run 1 of each, run 2 of each, ...) so that
# load from others on a shared machine falls on all of them alike.
# With PEER=1 in the environment, `tcpdump -r CAPTURE -w OUT` runs in the same rounds and
# each line also gives the speed ratio to it (above 1: faster than tcpdump).
# The output goes to a temporary file next to $TMPDIR and is removed.
set -euo pipefail
[ $# -ge 4 ] || { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
in=$1 prof=$2 runs=$3
shift 3
out=$(mktemp --suffix=.pcap "${TMPDIR:-/tmp}/compare.XXXXXX")
trap 'rm -f "$out"' EXIT
python3 - "$in" "$prof" "$runs" "$out" "${PEER:-0}" "$@" <<'PY'
import os, statistics, subprocess, sys, time

capture, profile, runs, out, peer, *binaries = sys.argv[1:]
commands = [(b, [b, "replay", capture, "-o", out, "--profile", profile]) for b in binaries]
if peer == "1":
    commands.append(("tcpdump", ["tcpdump", "-r", capture, "-w", out]))

def run(argv):
    """Wall and CPU (user + system) seconds of one run; fails on a non-zero exit."""
    start = time.perf_counter()
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        sys.exit(f"{' '.join(argv)}: exit status {status}")
    return wall, usage.ru_utime + usage.ru_stime

for _, argv in commands:  # warm-up round
    run(argv)
results = {name: [] for name, _ in commands}
for _ in range(int(runs)):
    for name, argv in commands:
        results[name].append(run(argv))
medians = {n: (statistics.median(w for w, _ in r), statistics.median(c for _, c in r))
           for n, r in results.items()}
for name, (wall, cpu) in medians.items():
    line = f"{name}\twall {wall:.3f} s\tcpu {cpu:.3f} s"
    if "tcpdump" in medians and name != "tcpdump":
        tw, tc = medians["tcpdump"]
        line += f"\tvs tcpdump: wall {tw / wall:.2f}x, cpu {tc / cpu:.2f}x"
    print(line)
PY
