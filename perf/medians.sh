#!/usr/bin/env bash
# Medians over several perf/run.sh result folders (e.g. REPS=1 runs of one setting, made
# interleaved with runs of other settings):
#
#   perf/medians.sh perf/results/A perf/results/B perf/results/C
#
# One row per scenario (run name without its -<rep> suffix): the median of each column over
# every run of that scenario in the folders. Latency in ms; CPU in µs per answer.
set -euo pipefail
field() { tr ' ' '\n' <"$1" | awk -F= -v k="$2" '$1 == k {print $2}'; }
median() {
    local key=$1
    shift
    for f in "$@"; do field "$f" "$key"; done | grep -v '^-$' | grep -v '^$' | sort -g |
        awk '{v[NR] = $1} END {if (NR) print v[int((NR + 1) / 2)]; else print "-"}'
}
printf '| %-16s | %4s | %9s | %7s | %7s | %7s | %7s | %8s | %9s |\n' \
    scenario runs "req/s" p50 p90 p99 p99.9 "srv CPU" "syncs/ans"
echo "|---|---|---|---|---|---|---|---|---|"
for mode in http1 h2; do
    for s in bare-max gate-max gate-25 gate-50 gate-75; do
        server=${s%-*} level=${s#*-}
        files=()
        for d in "$@"; do
            for f in "$d/$server-$mode-$level"-*.summary; do
                [[ -e $f ]] && files+=("$f")
            done
        done
        ((${#files[@]})) || continue
        printf '| %-16s | %4s | %9s | %7s | %7s | %7s | %7s | %8s | %9s |\n' "$mode $s" "${#files[@]}" \
            "$(median rps "${files[@]}")" "$(median p50 "${files[@]}")" "$(median p90 "${files[@]}")" \
            "$(median p99 "${files[@]}")" "$(median p999 "${files[@]}")" \
            "$(median server_cpu_us "${files[@]}")" "$(median syncs_per_answer "${files[@]}")"
    done
done
