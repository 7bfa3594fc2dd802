#!/usr/bin/env bash
# A mailguard lab in network namespaces on this machine.
#
#   scripts/lab.sh up     build the lab and start smtp-sink and mailguard
#   scripts/lab.sh demo   send mail with swaks under pix51 and strict, show both sides
#   scripts/lab.sh down   stop everything and remove the lab (idempotent)
#   scripts/lab.sh restart-bridge   restart mailguard only (after changing MG_PROFILE ...)
#
#   ${P}-out  client  198.18.0.1/24  ${P}o0 --veth-- ${P}o1 \
#   ${P}-br   mailguard bridge --outside ${P}o1 --inside ${P}i1   (no addresses)
#   ${P}-in   server  198.18.0.2/24  ${P}i0 --veth-- ${P}i1 /    smtp-sink on :25
#
# With MG_BACKEND=tap, mailguard bridges two TAP devices ${P}to / ${P}ti instead; each is
# joined to its host's veth end by a kernel bridge of its own (${P}bo, ${P}bi) inside
# ${P}-br, so the two hosts still meet only through mailguard.
#
# Settings (environment):
#   MG_PREFIX   name prefix of namespaces and links (default mg; at most 8 characters)
#   MG_PROFILE  mailguard profile (default strict)     MG_WORKERS  worker threads (default 1)
#   MG_BACKEND  afpacket | tap (default afpacket)      MG_ARGS     more bridge options
#   MG_DIR      state directory (default /tmp/$MG_PREFIX-lab): pids, logs, received mail
#   MAILGUARD   the binary (default: target/debug/mailguard, built if missing)
#   MG_NO_BRIDGE=1  `up` builds the lab and starts smtp-sink but not mailguard (tests run
#               the bridge themselves)
# Needs root, iproute2, ethtool, postfix (smtp-sink) and swaks (scripts/install-deps.sh).
set -euo pipefail

P=${MG_PREFIX:-mg}
if [ ${#P} -gt 8 ]; then echo "lab: MG_PREFIX must be at most 8 characters" >&2; exit 2; fi
PROFILE=${MG_PROFILE:-strict}
WORKERS=${MG_WORKERS:-1}
BACKEND=${MG_BACKEND:-afpacket}
DIR=${MG_DIR:-/tmp/$P-lab}
NS_OUT=$P-out NS_IN=$P-in NS_BR=$P-br
CLIENT=198.18.0.1 SERVER=198.18.0.2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MAILGUARD=${MAILGUARD:-$ROOT/target/debug/mailguard}
SMTP_SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)

say() { echo "lab: $*"; }

need_root() {
  [ "$(id -u)" = 0 ] || { echo "lab: needs root (network namespaces)" >&2; exit 1; }
}

need_tools() {
  local missing=()
  for t in ip ethtool swaks ping; do command -v "$t" >/dev/null || missing+=("$t"); done
  [ -x "$SMTP_SINK" ] || missing+=(smtp-sink)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "lab: missing ${missing[*]}: run scripts/install-deps.sh" >&2
    exit 1
  fi
}

# Stops the process whose pid is in $1 (a pid file we wrote), waiting up to 5 s.
stop_pid() {
  local f=$1 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

# Turns off the offloads that make veth hand out super-frames and partial checksums.
no_offloads() {
  ip netns exec "$1" ethtool -K "$2" tx off tso off gso off gro off >/dev/null 2>&1 || true
}

start_bridge() {
  local outside=${P}o1 inside=${P}i1
  if [ "$BACKEND" = tap ]; then outside=${P}to inside=${P}ti; fi
  stop_pid "$DIR/mailguard.pid"
  # shellcheck disable=SC2086
  RUST_LOG=${RUST_LOG:-info} ip netns exec "$NS_BR" "$MAILGUARD" bridge \
    --outside "$outside" --inside "$inside" --backend "$BACKEND" \
    --profile "$PROFILE" --workers "$WORKERS" --stats-interval 5 ${MG_ARGS:-} \
    >>"$DIR/mailguard.log" 2>&1 &
  echo $! >"$DIR/mailguard.pid"
  # Ready when the client can reach the server through it (ARP and ICMP cross).
  for _ in $(seq 100); do
    if ip netns exec "$NS_OUT" ping -c1 -W1 "$SERVER" >/dev/null 2>&1; then
      say "mailguard up ($BACKEND, $WORKERS worker(s), profile $PROFILE), log $DIR/mailguard.log"
      return 0
    fi
    kill -0 "$(cat "$DIR/mailguard.pid")" 2>/dev/null || break
    sleep 0.1
  done
  echo "lab: mailguard did not start bridging; its log:" >&2
  tail -n 20 "$DIR/mailguard.log" >&2 || true
  return 1
}

up() {
  need_root
  need_tools
  down >/dev/null 2>&1 || true
  [ "${MG_NO_BRIDGE:-0}" = 1 ] || [ -x "$MAILGUARD" ] || (cd "$ROOT" && cargo build --quiet)
  mkdir -p "$DIR/mail"
  chmod 1777 "$DIR/mail"
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
    no_offloads "$1" "$2"
    ip -n "$1" link set "$2" up
  done
  if [ "$BACKEND" = tap ]; then
    for s in o i; do
      ip -n "$NS_BR" tuntap add mode tap multi_queue name "${P}t$s"
      ip -n "$NS_BR" link add "${P}b$s" type bridge forward_delay 0 stp_state 0
      ip -n "$NS_BR" link set "${P}${s}1" master "${P}b$s"
      ip -n "$NS_BR" link set "${P}t$s" master "${P}b$s"
      ip -n "$NS_BR" link set "${P}t$s" up
      ip -n "$NS_BR" link set "${P}b$s" up
    done
  fi
  # smtp-sink: -v logs every command it receives, -d dumps every mail it accepts. The log is
  # opened for appending so that truncating it (demo, tests) starts it afresh.
  ip netns exec "$NS_IN" "$SMTP_SINK" -v -u nobody -h mail2000.lab.example \
    -d "$DIR/mail/%Y%m%d%H%M%S." "$SERVER:25" 64 >>"$DIR/smtp-sink.log" 2>&1 &
  echo $! >"$DIR/smtp-sink.pid"
  if [ "${MG_NO_BRIDGE:-0}" != 1 ]; then start_bridge; fi
  for _ in $(seq 50); do
    ip netns exec "$NS_IN" ss -ltn 2>/dev/null | grep -q "$SERVER:25" && break
    sleep 0.1
  done
  say "up: client $CLIENT in $NS_OUT, server $SERVER:25 (smtp-sink) in $NS_IN, state in $DIR"
}

down() {
  need_root
  stop_pid "$DIR/mailguard.pid"
  stop_pid "$DIR/smtp-sink.pid"
  for ns in "$NS_OUT" "$NS_IN" "$NS_BR"; do
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$DIR"
  say "down"
}

demo_one() {
  PROFILE=$1
  start_bridge
  : >"$DIR/smtp-sink.log"
  echo
  echo "==================== profile $PROFILE ===================="
  echo "---- what the client (swaks, outside) saw ----"
  ip netns exec "$NS_OUT" timeout 30 swaks --server "$SERVER" --from alice@outside.example \
    --to bob@lab.example --ehlo client.example --header "Subject: mailguard demo ($PROFILE)" \
    --timeout 10 2>&1 || true
  sleep 0.5
  echo "---- the commands the server (smtp-sink, inside) received ----"
  sed -n 's/^.*smtp-sink: //p' "$DIR/smtp-sink.log" |
    grep -Ev '^(name_mask|trying|connect|vstream|fd=|smtp_stream|disconnect)' || true
  echo "---- mail delivered to the server ----"
  ls "$DIR/mail" | sed 's/^/  /'
  rm -f "$DIR"/mail/*
}

demo() {
  need_root
  [ -f "$DIR/smtp-sink.pid" ] || up
  demo_one pix51
  cat <<'TXT'

  KB 320027, as seen above under pix51: the greeting is all asterisks but for the reply
  code, 2s and 0s; EHLO reaches the server X-ed out and is refused, so the client loses
  ESMTP (no PIPELINING, SIZE, AUTH, STARTTLS) and falls back to HELO if it can.
TXT
  demo_one strict
  cat <<'TXT'

  Under strict: EHLO passes, the greeting is masked but ESMTP works; only extensions the
  policy blocks (VRFY, EXPN, ETRN, ...) are removed from the EHLO reply.
TXT
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  demo) demo ;;
  restart-bridge) need_root; start_bridge ;;
  *) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
