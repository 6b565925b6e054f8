#!/usr/bin/env bash
# Runs every check and test of smsgate: formatting, clippy, unit, integration and end-to-end
# tests (smsgate, smsc-sim, redis-server, a node-smpp SMSC and Python gRPC / Prometheus
# clients as real processes on free loopback ports).
# Usage: scripts/test.sh            (from the repository root or anywhere inside it)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
need_rust

echo "== test dependencies"
# redis-server for the L2 limiter tests (they start their own on a free port); Python venvs for
# the gRPC and Prometheus-parser clients and the S3 server (moto) with boto3; tzdata for
# policy.time_zone; node + npm for the node-smpp interoperability SMSC; openssl for a test CA.
command -v redis-server >/dev/null 2>&1 || apt_install redis-server
[ -e /usr/share/zoneinfo/Europe/Berlin ] || apt_install tzdata
# PostgreSQL server binaries (initdb, pg_ctl) for the history tests, which start their own
# server in a temporary directory (as the OS user postgres when run as root).
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || apt_install postgresql
# Debian's Chromium for the dashboard's browser test (playwright-core drives it; no browser
# download).
command -v chromium >/dev/null 2>&1 || apt_install chromium
python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
command -v npm >/dev/null 2>&1 || apt_install nodejs npm
# openssl makes the test CA and certificate of the https webhook receiver (tests/webhooks.rs).
command -v openssl >/dev/null 2>&1 || apt_install openssl
mkdir -p target/tmp
# The same venvs the tests look for (they create them themselves when run alone).
if ! target/tmp/grpc-venv/bin/python -c 'import grpc, grpc_tools, h2' 2>/dev/null; then
    python3 -m venv target/tmp/grpc-venv
    target/tmp/grpc-venv/bin/pip install -q grpcio grpcio-tools h2
fi
if [ ! -x target/tmp/s3-venv/bin/moto_server ]; then
    python3 -m venv target/tmp/s3-venv
    target/tmp/s3-venv/bin/pip install -q 'moto[server]'
fi
if ! target/tmp/prometheus-venv/bin/python -c 'import prometheus_client' 2>/dev/null; then
    python3 -m venv target/tmp/prometheus-venv
    target/tmp/prometheus-venv/bin/pip install -q prometheus_client
fi
[ -d tests/interop/node_modules ] || npm ci --prefix tests/interop --no-audit --no-fund
# The dashboard: Vite and playwright-core from the lock file; the committed build must match.
echo "== dashboard build"
scripts/build-dashboard.sh --check

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace 2>&1 | tee target/test-output.log
