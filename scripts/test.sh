#!/usr/bin/env bash
# Runs every check and test of smsgate: formatting, clippy, unit, integration and end-to-end
# tests (smsgate and smsc-sim as real processes on free loopback ports).
# Usage: scripts/test.sh            (from the repository root or anywhere inside it)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
need_rust

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace 2>&1 | tee target/test-output.log
