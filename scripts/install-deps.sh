#!/usr/bin/env bash
# Installs what mailguard's tests, lab and benchmarks need on a fresh Debian 12 machine.
# Idempotent; needs root (CI runs as root). Set MAILGUARD_SKIP_APT=1 to skip.
set -euo pipefail

packages=(
  tshark tcpdump            # independent judges of the pcaps we write
  postfix swaks             # real MTA (smtp-sink, smtp-source) and client for the live lab
  iproute2 ethtool          # namespaces, veth, TAP, offload settings
  iputils-ping              # the live lab checks ICMP crosses the bridge
  iperf3 netsniff-ng tcpreplay hyperfine  # benchmark loads and peers
  python3
)

if [ "${MAILGUARD_SKIP_APT:-0}" != 1 ]; then
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    # Postfix must not ask questions nor start a system MTA: the lab runs its own smtp-sink.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
fi
command -v tshark >/dev/null && command -v smtp-sink >/dev/null || {
  # smtp-sink lives in /usr/sbin, which may not be on a non-root PATH.
  [ -x /usr/sbin/smtp-sink ] || { echo "install-deps: smtp-sink missing" >&2; exit 1; }
}
echo "install-deps: ok"
