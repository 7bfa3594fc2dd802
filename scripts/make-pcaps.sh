#!/usr/bin/env bash
# Writes pcaps/NAME.pcap for every named scenario of `mailguard gen`.
#
# Deterministic: the same binary writes the same bytes, so the committed captures can be
# checked against a fresh run (tests/gen_scenarios.rs does). Run it after changing
# src/io/synth.rs or the scenario catalogue in src/cli/gen.rs, and commit the result.
#
# Usage: scripts/make-pcaps.sh            (builds the debug binary)
#        MAILGUARD=path/to/mailguard scripts/make-pcaps.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${MAILGUARD:-}" ]]; then
    cargo build --quiet --bin mailguard
    MAILGUARD=target/debug/mailguard
fi

SCENARIOS=(kb320027 pipelining starttls bdat smuggling telnet ipv6-vlan lossy)

mkdir -p pcaps
for name in "${SCENARIOS[@]}"; do
    "$MAILGUARD" gen --scenario "$name" -o "pcaps/$name.pcap"
done
