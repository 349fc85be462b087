#!/usr/bin/env bash
# The whole test suite, from a fresh clone: set-up (idempotent), then every Rust test
# (unit tests and the integration binary tests/it) in the release profile.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup.sh
eval "$(scripts/setup.sh --print-env)"
cargo build --release --locked --examples --quiet
cargo test --release --locked -- --test-threads=1 "$@"
