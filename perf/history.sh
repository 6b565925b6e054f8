#!/usr/bin/env bash
# The cost of message history on the hot path: two smsgate processes side by side, one with
# `[history]` on a PostgreSQL started here, one without, the same load alternately.
#
#   perf/history.sh        (about 2 minutes after the build)
#
# Starts (free loopback ports, everything in a temp dir) a PostgreSQL (initdb + pg_ctl, as
# the OS user postgres when root), smsc-sim (receipts after DLR_DELAY_MS), smsgate "on" and
# smsgate "off"; then REPS rounds of `loadgen` (HTTP/1.1, closed loop, CONNS connections,
# DURATION s) against off and on alternately, with the server CPU per answer. Afterwards it
# reads how many events reached PostgreSQL and the history backlog from /metrics. Prints one
# table; reports under perf/results/history-<timestamp>/.
#
# Environment: DURATION [8] WARMUP [1] REPS [3] CONNS [64] DLR_DELAY_MS [100] NO_BUILD [0]
#              BIN [target/release]
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-8}
WARMUP=${WARMUP:-1}
REPS=${REPS:-3}
CONNS=${CONNS:-64}
DLR_DELAY_MS=${DLR_DELAY_MS:-100}
BIN=${BIN:-target/release}
KEY=perf-key-0123456789abcdef

[[ ${NO_BUILD:-0} == 1 ]] || cargo build --release -p perf -p smsgate
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
OUT=perf/results/history-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
source "$(dirname "$0")/lib.sh"
AS=()
if [[ $(id -u) == 0 ]]; then
    chown postgres "$TMP"
    AS=(runuser -u postgres --)
fi
cleanup_last() {
    "${AS[@]}" "$PG_BIN/pg_ctl" -D "$TMP/pg" -m immediate stop >/dev/null 2>&1
}

PG_PORT=$(free_port)
SIM_PORT=$(free_port)
"${AS[@]}" "$PG_BIN/initdb" -D "$TMP/pg" -U postgres --auth=trust --no-sync >"$OUT/initdb.log" 2>&1
"${AS[@]}" "$PG_BIN/pg_ctl" -D "$TMP/pg" -l "$TMP/pg.log" -w \
    -o "-p $PG_PORT -k $TMP -c listen_addresses=127.0.0.1" start >/dev/null
"$BIN/smsc-sim" --listen "127.0.0.1:$SIM_PORT" --dlr-delay-ms "$DLR_DELAY_MS" --control off >"$OUT/smsc-sim.log" 2>&1 &
PIDS+=("$!")

write_link_rules "$TMP/rules.toml" bench "$SIM_PORT"
declare -A PORT PID
for side in off on; do
    PORT[$side]=$(free_port)
    history=""
    [[ $side == on ]] && history=$(printf '[history]\npostgres_url = "host=127.0.0.1 port=%s user=postgres dbname=postgres"\nspill_dir = "%s"\n' "$PG_PORT" "$TMP/spill")
    cat >"$TMP/$side.toml" <<EOF2
[http]
listen = "127.0.0.1:${PORT[$side]}"

[smpp]
rules_file = "$TMP/rules.toml"

[state]
path = "$TMP/state-$side"

[log]
level = "warn"

$history

[[clients]]
name = "perf"
api_key = "$KEY"
EOF2
    "$BIN/smsgate" --config "$TMP/$side.toml" >"$OUT/smsgate-$side.log" 2>&1 &
    PID[$side]=$!
    PIDS+=("${PID[$side]}")
    wait_for "127.0.0.1:${PORT[$side]}" /healthz '"sessions_bound":2'
done
wait_for "127.0.0.1:${PORT[on]}" /metrics 'smsgate_history_up 1'

for rep in $(seq "$REPS"); do
    for side in off on; do
        "$BIN/loadgen" --target "127.0.0.1:${PORT[$side]}" --key "$KEY" --link bench \
            --connections "$CONNS" --duration "$DURATION" --warmup "$WARMUP" \
            --server-pid "${PID[$side]}" --out "$OUT/$side-$rep" >/dev/null
        sleep 1
    done
done
# Let the last receipts and batches land, then read what history wrote.
sleep 3
metric() { curl -s "http://127.0.0.1:${PORT[on]}/metrics" | awk -v n="$1" '$1 == n {print $2}'; }
{
    echo "date: $(date -Is); commit $(git rev-parse --short HEAD); $(nproc) CPUs; load $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "settings: DURATION=$DURATION WARMUP=$WARMUP REPS=$REPS CONNS=$CONNS DLR_DELAY_MS=$DLR_DELAY_MS"
    echo
    echo "| run | history | req/s | p50 ms | p99 ms | server CPU µs/answer |"
    echo "|---|---|---|---|---|---|"
    for rep in $(seq "$REPS"); do
        for side in off on; do
            s=$(cat "$OUT/$side-$rep.summary")
            get() { echo "$s" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k {print $2}'; }
            echo "| $rep | $side | $(get rps) | $(get p50) | $(get p99) | $(get server_cpu_us) |"
        done
    done
    echo
    echo "history: events written $(metric smsgate_history_written_total), batches $(metric smsgate_history_batches_total), spilled $(metric smsgate_history_spilled_total), backlog $(curl -s "http://127.0.0.1:${PORT[on]}/metrics" | awk '/^smsgate_history_backlog_events/ {s += $2} END {print s}'), dropped $(curl -s "http://127.0.0.1:${PORT[on]}/metrics" | awk '/^smsgate_history_dropped_total/ {s += $2} END {print s}')"
} | tee "$OUT/table.md"
