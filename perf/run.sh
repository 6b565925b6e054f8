#!/usr/bin/env bash
# smsgate's standard load test, one command:
#
#   perf/run.sh            throughput and latency scenarios (about 4 minutes)
#   perf/run.sh memory [N] RSS of smsgate with N messages awaiting their receipts [100000]
#
# Builds release, starts smsc-sim, smsgate and bare-server on free loopback ports (config and
# state in a temp dir), runs the scenarios below, prints one table and writes every report
# (.txt, .hgrm, .svg, .summary) to perf/results/<timestamp>/. See perf/README.md.
#
# Scenarios, each REPS times, interleaved, medians in the table:
#   1. maximum throughput (closed loop), http1 and h2, smsgate and bare-server alternately
#   2. latency at 25 %, 50 %, 75 % of smsgate's median maximum (open loop), http1 and h2
#
# Environment (defaults in brackets):
#   DURATION [6] WARMUP [1]   seconds measured / warm-up per run
#   REPS [3]                  runs per scenario
#   SETTLE [1]                seconds of pause between runs
#   CONNS [64]                http1 connections; H2_CONNS [4] x H2_STREAMS [16] for h2
#   GATE_CPUS [all]           CPUs of smsgate's and bare-server's shards, e.g. "0"
#   LOADGEN_CPUS [any]        taskset CPU list for the load generator, e.g. "1"
#   LOADGEN_THREADS [1]       load generator runtime threads
#   DLR_DELAY_MS [1000]       smsc-sim's delay before each receipt
#   REDIS [0]                 1: start a redis-server on a free port for the L2 limits
#                             (else smsgate runs single-node, L2 from a node-local bucket)
#   NO_BUILD [0]              1: use the binaries already in target/release (or BIN)
#   BIN [target/release]      where the binaries are: a private copy keeps a run on one
#                             build while others rebuild target/release
#   SPIN_US []                smsgate's shards.spin_before_park_us (unset: not written)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-6}
WARMUP=${WARMUP:-1}
REPS=${REPS:-3}
SETTLE=${SETTLE:-1}
CONNS=${CONNS:-64}
H2_CONNS=${H2_CONNS:-4}
H2_STREAMS=${H2_STREAMS:-16}
GATE_CPUS=${GATE_CPUS:-}
LOADGEN_CPUS=${LOADGEN_CPUS:-}
LOADGEN_THREADS=${LOADGEN_THREADS:-1}
DLR_DELAY_MS=${DLR_DELAY_MS:-1000}
REDIS=${REDIS:-0}
KEY=perf-key-0123456789abcdef
LINK=bench
BIN=${BIN:-target/release}
SPIN_US=${SPIN_US:-}

SCENARIO=${1:-standard}
case "$SCENARIO" in
standard) ;;
memory)
    MEM_N=${2:-100000}
    DLR_DELAY_MS=600000
    ;;
*)
    echo "usage: perf/run.sh [memory [N]]" >&2
    exit 2
    ;;
esac

if [[ ${NO_BUILD:-0} != 1 ]]; then
    cargo build --release -p perf -p smsgate
fi

STAMP=$(date +%Y%m%d-%H%M%S)
OUT=perf/results/$STAMP
mkdir -p "$OUT"
source "$(dirname "$0")/lib.sh"
cleanup_first() {
    [[ -z ${GATE_PID:-} ]] || stop_gate
}

SIM_PORT=$(free_port)
GATE_PORT=$(free_port)
BARE_PORT=$(free_port)
GATE=127.0.0.1:$GATE_PORT
BARE=127.0.0.1:$BARE_PORT
REDIS_PORT=$(free_port)
cpus_toml="[]"
[[ -n $GATE_CPUS ]] && cpus_toml="[$GATE_CPUS]"

write_link_rules "$TMP/smpp_rules.toml" "$LINK" "$SIM_PORT"
cat >"$TMP/smsgate.toml" <<EOF
[shards]
cpus = $cpus_toml
$([[ -n $SPIN_US ]] && echo "spin_before_park_us = $SPIN_US")

[http]
listen = "$GATE"

[smpp]
rules_file = "$TMP/smpp_rules.toml"

[state]
path = "$TMP/state"

[log]
level = "warn"
$([[ $REDIS == 1 ]] && printf '\n[redis]\nurl = "redis://127.0.0.1:%s"\n' "$REDIS_PORT")

[[clients]]
name = "perf"
api_key = "$KEY"
EOF

if [[ $REDIS == 1 ]]; then
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        >"$OUT/redis.log" 2>&1 &
    PIDS+=("$!")
    for _ in $(seq 50); do
        redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && break
        sleep 0.1
    done
fi
"$BIN/smsc-sim" --listen "127.0.0.1:$SIM_PORT" --system-id smsgate --password secret \
    --dlr-delay-ms "$DLR_DELAY_MS" >"$OUT/smsc-sim.log" 2>&1 &
SIM_PID=$!
PIDS+=("$SIM_PID")
# smsgate starts afresh (empty state store) for every run: runs do not inherit each other's
# receipts or store size, and a fault in one run does not spoil the next.
GATE_PID=
start_gate() {
    rm -rf "$TMP/state"
    "$BIN/smsgate" --config "$TMP/smsgate.toml" >>"$OUT/smsgate.log" 2>&1 &
    GATE_PID=$!
    wait_for "$GATE" /healthz '"sessions_bound":2'
}
stop_gate() {
    kill -TERM "$GATE_PID" 2>/dev/null || true
    wait "$GATE_PID" 2>/dev/null || true
    GATE_PID=
}
bare_cpus=()
[[ -n $GATE_CPUS ]] && bare_cpus=(--cpus "$GATE_CPUS")
"$BIN/bare-server" --listen "$BARE" "${bare_cpus[@]}" >"$OUT/bare-server.log" 2>&1 &
BARE_PID=$!
PIDS+=("$BARE_PID")
wait_for "$BARE" /healthz ''

loadgen() {
    if [[ -n $LOADGEN_CPUS ]]; then
        taskset -c "$LOADGEN_CPUS" "$BIN/loadgen" --threads "$LOADGEN_THREADS" "$@"
    else
        "$BIN/loadgen" --threads "$LOADGEN_THREADS" "$@"
    fi
}

# The load of the machine before a run, so a reader sees the neighbours' builds.
note_load() {
    echo "$1 $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/loadavg.txt"
}

{
    echo "date: $(date -Is)"
    echo "host: $(uname -srm), $(nproc) CPUs"
    echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo none) (uncommitted changes may be present)"
    echo "settings: DURATION=$DURATION WARMUP=$WARMUP REPS=$REPS CONNS=$CONNS H2=${H2_CONNS}x$H2_STREAMS GATE_CPUS=${GATE_CPUS:-all} LOADGEN_CPUS=${LOADGEN_CPUS:-any} LOADGEN_THREADS=$LOADGEN_THREADS DLR_DELAY_MS=$DLR_DELAY_MS REDIS=$REDIS SPIN_US=${SPIN_US:-unset} BIN=$BIN"
} >"$OUT/run.txt"
cat "$OUT/run.txt"

# === memory ===

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

if [[ $SCENARIO == memory ]]; then
    start_gate
    half=$((MEM_N / 2))
    # A first small batch warms allocator arenas and the store, so the baseline is fair.
    loadgen --mode http1 --target "$GATE" --key "$KEY" --link "$LINK" --requests 2000 >/dev/null
    sleep 2
    r0=$(rss_kib "$GATE_PID")
    loadgen --mode http1 --target "$GATE" --key "$KEY" --link "$LINK" --requests "$half" \
        --label "memory first half" --out "$OUT/memory-1"
    sleep 2
    r1=$(rss_kib "$GATE_PID")
    loadgen --mode http1 --target "$GATE" --key "$KEY" --link "$LINK" --requests "$half" \
        --label "memory second half" --out "$OUT/memory-2"
    sleep 2
    r2=$(rss_kib "$GATE_PID")
    hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$GATE_PID/status")
    # Where the resident memory is: anonymous (heap, redb's cache) or file-backed (mmaps).
    rollup=$(grep -E '^(Rss|Pss_Anon|Pss_File|Pss_Shmem|Anonymous):' "/proc/$GATE_PID/smaps_rollup" |
        awk '{printf "%s %s KiB; ", $1, $2}')
    sim=$(rss_kib "$SIM_PID")
    disk=$(du -sk "$TMP/state" | cut -f1)
    {
        echo
        echo "smsgate RSS with messages awaiting receipts (smsc-sim holds them: --dlr-delay-ms $DLR_DELAY_MS)"
        printf '%-28s %10s\n' "messages awaiting" "RSS KiB"
        printf '%-28s %10s\n' "2,000 (baseline)" "$r0"
        printf '%-28s %10s\n' "$((half + 2000))" "$r1"
        printf '%-28s %10s\n' "$((2 * half + 2000))" "$r2"
        echo "VmHWM ${hwm} KiB; state dir on disk ${disk} KiB; smsc-sim RSS ${sim} KiB"
        echo "smaps_rollup at the end: $rollup"
        awk -v a="$r0" -v b="$r2" -v n="$((2 * half))" -v c="$r1" -v h="$half" 'BEGIN {
            slope = (b - a) * 1024 / n; slope2 = (b - c) * 1024 / h
            printf "growth: %.0f B per message over all %d, %.0f B per message over the second half\n", slope, n, slope2
            total = n + 2000
            if (total >= 1000000) {
                printf "measured at %d awaiting: %.1f MB (%.1f MiB)\n", total, b * 1024 / 1e6, b / 1024
            } else {
                # From the last point on, at the second half slope (a plateau, slope <= 0, stays flat).
                s2 = (slope2 > 0 ? slope2 : 0)
                printf "extrapolation (linear from the last point at the second-half slope, not measured) to 1,000,000 awaiting: %.0f MB\n", (b * 1024 + s2 * (1000000 - total)) / 1e6
            }
        }'
    } | tee "$OUT/memory.txt"
    echo "reports: $OUT"
    exit 0
fi

# === standard ===

run() { # run NAME MODE [loadgen options...]; NAME starts with bare- or gate-
    local name=$1 mode=$2 addr=$BARE pid=$BARE_PID
    shift 2
    if [[ $name == gate-* ]]; then
        start_gate
        addr=$GATE pid=$GATE_PID
    fi
    local shape=(--connections "$CONNS")
    [[ $mode == h2 ]] && shape=(--connections "$H2_CONNS" --streams "$H2_STREAMS")
    note_load "$name"
    local b0=0
    [[ $name == gate-* ]] && b0=$(state_batches)
    loadgen --mode "$mode" --target "$addr" --key "$KEY" --link "$LINK" "${shape[@]}" \
        --duration "$DURATION" --warmup "$WARMUP" --server-pid "$pid" \
        --label "$name" --out "$OUT/$name" "$@" >/dev/null
    head -2 "$OUT/$name.txt"
    if [[ $name == gate-* ]]; then
        # Syncs per answered request: the state writer's batches over warm-up + measured
        # window, against the requests answered over the same time (rps x (WARMUP+DURATION)).
        local b=$(($(state_batches) - b0)) rps
        rps=$(field "$OUT/$name.summary" rps)
        local per=$(awk -v b="$b" -v r="$rps" -v t="$((WARMUP + DURATION))" \
            'BEGIN {printf "%.3f", (r > 0 ? b / (r * t) : 0)}')
        sed -i "s/\$/ state_batches=$b syncs_per_answer=$per/" "$OUT/$name.summary"
        echo "  state writer: $b batches (one sync each), ~$per per answer"
    fi
    [[ $name == gate-* ]] && stop_gate
    sleep "$SETTLE"
}

# The state writer's batches (one sync each) so far, from smsgate's /metrics.
state_batches() {
    curl -sf "http://$GATE/metrics" | awk '/^smsgate_state_batches_total / {print $2; f = 1} END {if (!f) print 0}'
}

# field FILE KEY: a value of a .summary file.
field() { tr ' ' '\n' <"$1" | awk -F= -v k="$2" '$1 == k {print $2}'; }

# median KEY FILES...: the median of KEY over the files (the middle run, or the lower middle).
median() {
    local key=$1
    shift
    for f in "$@"; do field "$f" "$key"; done | grep -v '^-$' | sort -g |
        awk '{v[NR] = $1} END {if (NR) print v[int((NR + 1) / 2)]; else print "-"}'
}

echo
echo "== maximum throughput (closed loop), $REPS runs interleaved =="
for rep in $(seq "$REPS"); do
    for mode in http1 h2; do
        run "bare-$mode-max-$rep" "$mode"
        run "gate-$mode-max-$rep" "$mode"
    done
done

declare -A MAX
for mode in http1 h2; do
    MAX[$mode]=$(median rps "$OUT"/gate-$mode-max-*.summary)
done

echo
echo "== latency at 25/50/75 % of smsgate's maximum (open loop), $REPS runs interleaved =="
for rep in $(seq "$REPS"); do
    for pct in 25 50 75; do
        for mode in http1 h2; do
            rate=$((MAX[$mode] * pct / 100))
            run "gate-$mode-$pct-$rep" "$mode" --rate "$rate"
        done
    done
done

# One plot per mode: the median-p99 run of each level.
median_run() { # median_run PREFIX: the summary file whose p99 is the median
    for f in "$OUT/$1"-*.summary; do echo "$(field "$f" p99) $f"; done | sort -g |
        awk '{v[NR] = $2} END {print v[int((NR + 1) / 2)]}'
}
for mode in http1 h2; do
    series=()
    for level in max 25 50 75; do
        f=$(median_run "gate-$mode-$level")
        name="smsgate $level"
        [[ $level == max ]] || name="$name%"
        series+=("$name=${f%.summary}.hgrm")
    done
    f=$(median_run "bare-$mode-max")
    series+=("bare-server max=${f%.summary}.hgrm")
    "$BIN/loadgen" plot --out "$OUT/latency-$mode.svg" \
        --title "smsgate $mode latency by percentile (median-p99 run of $REPS)" "${series[@]}"
done

{
    echo
    echo "Medians of $REPS runs (each column on its own). Latency in ms of 2xx answers; CPU in µs per answer."
    printf '| %-28s | %9s | %7s | %7s | %7s | %7s | %7s | %8s | %7s | %6s | %9s |\n' \
        scenario "req/s" p50 p90 p99 p99.9 max "srv CPU" non-2xx errors "syncs/ans"
    echo "|---|---|---|---|---|---|---|---|---|---|---|"
    for mode in http1 h2; do
        for s in bare-max gate-max gate-25 gate-50 gate-75; do
            server=${s%-*} level=${s#*-}
            files=("$OUT/$server-$mode-$level"-*.summary)
            label="$mode ${server/gate/smsgate} max"
            [[ $server == bare ]] && label="$mode bare-server max"
            [[ $level != max ]] && label="$mode smsgate $level% ($(field "${files[0]}" rate)/s)"
            printf '| %-28s | %9s | %7s | %7s | %7s | %7s | %7s | %8s | %7s | %6s | %9s |\n' "$label" \
                "$(median rps "${files[@]}")" "$(median p50 "${files[@]}")" \
                "$(median p90 "${files[@]}")" "$(median p99 "${files[@]}")" \
                "$(median p999 "${files[@]}")" "$(median max "${files[@]}")" \
                "$(median server_cpu_us "${files[@]}")" "$(median non2xx "${files[@]}")" \
                "$(median errors "${files[@]}")" "$(median syncs_per_answer "${files[@]}")"
        done
    done
    echo
    for mode in http1 h2; do
        bare=$(median rps "$OUT"/bare-$mode-max-*.summary)
        awk -v g="${MAX[$mode]}" -v b="$bare" -v m="$mode" \
            'BEGIN {printf "%s: smsgate / bare-server maximum = %d / %d = %.2f\n", m, g, b, (b > 0 ? g / b : 0)}'
    done
    echo "load average before each run: $OUT/loadavg.txt"
} | tee "$OUT/table.md"
echo "reports: $OUT"
