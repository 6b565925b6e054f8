# Shared set-up of the perf scripts (run.sh, history.sh, webhooks.sh); sourced, not run.
#
# After sourcing: TMP (a temp dir, removed at exit), PIDS (processes to stop at exit: append
# with PIDS+=("$!")), free_port, wait_for, write_link_rules. A script that has more to stop
# defines `cleanup_first` (called before the PIDS are stopped) or `cleanup_last` (after).

TMP=$(mktemp -d)
PIDS=()
cleanup() {
    if declare -F cleanup_first >/dev/null; then
        cleanup_first || true
    fi
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if declare -F cleanup_last >/dev/null; then
        cleanup_last || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

# A free TCP port on 127.0.0.1.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until "$1" answers GET "$2" with a body matching "$3", for at most 20 s.
wait_for() {
    local i
    for i in $(seq 200); do
        if curl -sf "http://$1$2" 2>/dev/null | grep -q "$3"; then
            return 0
        fi
        sleep 0.1
    done
    echo "$(basename "$0"): $1$2 did not answer with $3" >&2
    exit 1
}

# Writes the rules file "$1" with one link "$2" to smsc-sim on port "$3" (2 sessions, window 512,
# a rate far above what the box can send).
write_link_rules() {
    cat >"$1" <<EOF
[links.$2]
host = "127.0.0.1"
port = $3
system_id = "smsgate"
password = "secret"
esme_rate = 1000000
esme_rate_burst = 100000
sessions = 2
window = 512
EOF
}
