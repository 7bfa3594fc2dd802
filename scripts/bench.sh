#!/usr/bin/env bash
# Throughput per core of mailguard against its peers, in one run on the same inputs (issue 6).
#
#   scripts/bench.sh [--quick] [--criterion] [--only replay,scale,live] [--out FILE]
#
#   --quick       everything shrunk to run in a few minutes (script debugging)
#   --criterion   also run `cargo bench --bench engine` (engine alone, from memory) first;
#                 without it the last criterion results found in target/criterion are used
#   --only LIST   run only these parts (replay, scale, live); default all
#   --out FILE    where the report goes (default BENCHMARKS.md at the repository root;
#                 the plot goes next to it in benches/throughput.png)
#
# Parts:
#   replay  `mailguard replay` (off, pix51, strict) vs `tcpdump -r IN -w OUT` vs
#           `cat IN > /dev/null`, hyperfine medians, on a bulk capture of >= 500 MB and a
#           command-heavy capture, both made by `mailguard gen`;
#   scale   replay of a `--concurrent 1000000` capture (peak RSS via /usr/bin/time -v) and
#           bytes of state per idle connection (RSS slope between two smaller captures);
#   live    a namespace lab (client -- veth -- forwarder -- veth -- server); the forwarder is
#           the kernel bridge, netsniff-ng (one process per direction, pinned together to one
#           CPU) or `mailguard bridge` (1 pinned worker, then 2); loads: iperf3 to port 25
#           (single stream, 4 streams, small MSS), an SMTP NOOP ping-pong for latency;
#           run in each lab BENCH_RPS lists (default: the plain lab, then the steered one).
#
# Environment: MAILGUARD (the binary; default target/release/mailguard, built here),
#   BENCH_DIR (scratch; default /dev/shm/mg-bench if it has room, else /tmp/mg-bench),
#   BENCH_PREFIX (lab name prefix, default mgbn), BENCH_CPU (CPU the forwarder is pinned
#   to, default the last one), BENCH_BRIDGE_FLAGS (more options for every `mailguard
#   bridge` row, e.g. "--busy-poll-us 0"; the rows mg1-off-bp0/bp200 set it themselves),
#   BENCH_LIVE_LOADS (replaces every row's loads, e.g. "latency" for latency rows only),
#   BENCH_TX_STEPS (non-empty: also rows mg1-off-bypass and mg1-off-txring, the bridge's
#   transmit side with qdisc bypass, then also its transmit ring, for comparison in one run),
#   BENCH_LIVE_ROWS (comma-separated row labels to run, e.g. "kernel,mg1-off"; default all),
#   BENCH_RPS (the labs the live part runs, in order, comma-separated; default "0,1", both:
#   0 is the plain lab, where a host's receive processing runs on the CPU of whoever
#   transmits into its veth, i.e. the forwarder's pinned core for netsniff-ng and mailguard
#   but the client's for the kernel bridge; 1: Receive Packet Steering on the hosts' veth
#   ends, so each host's receive runs on the load generators' CPU, as on a real wire, for
#   every forwarder alike (netsniff-ng's streams stall under it: notes.md); 2: as 1, and
#   the forwarder's own veth ends steered to the forwarder's CPU), BENCH_BACKLOG
#   (net.core.netdev_max_backlog while the live part runs with RPS, default 10000, restored
#   after; 0: left alone).
# Needs root for the live part, and: hyperfine tcpdump iperf3 netsniff-ng ethtool iproute2
# postfix (smtp-sink) gcc python3 (matplotlib is installed if missing).
# Every load is bounded in time (timeout); everything created is torn down on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
QUICK=0 CRITERION=0 ONLY="replay,scale,live" OUT="$ROOT/BENCHMARKS.md"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --criterion) CRITERION=1 ;;
    --only) ONLY=$2; shift ;;
    --out) OUT=$2; shift ;;
    -h|--help) sed -n '2,/^[^#]/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
want() { case ",$ONLY," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

# ---------------------------------------------------------------------------------------
# Sizes. Full run: about 15-20 minutes on 2 cores; quick: about 2 minutes.
if [ "$QUICK" = 1 ]; then
  BULK_SESSIONS=150 CMD_SESSIONS=2000 SCALE_N=100000 SLOPE_A=5000 SLOPE_B=20000
  RUNS=2 SLOW_RUNS=2 LIVE_SECS=2 PING_COUNT=2000 SCALE_TIMEOUT=60
else
  BULK_SESSIONS=2100 CMD_SESSIONS=30000 SCALE_N=1000000 SLOPE_A=20000 SLOPE_B=60000
  RUNS=5 SLOW_RUNS=5 LIVE_SECS=8 PING_COUNT=20000 SCALE_TIMEOUT=240
fi
ATTACH_KB=256

P=${BENCH_PREFIX:-mgbn}
NCPU=$(nproc)
FWD_CPU=${BENCH_CPU:-$((NCPU - 1))}
LOAD_CPU=0
[ "$FWD_CPU" = "$LOAD_CPU" ] && [ "$NCPU" -gt 1 ] && LOAD_CPU=1
RPS_LABS=${BENCH_RPS:-0,1}
case ",$RPS_LABS," in
  *[!0-2,]*|*,,*) echo "bench: BENCH_RPS is a comma-separated list of 0, 1, 2 (got $RPS_LABS)" >&2; exit 2 ;;
esac
RPS=0
LK=live
if [ -z "${BENCH_DIR:-}" ]; then
  shm_free=$(df -Pm /dev/shm 2>/dev/null | awk 'NR==2 {print $4}')
  if [ "${shm_free:-0}" -gt 8000 ]; then BENCH_DIR=/dev/shm/mg-bench; else BENCH_DIR=/tmp/mg-bench; fi
fi
W=$BENCH_DIR
RES=$W/results.tsv
mkdir -p "$W"
# Only what an earlier run left (BENCH_DIR may be shared).
rm -f "$W"/*.pcap "$W"/*.json "$W"/*.txt "$W"/*.tsv "$W"/*.log
: >"$RES"
LOG=$W/bench.log
: >"$LOG"

say() { echo "bench: $*" | tee -a "$LOG" >&2; }
# Records one result: key value [note]
put() { printf '%s\t%s\t%s\n' "$1" "$2" "${3:-}" >>"$RES"; }

PIDS=()
LAB_UP=0
cleanup() {
  local pid
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
  done
  sleep 0.3
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true
  done
  if [ "$LAB_UP" = 1 ]; then lab_down; fi
  backlog_restore
  smem_restore
  rm -f "$W"/*.out.pcap
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------
# Tools.
need() {
  local t
  for t in "$@"; do
    command -v "$t" >/dev/null 2>&1 || { say "missing $t (scripts/install-deps.sh installs it)"; exit 1; }
  done
}
need hyperfine tcpdump python3 gcc
PY=python3
if ! $PY -c 'import matplotlib' 2>/dev/null; then
  if /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
    PY=/usr/bin/python3
  else
    say "installing matplotlib for the plot"
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ] &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-matplotlib >>"$LOG" 2>&1; then
      PY=/usr/bin/python3
    else
      python3 -m pip install --quiet matplotlib >>"$LOG" 2>&1 || say "no matplotlib: no plot"
    fi
  fi
fi

if [ -z "${MAILGUARD:-}" ]; then
  say "building mailguard (release)"
  (cd "$ROOT" && cargo build --release --quiet --bin mailguard)
  MAILGUARD=$ROOT/target/release/mailguard
fi
MG=$MAILGUARD
PINGPONG=$W/smtp-pingpong
gcc -O2 -o "$PINGPONG" "$ROOT/scripts/bench/smtp-pingpong.c"

# ---------------------------------------------------------------------------------------
# The machine.
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "commit: $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$(cd "$ROOT" && git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "kernel: $(uname -srm)"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "mode: $([ "$QUICK" = 1 ] && echo quick || echo full)"
  echo "versions: $(tcpdump --version 2>&1 | head -1); $(hyperfine --version); $(iperf3 --version 2>/dev/null | head -1 | cut -d' ' -f1-2); netsniff-ng $(netsniff-ng -v 2>/dev/null | grep -o 'netsniff-ng [0-9.]*' | head -1 | cut -d' ' -f2)"
  echo
  lscpu | grep -E '^(Architecture|Model name|CPU\(s\)|Thread|Core|Socket|CPU max MHz|CPU MHz|L1d|L2|L3|Hypervisor|Virtualization)' || true
  echo
  grep -E '^(MemTotal)' /proc/meminfo
} >"$W/machine.txt"

# Median seconds of each command of a hyperfine JSON export: prints "name median user system".
hf_medians() {
  $PY - "$1" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1]))["results"]:
    print(r["command"], r["median"], r["user"], r["system"])
PY
}

# ---------------------------------------------------------------------------------------
# Replay.
replay_capture() { # name file runs_fast runs_slow
  local name=$1 in=$2 fast=$3 slow=$4 out=$W/$1.out.pcap
  local bytes frames
  bytes=$(stat -c %s "$in")
  # What the filter does to this capture (kept for the report; also warms the page cache).
  "$MG" replay "$in" -o "$out" --profile strict >"$W/replay-$name-strict.txt" 2>&1 || true
  rm -f "$out"
  frames=$(sed -n 's/^input:.* \([0-9]*\) frames).*/\1/p' "$W/replay-$name-strict.txt")
  put "replay.$name.file_bytes" "$bytes"
  put "replay.$name.frames" "$frames"
  say "replay $name: $((bytes / 1000000)) MB, $frames frames"
  hyperfine -N --style basic --warmup 1 --runs "$fast" --export-json "$W/hf-$name-fast.json" \
    --cleanup "rm -f $out" \
    -n cat "sh -c 'cat $in > /dev/null'" \
    -n tcpdump "tcpdump -r $in -w $out" \
    -n off "$MG replay $in -o $out --profile off" >>"$LOG" 2>&1
  hyperfine -N --style basic --runs "$slow" --export-json "$W/hf-$name-slow.json" \
    --cleanup "rm -f $out" \
    -n pix51 "$MG replay $in -o $out --profile pix51" \
    -n strict "$MG replay $in -o $out --profile strict" >>"$LOG" 2>&1
  local f cmd med usr sys
  for f in "$W/hf-$name-fast.json" "$W/hf-$name-slow.json"; do
    while read -r cmd med usr sys; do
      put "replay.$name.$cmd.median_s" "$med"
      put "replay.$name.$cmd.user_s" "$usr"
      put "replay.$name.$cmd.sys_s" "$sys"
    done < <(hf_medians "$f")
  done
}

if want replay; then
  BULK=$W/bulk.pcap CMDS=$W/commands.pcap
  GEN_BULK="mailguard gen --sessions $BULK_SESSIONS --attachment-kb $ATTACH_KB --pipelining-ratio 0.3 --loss 0.001 -o bulk.pcap"
  GEN_CMDS="mailguard gen --sessions $CMD_SESSIONS --attachment-kb 0 --mails-per-session 3 --pipelining-ratio 0.5 --loss 0.001 -o commands.pcap"
  put cmd.gen_bulk "$GEN_BULK"
  put cmd.gen_cmds "$GEN_CMDS"
  say "generating captures"
  "$MG" gen --sessions "$BULK_SESSIONS" --attachment-kb "$ATTACH_KB" --pipelining-ratio 0.3 \
    --loss 0.001 -o "$BULK" 2>>"$LOG"
  "$MG" gen --sessions "$CMD_SESSIONS" --attachment-kb 0 --mails-per-session 3 \
    --pipelining-ratio 0.5 --loss 0.001 -o "$CMDS" 2>>"$LOG"
  cat "$BULK" "$CMDS" >/dev/null # page cache: every contender reads from memory
  replay_capture bulk "$BULK" "$RUNS" "$SLOW_RUNS"
  replay_capture commands "$CMDS" "$RUNS" "$SLOW_RUNS"
  rm -f "$CMDS"
  [ "$QUICK" = 1 ] && rm -f "$BULK"
fi

# ---------------------------------------------------------------------------------------
# Scale: state per connection. The defaults (262,144 connections, 1 GiB) would evict; these
# limits let every connection of the full-size capture be tracked.
SCALE_LIMITS="--max-connections 1000000 --max-memory 4G"
peak_rss() { # file -> KB and elapsed, from /usr/bin/time -v
  awk -F': ' '/Maximum resident set size/ {rss=$2} /Elapsed \(wall clock\)/ {el=$2}
    /Exit status/ {st=$2} END {print rss, el, st}' "$1"
}

scale_run() { # label sessions timeout
  local label=$1 n=$2 limit=$3 cap=$W/scale-$1.pcap
  "$MG" gen --sessions "$n" --concurrent "$n" --mails-per-session 0 -o "$cap" 2>>"$LOG"
  put "scale.$label.sessions" "$n"
  put "scale.$label.file_bytes" "$(stat -c %s "$cap")"
  local rc=0
  timeout --kill-after=5 "$limit" /usr/bin/time -v -o "$W/time-$label.txt" \
    "$MG" replay "$cap" -o /dev/null --profile strict $SCALE_LIMITS >"$W/scale-$label.txt" 2>&1 || rc=$?
  rm -f "$cap"
  if [ "$rc" = 137 ] || [ "$rc" = 124 ]; then
    put "scale.$label.timeout_s" "$limit"
    say "scale $label: replay did not finish within $limit s"
    return 0
  fi
  read -r rss elapsed status < <(peak_rss "$W/time-$label.txt")
  put "scale.$label.peak_rss_kb" "$rss"
  put "scale.$label.elapsed" "$elapsed"
  put "scale.$label.exit" "$status"
  local conns over
  conns=$(awk '/^connections:/ {print $2}' "$W/scale-$label.txt")
  over=$(grep -o 'over-limit [0-9]*' "$W/scale-$label.txt" | awk '{print $2}' || true)
  put "scale.$label.connections" "${conns:-0}"
  put "scale.$label.over_limit" "${over:-0}"
  say "scale $label: $n sessions, peak RSS $rss KB in $elapsed"
}

if want scale; then
  # A baseline with no connection state: the same replay of a tiny capture.
  "$MG" gen --sessions 1 -o "$W/one.pcap" 2>>"$LOG"
  /usr/bin/time -v -o "$W/time-base.txt" "$MG" replay "$W/one.pcap" -o /dev/null --profile strict >/dev/null 2>&1
  put scale.base.peak_rss_kb "$(peak_rss "$W/time-base.txt" | cut -d' ' -f1)"
  scale_run a "$SLOPE_A" "$SCALE_TIMEOUT"
  scale_run b "$SLOPE_B" "$SCALE_TIMEOUT"
  put cmd.gen_scale "mailguard gen --sessions $SCALE_N --concurrent $SCALE_N --mails-per-session 0 -o scale.pcap; mailguard replay scale.pcap -o /dev/null --profile strict $SCALE_LIMITS"
  scale_run full "$SCALE_N" "$SCALE_TIMEOUT"
fi

# ---------------------------------------------------------------------------------------
# Live.
NS_OUT=$P-out NS_IN=$P-in NS_BR=$P-br
CLIENT=198.19.6.1 SERVER=198.19.6.2
SMTP_SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
SMTP_SOURCE=$(command -v smtp-source || echo /usr/sbin/smtp-source)

# With RPS a host's received frames wait in its CPU's backlog (net.core.netdev_max_backlog,
# 1000 by default, one global setting) and are dropped when it is full: a forwarder on its
# own core outruns the host's CPU in bursts (mailguard counted about 5,000 refused frames,
# tx-errors, per quick run at 1000; none at 10000). A real host takes such bursts into its
# NIC ring, so the live part raises the backlog under RPS (BENCH_BACKLOG, default 10000; 0
# leaves it alone) and puts it back on exit. (netsniff-ng's streams still stall under RPS
# with no backlog drop: see scripts/bench/notes.md.)
BACKLOG_OLD=""
backlog_raise() {
  local want=${BENCH_BACKLOG:-10000}
  [ "$RPS" != 0 ] && [ "$want" != 0 ] || return 0
  BACKLOG_OLD=$(sysctl -n net.core.netdev_max_backlog)
  [ "$BACKLOG_OLD" -lt "$want" ] || { BACKLOG_OLD=""; return 0; }
  sysctl -qw net.core.netdev_max_backlog="$want"
}
backlog_restore() {
  [ -n "$BACKLOG_OLD" ] || return 0
  sysctl -qw net.core.netdev_max_backlog="$BACKLOG_OLD" || true
  BACKLOG_OLD=""
}

# netsniff-ng raises the system's socket memory when it starts (net.core.{r,w}mem_max to
# 100 MiB, {r,w}mem_default to 4 MiB, its SMEM_SUG_* values) and puts it back on exit. Inside
# a network namespace those global settings are read-only, so it warns and runs on the
# defaults: its transmit socket's 208 KiB then fills whenever the receiving host is slower
# than the ring (always under RPS, where sent frames wait in the host CPU's backlog), its
# send gets EAGAIN and netsniff-ng exits ("Flushing TX_RING failed"): the "stalls" of
# sessions 3 and 4. The lab sets those four values for the netsniff-ng rows only, as
# netsniff-ng itself would outside a namespace, and restores them after.
SMEM_OLD=""
smem_raise() {
  SMEM_OLD=$(sysctl -n net.core.rmem_max net.core.rmem_default net.core.wmem_max \
    net.core.wmem_default | tr '\n' ' ')
  local k v want
  for k in rmem_max rmem_default wmem_max wmem_default; do
    case $k in *_max) want=104857600 ;; *) want=4194304 ;; esac
    v=$(sysctl -n "net.core.$k")
    [ "$v" -ge "$want" ] || sysctl -qw "net.core.$k=$want"
  done
}
smem_restore() {
  [ -n "$SMEM_OLD" ] || return 0
  set -- $SMEM_OLD
  sysctl -qw net.core.rmem_max="$1" net.core.rmem_default="$2" net.core.wmem_max="$3" \
    net.core.wmem_default="$4" || true
  SMEM_OLD=""
}

lab_down() {
  local ns
  for ns in "$NS_OUT" "$NS_IN" "$NS_BR"; do ip netns del "$ns" 2>/dev/null || true; done
  LAB_UP=0
}

lab_up() {
  lab_down
  LAB_UP=1
  local ns l
  for ns in "$NS_OUT" "$NS_IN" "$NS_BR"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
  done
  ip link add "${P}o0" netns "$NS_OUT" type veth peer name "${P}o1" netns "$NS_BR"
  ip link add "${P}i0" netns "$NS_IN" type veth peer name "${P}i1" netns "$NS_BR"
  ip -n "$NS_OUT" addr add "$CLIENT/24" dev "${P}o0"
  ip -n "$NS_IN" addr add "$SERVER/24" dev "${P}i0"
  for l in "$NS_OUT ${P}o0" "$NS_IN ${P}i0" "$NS_BR ${P}o1" "$NS_BR ${P}i1"; do
    set -- $l
    # Offloads off: MTU-sized frames with full checksums, as on a real wire.
    ip netns exec "$1" ethtool -K "$2" tx off tso off gso off gro off >/dev/null 2>&1 || true
    ip -n "$1" link set "$2" up
  done
  # Static neighbours: no ARP, so every forwarder sees only unicast TCP between the hosts
  # (netsniff-ng forwards only frames addressed to other hosts, see below).
  local mac_o mac_i
  mac_o=$(ip -n "$NS_OUT" -o link show "${P}o0" | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2)
  mac_i=$(ip -n "$NS_IN" -o link show "${P}i0" | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2)
  ip -n "$NS_OUT" neigh replace "$SERVER" lladdr "$mac_i" dev "${P}o0" nud permanent
  ip -n "$NS_IN" neigh replace "$CLIENT" lladdr "$mac_o" dev "${P}i0" nud permanent
  ip netns exec "$NS_IN" "$SMTP_SINK" -u nobody -h sink.bench.example "$SERVER:2525" 64 \
    >>"$LOG" 2>&1 &
  PIDS+=($!)
  SINK_PID=$!
  # Every end up before any forwarder starts (netsniff-ng refuses a port not yet running).
  local _
  for _ in $(seq 50); do
    [ "$(lab_links_up)" = 4 ] && break
    sleep 0.1
  done
  if [ "$RPS" != 0 ]; then
    lab_rps "$NS_OUT" "${P}o0" "$LOAD_CPU"
    lab_rps "$NS_IN" "${P}i0" "$LOAD_CPU"
  fi
  if [ "$RPS" = 2 ]; then
    lab_rps "$NS_BR" "${P}o1" "$FWD_CPU"
    lab_rps "$NS_BR" "${P}i1" "$FWD_CPU"
  fi
}

# How many of the lab's four veth ends are up (operstate).
lab_links_up() {
  local n=0 l
  for l in "$NS_OUT ${P}o0" "$NS_IN ${P}i0" "$NS_BR ${P}o1" "$NS_BR ${P}i1"; do
    set -- $l
    [ "$(ip netns exec "$1" cat "/sys/class/net/$2/operstate" 2>/dev/null)" = up ] && n=$((n + 1))
  done
  echo "$n"
}

# Receive Packet Steering on a host's veth end: frames that arrive there are processed (IP,
# TCP, ACKs, socket wake-up) on the load generators' CPU instead of on the CPU of whoever
# transmitted them into the veth. On a real wire the receiving host's stack runs on its own
# CPUs; on veth without RPS it runs on the sender's, i.e. on the forwarder's pinned core for
# netsniff-ng and mailguard (the kernel bridge forwards in the client's softirq, so its
# hosts' receive work already ran on the load CPU).
# With BENCH_RPS=2 the forwarder's own veth ends steer to the forwarder's CPU too, so its
# receive (the kernel bridge's forwarding, AF_PACKET's copy into a ring) runs there and not
# on the transmitting host's CPU: each side's work on its own CPU, as on a real wire.
lab_rps() { # namespace device cpu
  local mask
  mask=$(printf '%x' $((1 << $3)))
  ip netns exec "$1" sh -c "echo $mask >/sys/class/net/$2/queues/rx-0/rps_cpus"
}

# iperf3 -s serves one test at a time and, if a client vanishes before the end-of-test
# exchange (killed by `timeout`, or its last segments lost while the forwarder was being
# stopped), it keeps the dead test's control connection open and answers every later client
# "the server is busy running a test" (what session 3 saw with RPS: one stalled row, then
# every later iperf3 row measured 0). So every load gets a fresh one-off server (`-1`), with
# bounded waits for it to listen and to exit; one that does not exit is killed and counted.
IPERF_PID=""
iperf_server_start() {
  iperf_server_stop || true
  ip netns exec "$NS_IN" iperf3 -s -1 -p 25 --rcv-timeout $(((LIVE_SECS + 5) * 1000)) \
    >>"$LOG" 2>&1 &
  IPERF_PID=$!
  PIDS+=("$IPERF_PID")
  local i
  for i in $(seq 50); do
    ip netns exec "$NS_IN" ss -ltnH "sport = :25" 2>/dev/null | grep -q . && return 0
    sleep 0.1
  done
  say "iperf3 server did not listen"
}
# Waits up to 3 s for the one-off server to exit; returns 1 if it had to be killed.
iperf_server_stop() {
  [ -n "$IPERF_PID" ] || return 0
  local pid=$IPERF_PID rc=0
  IPERF_PID=""
  for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  rc=1
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || return $rc; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  return $rc
}

# The forwarder currently running: kind, pids.
FWD_PIDS=()
fwd_start() { # kind [workers] [profile]
  local kind=$1
  FWD_PIDS=()
  case "$kind" in
    kernel)
      ip -n "$NS_BR" link add "${P}br" type bridge forward_delay 0 stp_state 0
      ip -n "$NS_BR" link set "${P}o1" master "${P}br"
      ip -n "$NS_BR" link set "${P}i1" master "${P}br"
      ip -n "$NS_BR" link set "${P}br" up
      ;;
    netsniff)
      # One process per direction, both pinned to the forwarder CPU; "-t others" keeps only
      # frames addressed to another host, so neither re-reads what the other one sent.
      smem_raise
      ip netns exec "$NS_BR" taskset -c "$FWD_CPU" netsniff-ng --in "${P}o1" --out "${P}i1" \
        -s -t others -S 64MiB >>"$LOG" 2>&1 &
      FWD_PIDS+=($!)
      ip netns exec "$NS_BR" taskset -c "$FWD_CPU" netsniff-ng --in "${P}i1" --out "${P}o1" \
        -s -t others -S 64MiB >>"$LOG" 2>&1 &
      FWD_PIDS+=($!)
      ;;
    mailguard)
      local workers=$2 profile=$3 cpus=$FWD_CPU
      [ "$workers" -gt 1 ] && cpus=0-$((NCPU - 1))
      ip netns exec "$NS_BR" taskset -c "$cpus" "$MG" bridge --outside "${P}o1" \
        --inside "${P}i1" --workers "$workers" --profile "$profile" --ports 25,2525 \
        --stats-interval 0 ${BENCH_BRIDGE_FLAGS:-} "${@:4}" >>"$W/bridge.log" 2>&1 &
      FWD_PIDS+=($!)
      ;;
  esac
  PIDS+=("${FWD_PIDS[@]}")
  # Ready when the client reaches the server's SMTP port through it.
  local i
  for i in $(seq 100); do
    if ip netns exec "$NS_OUT" timeout 2 "$PINGPONG" "$SERVER" 2525 1 >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  say "forwarder $kind did not start forwarding"
  return 1
}

fwd_stop() {
  local pid
  for pid in "${FWD_PIDS[@]:-}"; do
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${FWD_PIDS[@]:-}"; do
    [ -n "$pid" ] || continue
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  FWD_PIDS=()
  ip -n "$NS_BR" link del "${P}br" 2>/dev/null || true
  smem_restore
}

# CPU ticks (user+system) of the forwarder processes and of the whole machine.
proc_ticks() {
  local sum=0 pid t
  for pid in "${FWD_PIDS[@]:-}"; do
    [ -n "$pid" ] || continue
    # The bridge and netsniff-ng run under `ip netns exec` + taskset, which exec: same pid.
    t=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)
    sum=$((sum + t))
  done
  echo "$sum"
}
# Frames received by both hosts so far (what the forwarder delivered).
lab_frames() {
  local a b
  a=$(ip netns exec "$NS_OUT" cat "/sys/class/net/${P}o0/statistics/rx_packets")
  b=$(ip netns exec "$NS_IN" cat "/sys/class/net/${P}i0/statistics/rx_packets")
  echo $((a + b))
}
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
TCK=$(getconf CLK_TCK)

# One iperf3 load: name args...; records Gbit/s, forwarder CPU s and machine CPU s.
live_iperf() {
  local fwd=$1 load=$2
  shift 2
  local p0 m0 p1 m1 f0 f1 json=$W/iperf-$fwd-$load.json
  iperf_server_start
  f0=$(lab_frames)
  p0=$(proc_ticks) m0=$(machine_ticks)
  ip netns exec "$NS_OUT" timeout $((LIVE_SECS + 5)) taskset -c "$LOAD_CPU" \
    iperf3 -c "$SERVER" -p 25 -t "$LIVE_SECS" -J "$@" >"$json" 2>>"$LOG" || true
  p1=$(proc_ticks) m1=$(machine_ticks)
  f1=$(lab_frames)
  if ! iperf_server_stop; then
    put "$LK.$fwd.$load.server_killed" 1
    say "$LK $fwd $load: iperf3 server still busy after the test; killed"
  fi
  put "$LK.$fwd.$load.frames" "$((f1 - f0))"
  local bps
  bps=$($PY -c 'import json,sys
try:
    d = json.load(open(sys.argv[1])); print(d["end"]["sum_received"]["bits_per_second"])
except Exception: print(0)' "$json")
  put "$LK.$fwd.$load.bps" "$bps"
  put "$LK.$fwd.$load.secs" "$LIVE_SECS"
  put "$LK.$fwd.$load.fwd_cpu_s" "$(echo "$p0 $p1 $TCK" | awk '{printf "%.3f", ($2-$1)/$3}')"
  put "$LK.$fwd.$load.machine_cpu_s" "$(echo "$m0 $m1 $TCK" | awk '{printf "%.3f", ($2-$1)/$3}')"
  say "$LK $fwd $load: $(echo "$bps" | awk '{printf "%.2f", $1/1e9}') Gbit/s"
}

# Bytes of frames received by the server so far.
server_bytes() {
  ip netns exec "$NS_IN" cat "/sys/class/net/${P}i0/statistics/rx_bytes"
}

# Real SMTP for LIVE_SECS: smtp-source (4 sessions, 1 MB messages) to smtp-sink on :2525.
# Throughput is what the server's interface received (frame bytes), per wall second.
live_smtp() {
  local fwd=$1 load=$2 sessions=$3 len=$4
  local p0 m0 p1 m1 f0 f1 b0 b1 t0 t1
  f0=$(lab_frames) b0=$(server_bytes) t0=$(date +%s.%N)
  p0=$(proc_ticks) m0=$(machine_ticks)
  ip netns exec "$NS_OUT" timeout "$LIVE_SECS" taskset -c "$LOAD_CPU" "$SMTP_SOURCE" \
    -s "$sessions" -m 10000000 -l "$len" -f a@client.bench.example -t b@sink.bench.example \
    "$SERVER:2525" >>"$LOG" 2>&1 || true
  p1=$(proc_ticks) m1=$(machine_ticks)
  f1=$(lab_frames) b1=$(server_bytes) t1=$(date +%s.%N)
  local secs
  secs=$(echo "$t0 $t1" | awk '{printf "%.3f", $2-$1}')
  put "$LK.$fwd.$load.frames" "$((f1 - f0))"
  put "$LK.$fwd.$load.secs" "$secs"
  put "$LK.$fwd.$load.bps" "$(echo "$b0 $b1 $secs" | awk '{printf "%.0f", ($2-$1)*8/$3}')"
  put "$LK.$fwd.$load.fwd_cpu_s" "$(echo "$p0 $p1 $TCK" | awk '{printf "%.3f", ($2-$1)/$3}')"
  put "$LK.$fwd.$load.machine_cpu_s" "$(echo "$m0 $m1 $TCK" | awk '{printf "%.3f", ($2-$1)/$3}')"
  say "$LK $fwd $load: $(echo "$b0 $b1 $secs" | awk '{printf "%.2f", ($2-$1)*8/$3/1e9}') Gbit/s"
}

live_latency() {
  local fwd=$1 r
  r=$(ip netns exec "$NS_OUT" timeout $((LIVE_SECS + 30)) taskset -c "$LOAD_CPU" \
    "$PINGPONG" "$SERVER" 2525 "$PING_COUNT" "$LIVE_SECS" 2>>"$LOG" || true)
  put "$LK.$fwd.latency" "${r:-failed}"
  say "$LK $fwd latency: ${r:-failed}"
}

# label loads kind [workers profile]; loads: "iperf" (iperf3 to port 25: 1 stream, 4
# streams, MSS 88) and/or "smtp" (smtp-source), comma separated; latency always.
live_forwarder() {
  local label=$1 loads=${BENCH_LIVE_LOADS:-$2}
  shift 2
  case ",${BENCH_LIVE_ROWS:-$label}," in *",$label,"*) ;; *) return 0 ;; esac
  if ! fwd_start "$@"; then
    put "$LK.$label.failed" 1
    fwd_stop
    return 0
  fi
  live_latency "$label"
  case ",$loads," in *,iperf,*)
    live_iperf "$label" single
    live_iperf "$label" parallel4 -P 4
    live_iperf "$label" small -M 88
    ;;
  esac
  case ",$loads," in *,smtp,*)
    live_smtp "$label" smtp 4 1000000
    ;;
  esac
  fwd_stop
}

if want live; then
  if [ "$(id -u)" != 0 ]; then
    say "live part needs root; skipped"
    put live.skipped "not root"
  else
    need iperf3 netsniff-ng ethtool ip taskset
    for RPS in ${RPS_LABS//,/ }; do
      LK=live
      [ "$RPS" = 0 ] || LK=live_rps$RPS
      say "live part, lab with BENCH_RPS=$RPS (results under $LK.*)"
      : >"$W/bridge.log"
      lab_up
      backlog_raise
      put "$LK.rps" "$RPS" "rps_cpus of the hosts' veth ends = CPU $LOAD_CPU"
      put "$LK.backlog" "$(sysctl -n net.core.netdev_max_backlog)"
      put cmd.iperf "iperf3 -c $SERVER -p 25 -t $LIVE_SECS [-P 4 | -M 88]"
      put cmd.latency "smtp-pingpong $SERVER 2525 $PING_COUNT $LIVE_SECS (NOOP round trips through the forwarder to smtp-sink)"
      put cmd.smtp "smtp-source -s 4 -m 10000000 -l 1000000 $SERVER:2525 (stopped after $LIVE_SECS s)"
      live_forwarder kernel iperf,smtp kernel
      live_forwarder netsniff iperf,smtp netsniff
      if "$MG" bridge --help 2>/dev/null | grep -q -- '--outside'; then
        # iperf3's stream is not SMTP: under pix51/strict its first line is X-ed or the
        # connection reset, as a PIX would. iperf3 therefore measures the bridge under off;
        # SMTP traffic (smtp-source) measures it under strict.
        live_forwarder mg1-off iperf,smtp mailguard 1 off
        # The transmit side step by step (BENCH_TX_STEPS=1): the same binary sending with
        # sendmmsg but qdisc bypass, and through transmit rings with qdisc bypass; mg1-off
        # above is the default, sendmmsg through the qdisc.
        if [ -n "${BENCH_TX_STEPS:-}" ] && "$MG" bridge --help 2>/dev/null | grep -q -- '--tx-ring'; then
          live_forwarder mg1-off-bypass iperf,smtp mailguard 1 off --qdisc-bypass
          live_forwarder mg1-off-txring iperf,smtp mailguard 1 off --tx-ring --qdisc-bypass
        fi
        # Busy-poll (afpacket; default 50 us): latency at light load without it and longer.
        if "$MG" bridge --help 2>/dev/null | grep -q -- '--busy-poll-us'; then
          live_forwarder mg1-off-bp0 latency mailguard 1 off --busy-poll-us 0
          live_forwarder mg1-off-bp200 latency mailguard 1 off --busy-poll-us 200
        fi
        live_forwarder mg1-strict smtp mailguard 1 strict
        live_forwarder mg2-strict smtp mailguard 2 strict
        grep -v '^$' "$W/bridge.log" | tail -n 40 >"$W/bridge-tail-$LK.txt" || true
      else
        say "this mailguard has no live bridge yet; live mailguard rows skipped"
        put "$LK.mailguard_missing" 1
      fi
      lab_down
      backlog_restore
    done
  fi
fi

# ---------------------------------------------------------------------------------------
# Engine alone (criterion) and the report.
if [ "$CRITERION" = 1 ]; then
  say "cargo bench --bench engine"
  (cd "$ROOT" && cargo bench --bench engine) >"$W/criterion.txt" 2>&1 || say "cargo bench failed (see $W/criterion.txt)"
fi
FLAGS=""
[ "$QUICK" = 1 ] && FLAGS="$FLAGS --quick"
[ "$CRITERION" = 1 ] && FLAGS="$FLAGS --criterion"
[ "$ONLY" != "replay,scale,live" ] && FLAGS="$FLAGS --only $ONLY"
put cmd.bench_sh "scripts/bench.sh$FLAGS"
mkdir -p "$(dirname "$OUT")" "$ROOT/benches"
$PY "$ROOT/scripts/bench/report.py" --results "$RES" --machine "$W/machine.txt" \
  --criterion "$ROOT/target/criterion" --scratch "$W" --out "$OUT" \
  --plot "$ROOT/benches/throughput.png"
say "wrote $OUT"
