#!/usr/bin/env bash
# The whole test suite, from a fresh clone: set-up (idempotent), then every Rust test
# (unit tests and the integration binary tests/it) in the release profile, with Debian's
# chromium for the report-rendering test. Ends with one line
# "tests: N passed, N failed".
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup.sh
# Headless Chromium renders report.html in tests/it/report.rs (Debian's package; tests only).
if ! command -v chromium >/dev/null 2>&1; then
  printf '\n==> Debian package chromium (report rendering test)\n' >&2
  sudo_cmd=""; [[ "$(id -u)" == 0 ]] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium >/dev/null
fi
eval "$(scripts/setup.sh --print-env)"
cargo build --release --locked --examples --quiet
log="$(mktemp)"
status=0
cargo test --release --locked -- --test-threads=1 "$@" 2>&1 | tee "$log" || status=$?
passed=$(grep -Eo '^test result: .* ([0-9]+) passed' "$log" | grep -Eo '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '^test result: .* ([0-9]+) failed' "$log" | grep -Eo '[0-9]+ failed' | awk '{s+=$1} END {print s+0}')
rm -f "$log"
echo "tests: ${passed} passed, ${failed} failed"
exit "$status"
