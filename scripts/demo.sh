#!/usr/bin/env bash
# Starts a working gateway on the default config with a local SMSC simulator:
#   smsc-sim on 127.0.0.1:2775 (receipts after 1 s), smsgate on 127.0.0.1:8080.
# Ctrl-C stops both (smsgate unbinds and flushes its state first).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
need_rust

cargo build --release --workspace --bins
./target/release/smsc-sim --listen 127.0.0.1:2775 --system-id smsgate --password secret --dlr-delay-ms 1000 &
SIM=$!
trap 'kill -TERM $GW $SIM 2>/dev/null; wait $GW $SIM 2>/dev/null' EXIT INT TERM
sleep 0.5
./target/release/smsgate --config config/smsgate.toml &
GW=$!
cat <<'TXT'

smsgate is starting on http://127.0.0.1:8080 with a local smsc-sim. Try:

  curl -s -H 'Authorization: Bearer demo-key-0123456789abcdef' \
       -d '{"to":"+4915112345678","from":"ACME","text":"Hello","link":"100"}' \
       http://127.0.0.1:8080/api/v1/messages

  curl -s -H 'Authorization: Bearer demo-key-0123456789abcdef' \
       http://127.0.0.1:8080/api/v1/messages/<id>

Ctrl-C stops both.
TXT
wait $GW
