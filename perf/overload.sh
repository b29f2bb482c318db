#!/usr/bin/env bash
# perf/overload.sh: 2x the sustainable rate for 60 s.
#
#   perf/overload.sh SUSTAINABLE_RATE
#
# Offers 2 x SUSTAINABLE_RATE msg/s (open loop, ~1000 connections, 100-byte payloads) for
# OVER_SECS (60) to one pod (FULL_SYNC=true by default), then waits up to DRAIN (30) s for
# outstanding deliveries. Reports offered vs accepted, error frames (overloaded), refused,
# unanswered, sends the generator dropped because the socket was back-pressured, missing (must be
# 0: every accepted message delivered), duplicates, and samples the pod's VmRSS, store queue
# depth and inbox depth every 5 s (rss.tsv) to show memory stays bounded. Then the Socket.IO
# peer at the same offered rate (SIO=0 to skip): its loss (missing) and node RSS over time.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
perf_traps

[[ $# -ge 1 && "$1" =~ ^[0-9]+$ ]] || die "usage: $0 SUSTAINABLE_RATE (msg/s, from perf/throughput.sh)"
RATE=$(( 2 * $1 ))
OVER_SECS="${OVER_SECS:-60}"
DRAIN="${DRAIN:-30}"
CONNS="${CONNS:-1000}"
FULL_SYNC="${FULL_SYNC:-true}"
SIO="${SIO:-1}"

wait_ci
perf_out_dir overload
perf_stat_probe
machine_info | tee "$PERF_OUT/machine.txt" >&2
SUMMARY="$PERF_OUT/summary.tsv"
echo -e "target\trate\tload\t${report_header}\tserver_cpu_pct\tgen_cpu_pct\trss_min_kib\trss_max_kib" >"$SUMMARY"

# sampler TAG "PIDS" PORT(or empty): every 5 s, t, rss sum (KiB), store queue, inbox, overloaded errors
sampler() {
    local tag="$1" pids="$2" port="$3" t0=$SECONDS rss p q i e
    echo -e "t_s\trss_kib\tstore_queue\tinbox\toverloaded_total" >"$PERF_OUT/$tag.rss.tsv"
    while true; do
        rss=0; for p in $pids; do rss=$(( rss + $(rss_kib "$p" 2>/dev/null || echo 0) )); done
        if [[ -n "$port" ]] && m="$(metrics "$port" 2>/dev/null)"; then
            q="$(awk '/^distrisocks_store_queue_depth /{print $2}' <<<"$m")"
            i="$(awk '/^distrisocks_inbox_depth/{s+=$2} END{print s+0}' <<<"$m")"
            e="$(awk '/^distrisocks_errors_total\{code="overloaded"\}/{print $2}' <<<"$m")"
        else q=NA; i=NA; e=NA; fi
        echo -e "$(( SECONDS - t0 ))\t$rss\t$q\t$i\t$e" >>"$PERF_OUT/$tag.rss.tsv"
        sleep 5
    done
}

one() { # TARGET PIDS PORT URL-ARGS...
    local target="$1" pids="$2" port="$3"; shift 3
    local tag="$target-$RATE" ld spid p
    ld="$(load_now)"
    log "$target: $RATE msg/s for ${OVER_SECS}s, load $ld"
    sampler "$tag" "$pids" "$port" & spid=$!
    PERF_PIDS+=("$spid")
    local margs=(); [[ -n "$port" ]] && margs=(--metrics-url "http://127.0.0.1:$port/metrics")
    run_step "$tag" "$pids" "$port" 20 -- "$@" "${margs[@]}" \
        --connections "$CONNS" --connect-rate 2000 --rate "$RATE" --duration-secs "$OVER_SECS" \
        --payload-bytes 100 --drain-secs "$DRAIN"
    kill "$spid" 2>/dev/null || true; wait "$spid" 2>/dev/null || true
    local json="$PERF_OUT/$tag.json" mm
    [[ -s "$json" ]] || { log "no report for $tag"; return 0; }
    mm="$(awk -F'\t' 'NR>1 && $2>0 {if(!min||$2<min)min=$2; if($2>max)max=$2} END{print min"\t"max}' "$PERF_OUT/$tag.rss.tsv")"
    echo -e "$target\t$RATE\t$ld\t$(report_cols "$json")\t$STEP_CPU\t$STEP_GEN_CPU\t$mm" >>"$SUMMARY"
    log "$(bench_line "$json") dropped_backlog=$(jq .counts.dropped_backlog "$json") close_codes=$(jq -c .counts.close_codes "$json")"
    column -t "$PERF_OUT/$tag.rss.tsv" >&2
}

port="$(free_port 18500)"
pod_start "$port" --store-full-sync "$FULL_SYNC"
one "pod-fullsync-$FULL_SYNC" "$POD_PID" "$port" --url "ws://127.0.0.1:$port/ws"
metrics "$port" >"$PERF_OUT/pod.final-metrics.txt" || true
pod_stop "$POD_PID"

if [[ "$SIO" == 1 ]]; then
    sio_start
    # shellcheck disable=SC2046
    one socketio "$(sio_pid $SIO_A) $(sio_pid $SIO_B)" "" --protocol socketio $(sio_urls)
    sio_stop
fi
column -t -s $'\t' "$SUMMARY" >&2
