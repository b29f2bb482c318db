#!/usr/bin/env bash
# perf/latency.sh: end-to-end latency (scheduled send -> receipt by the recipient) at fractions
# of the sustainable rate, and at 10,000 msg/s explicitly.
#
#   perf/latency.sh SUSTAINABLE_RATE
#
# Runs 25 %, 50 % and 75 % of SUSTAINABLE_RATE and 10000 msg/s, REPEAT (3) times each, STEP_SECS
# (15) each, ~1000 connections, 100-byte payloads, against one pod (FULL_SYNC=true by default:
# --store-full-sync true; FULL_SYNC=false for the other mode), then the Socket.IO peer at 10000
# msg/s (SIO=0 to skip). Prints p50/p99/p99.9 per run and the median per level.
# Env: REPEAT, STEP_SECS, CONNS (1000), FULL_SYNC, SIO, EXTRA_RATES (more rates, space-separated).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
perf_traps

[[ $# -ge 1 && "$1" =~ ^[0-9]+$ ]] || die "usage: $0 SUSTAINABLE_RATE (msg/s, from perf/throughput.sh)"
SUST="$1"
REPEAT="${REPEAT:-3}"
STEP_SECS="${STEP_SECS:-15}"
CONNS="${CONNS:-1000}"
FULL_SYNC="${FULL_SYNC:-true}"
SIO="${SIO:-1}"

wait_ci
perf_out_dir latency
perf_stat_probe
machine_info | tee "$PERF_OUT/machine.txt" >&2
SUMMARY="$PERF_OUT/summary.tsv"
echo -e "target\tlevel\trate\trun\tload\t${report_header}\tserver_cpu_pct\tgen_cpu_pct" >"$SUMMARY"

levels=("25%:$(( SUST / 4 ))" "50%:$(( SUST / 2 ))" "75%:$(( SUST * 3 / 4 ))" "fixed:10000")
for r in ${EXTRA_RATES:-}; do levels+=("extra:$r"); done

one() { # TARGET LEVEL RATE RUN PIDS PORTS URL-ARGS...
    local target="$1" level="$2" rate="$3" run="$4" pids="$5" ports="$6"; shift 6
    local tag="$target-$rate-$run" ld
    ld="$(load_now)"
    log "$target $level = $rate msg/s (run $run), load $ld"
    run_step "$tag" "$pids" "$ports" $(( 2 + STEP_SECS / 3 )) -- "$@" \
        --connections "$CONNS" --connect-rate 2000 --rate "$rate" --duration-secs "$STEP_SECS" \
        --payload-bytes 100 --drain-secs 5
    local json="$PERF_OUT/$tag.json"
    [[ -s "$json" ]] || { log "no report for $tag"; return 0; }
    echo -e "$target\t$level\t$rate\t$run\t$ld\t$(report_cols "$json")\t$STEP_CPU\t$STEP_GEN_CPU" >>"$SUMMARY"
    log "$(bench_line "$json")"
}

port="$(free_port 18400)"
pod_start "$port" --store-full-sync "$FULL_SYNC"
for lv in "${levels[@]}"; do
    for ((run = 1; run <= REPEAT; run++)); do
        one "pod-fullsync-$FULL_SYNC" "${lv%%:*}" "${lv#*:}" "$run" "$POD_PID" "$port" --url "ws://127.0.0.1:$port/ws"
    done
done
pod_stop "$POD_PID"

if [[ "$SIO" == 1 ]]; then
    sio_start
    for ((run = 1; run <= REPEAT; run++)); do
        # shellcheck disable=SC2046
        one socketio fixed 10000 "$run" "$(sio_pid $SIO_A) $(sio_pid $SIO_B)" "" --protocol socketio $(sio_urls)
    done
    sio_stop
fi

log "medians (ms) per target and rate:"
{
    echo -e "target\tlevel\trate\truns\tp50_ms_median\tp99_ms_median\tp99_ms_range\tp999_ms_median\tmissing_total"
    awk -F'\t' 'NR>1 {print $1"\t"$2"\t"$3}' "$SUMMARY" | sort -u | while IFS=$'\t' read -r t l r; do
        sel() { awk -F'\t' -v t="$t" -v r="$r" -v c="$1" 'NR>1 && $1==t && $3==r {print $c/1000}' "$SUMMARY"; }
        n="$(sel 15 | wc -l)"
        echo -e "$t\t$l\t$r\t$n\t$(sel 14 | median)\t$(sel 15 | median)\t$(sel 15 | range)\t$(sel 16 | median)\t$(sel 12 | awk '{s+=$1*1000} END{print s}')"
    done
} | tee "$PERF_OUT/medians.tsv" | column -t -s $'\t' >&2
