#!/usr/bin/env bash
# Regenerates the golden outputs of the bundled captures: for every pcaps/NAME.pcap and every
# variant below, pcaps/golden/NAME.VARIANT.pcap (what `mailguard replay` emits) and
# pcaps/golden/NAME.VARIANT.txt (its summary without the run-dependent `output:`, `rate:` and `memory:`
# lines). tests/golden.rs checks that the current binary reproduces them bit for bit; it reads
# the `variant` lines of this file, so this list is the single source of truth.
#
# Run it after a deliberate change of behaviour, then review `git diff --stat pcaps/golden`
# and the .txt diffs before committing: a golden is a claim about what the filter does.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet
bin=target/release/mailguard

shopt -s nullglob
captures=(pcaps/*.pcap)
if [ ${#captures[@]} -eq 0 ]; then
  echo "regen-golden: no pcaps/*.pcap; make them first (scripts/make-pcaps.sh)" >&2
  exit 1
fi
mkdir -p pcaps/golden
rm -f pcaps/golden/*.pcap pcaps/golden/*.txt

# variant NAME REPLAY-OPTIONS...: replay every capture with these options.
variant() {
  local name=$1
  shift
  local cap base
  for cap in "${captures[@]}"; do
    base=$(basename "$cap" .pcap)
    "$bin" replay "$cap" -o "pcaps/golden/$base.$name.pcap" "$@" \
      | grep -vE '^(output|rate|memory):' >"pcaps/golden/$base.$name.txt"
  done
}

variant off --profile off
variant pix40 --profile pix40
variant pix44 --profile pix44
variant pix51 --profile pix51
variant pix51-kb --profile pix51 --banner-mask kb
variant asa --profile asa
variant strict --profile strict
variant strict-exchange --profile strict --allow-verb X-LINK2STATE --allow-verb XEXCH50

echo "regen-golden: wrote $(ls pcaps/golden | wc -l) files for ${#captures[@]} captures; review:"
git status --short pcaps/golden 2>/dev/null || true
