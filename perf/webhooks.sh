#!/usr/bin/env bash
# Receipts turned into webhooks (issue 11): smsgate submits to smsc-sim, which answers every
# submit with a receipt after DLR_DELAY_MS; every receipt owes its client a webhook, posted to
# a local receiver (bare-server, a fixed 200). loadgen submits at RATE/s (open loop) for
# DURATION s. Printed, from smsgate's /metrics sampled every second: submits accepted/s and
# webhooks delivered/s side by side, the outbox's pending count, and how long the outbox takes
# to drain after the load.
#
#   perf/webhooks.sh                      RATE=10000 DURATION=20
#
# Environment: RATE [10000], DURATION [20], DLR_DELAY_MS [100], BATCH [256] (webhooks.batch),
# PER_HOST [8] (webhooks.max_concurrency_per_host), NO_BUILD [0], BIN [target/release].
set -euo pipefail
cd "$(dirname "$0")/.."

RATE=${RATE:-10000}
DURATION=${DURATION:-20}
DLR_DELAY_MS=${DLR_DELAY_MS:-100}
BATCH=${BATCH:-256}
PER_HOST=${PER_HOST:-8}
BIN=${BIN:-target/release}
KEY=perf-key-0123456789abcdef

if [[ ${NO_BUILD:-0} != 1 ]]; then
    cargo build --release -p perf -p smsgate
fi

source "$(dirname "$0")/lib.sh"
metric() {
    curl -sf "http://$GATE/metrics" | awk -v n="$1" '$1 == n { print $2 }'
}
accepted() {
    curl -sf "http://$GATE/metrics" | awk '$1 == "smsgate_messages_total{outcome=\"accepted\"}" { print $2 }'
}

SIM_PORT=$(free_port)
GATE=127.0.0.1:$(free_port)
HOOK=127.0.0.1:$(free_port)

write_link_rules "$TMP/smpp_rules.toml" bench "$SIM_PORT"
cat >"$TMP/smsgate.toml" <<EOF
[http]
listen = "$GATE"

[smpp]
rules_file = "$TMP/smpp_rules.toml"

[state]
path = "$TMP/state"

[log]
level = "warn"

[webhooks]
allowed_networks = ["127.0.0.1"]
batch = $BATCH
poll_interval_ms = 20
max_concurrency_per_host = $PER_HOST

[[clients]]
name = "perf"
api_key = "$KEY"
webhook_url = "http://$HOOK/hooks"
webhook_secret = "perf-webhook-secret-0123"
EOF

"$BIN/smsc-sim" --listen "127.0.0.1:$SIM_PORT" --system-id smsgate --password secret \
    --dlr-delay-ms "$DLR_DELAY_MS" --control off >"$TMP/sim.log" 2>&1 &
PIDS+=("$!")
"$BIN/bare-server" --listen "$HOOK" >"$TMP/bare.log" 2>&1 &
PIDS+=("$!")
"$BIN/smsgate" --config "$TMP/smsgate.toml" >"$TMP/smsgate.log" 2>&1 &
GATE_PID=$!
PIDS+=("$GATE_PID")
for _ in $(seq 200); do
    curl -sf "http://$GATE/healthz" 2>/dev/null | grep -q '"sessions_bound":2' && break
    sleep 0.1
done

echo "date: $(date -Is); host: $(uname -srm), $(nproc) CPUs; commit $(git rev-parse --short HEAD)"
echo "RATE=$RATE DURATION=$DURATION DLR_DELAY_MS=$DLR_DELAY_MS webhooks.batch=$BATCH max_concurrency_per_host=$PER_HOST; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$BIN/loadgen" --target "$GATE" --key "$KEY" --link bench --rate "$RATE" --duration "$DURATION" \
    --warmup 0 >"$TMP/loadgen.txt" 2>&1 &
LOAD_PID=$!
printf '%6s %12s %14s %10s\n' "t_s" "accepted/s" "webhooks/s" "pending"
prev_a=$(accepted); prev_w=$(metric smsgate_webhooks_delivered_total)
t=0
drained_at=
while :; do
    sleep 1
    t=$((t + 1))
    a=$(accepted); w=$(metric smsgate_webhooks_delivered_total); p=$(metric smsgate_webhooks_pending)
    printf '%6d %12.0f %14.0f %10.0f\n' "$t" "$(echo "$a - ${prev_a:-0}" | bc)" "$(echo "$w - ${prev_w:-0}" | bc)" "${p:-0}"
    prev_a=$a; prev_w=$w
    if ! kill -0 "$LOAD_PID" 2>/dev/null && [[ ${p:-1} == 0 ]]; then
        drained_at=$t
        break
    fi
    ((t > DURATION + 300)) && break
done
wait "$LOAD_PID" || true
echo "accepted total: $(accepted), webhooks delivered: $(metric smsgate_webhooks_delivered_total), attempts: $(metric smsgate_webhooks_attempts_total), retried: $(metric smsgate_webhooks_retried_total), failed: $(metric smsgate_webhooks_failed_total), overflowed (client share full): $(metric smsgate_webhooks_overflow_total)"
echo "outbox empty ${drained_at:-never} s after the load started (load: $DURATION s)"
grep -E "requests|rate|p50|p99 " "$TMP/loadgen.txt" | head -8
ps -o cputime= -p "$GATE_PID" | sed 's/^/smsgate CPU time: /'
