#!/usr/bin/env bash
# What would each Mailguard do to a Microsoft KB 320027 session? Replays the bundled capture
# pcaps/kb320027.pcap under every profile and shows, for each, the summary and (when tshark
# is installed) the SMTP dialogue as the two ends received it.
#
#   bash scripts/demo.sh            # all profiles
#   bash scripts/demo.sh pix51 asa  # some of them
#
# Outputs are left in ${MAILGUARD_DEMO_DIR:-/tmp/mailguard-demo}/kb320027.PROFILE.pcap.
set -euo pipefail
cd "$(dirname "$0")/.."

cap=pcaps/kb320027.pcap
out=${MAILGUARD_DEMO_DIR:-/tmp/mailguard-demo}
mkdir -p "$out"

if [ ! -f "$cap" ]; then
  if [ -x scripts/make-pcaps.sh ] || [ -f scripts/make-pcaps.sh ]; then
    echo "demo: $cap missing, making it with scripts/make-pcaps.sh" >&2
    bash scripts/make-pcaps.sh
  fi
  [ -f "$cap" ] || { echo "demo: $cap not found" >&2; exit 1; }
fi

echo "demo: building mailguard (cargo build --release)..." >&2
cargo build --release --quiet
bin=target/release/mailguard

describe() {
  case $1 in
    off) echo "no fixup protocol smtp: nothing is filtered" ;;
    pix40) echo "PIX 4.0/4.1 mailhost: blocked lines removed, the filter answers 250 OK" ;;
    pix44) echo "PIX 4.2-4.4: blocked lines X-ed, banner text turned to *" ;;
    pix51) echo "PIX 5.1+/6.x: blocked lines X-ed, banner all * but 2, 0 and reply codes" ;;
    pix51-kb) echo "PIX 5.1+/6.x with --banner-mask kb: the banner exactly as in KB 320027" ;;
    asa) echo "ASA inspect esmtp: ESMTP allowed, EHLO reply masked, limits" ;;
    strict) echo "ours: secure and ESMTP-friendly" ;;
  esac
}

variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(off pix40 pix44 pix51 pix51-kb asa strict)

for v in "${variants[@]}"; do
  case $v in
    pix51-kb) opts=(--profile pix51 --banner-mask kb) ;;
    *) opts=(--profile "$v") ;;
  esac
  o="$out/kb320027.$v.pcap"
  echo
  echo "================ $v: $(describe "$v")"
  "$bin" replay "$cap" -o "$o" "${opts[@]}" | grep -vE '^(input|rate):'
  if command -v tshark >/dev/null; then
    echo "---- dialogue as each end received it (C: client->server, S: server->client)"
    # follow,tcp,ascii: each chunk starts with its length, tab-indented for node 1 (server).
    tshark -r "$o" -qz follow,tcp,ascii,0 2>/dev/null \
      | awk '/^Node 1:/ {on = 1; next} /^====/ {on = 0} !on {next}
             /^\t[0-9]+$/ {d = "S: "; next} /^[0-9]+$/ {d = "C: "; next}
             NF {sub(/\r$/, ""); print d $0}' \
      | head -n 60
  else
    echo "(install tshark to see the dialogue: bash scripts/install-deps.sh)"
  fi
done
echo
echo "demo: outputs in $out (open them with wireshark, or tshark -r FILE -qz follow,tcp,ascii,0)"
