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
#
# OVER_TARGET=dist: two distributed pods on tansu, Redis and Postgres instead of the embedded
# pod (own schema and topic prefix, as `TARGETS=dist perf/throughput.sh` starts them; the
# Socket.IO peer is skipped). The RSS column sums both pods, the queue columns both pods'
# /metrics. DIST_EXTRA: more flags for both pods (e.g. "--kafka-fetch-wait-ms 10").
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
OVER_TARGET="${OVER_TARGET:-pod}"

wait_ci
perf_out_dir overload
perf_stat_probe
machine_info | tee "$PERF_OUT/machine.txt" >&2
SUMMARY="$PERF_OUT/summary.tsv"
echo -e "target\trate\tload\t${report_header}\tserver_cpu_pct\tgen_cpu_pct\trss_min_kib\trss_max_kib" >"$SUMMARY"

# sampler TAG "PIDS" "PORTS"(or empty): every 5 s, t, rss sum (KiB), store queue, inbox,
# overloaded errors (each summed over the pods)
sampler() {
    local tag="$1" pids="$2" ports="$3" t0=$SECONDS rss p q i e m
    echo -e "t_s\trss_kib\tstore_queue\tinbox\toverloaded_total" >"$PERF_OUT/$tag.rss.tsv"
    while true; do
        rss=0; for p in $pids; do rss=$(( rss + $(rss_kib "$p" 2>/dev/null || echo 0) )); done
        if [[ -n "$ports" ]]; then
            m=""; for p in $ports; do m+="$(metrics "$p" 2>/dev/null)"$'\n'; done
            q="$(awk '/^distrisocks_store_queue_depth /{s+=$2} END{print s+0}' <<<"$m")"
            i="$(awk '/^distrisocks_inbox_depth/{s+=$2} END{print s+0}' <<<"$m")"
            e="$(awk '/^distrisocks_errors_total\{code="overloaded"\}/{s+=$2} END{print s+0}' <<<"$m")"
        else q=NA; i=NA; e=NA; fi
        echo -e "$(( SECONDS - t0 ))\t$rss\t$q\t$i\t$e" >>"$PERF_OUT/$tag.rss.tsv"
        sleep 5
    done
}

one() { # TARGET PIDS PORTS URL-ARGS...
    local target="$1" pids="$2" ports="$3"; shift 3
    local tag="$target-$RATE" ld spid p
    ld="$(load_now)"
    log "$target: $RATE msg/s for ${OVER_SECS}s, load $ld"
    sampler "$tag" "$pids" "$ports" & spid=$!
    PERF_PIDS+=("$spid")
    local margs=()
    for p in $ports; do margs+=(--metrics-url "http://127.0.0.1:$p/metrics"); done
    run_step "$tag" "$pids" "$ports" 20 -- "$@" "${margs[@]}" \
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

embedded() {
    local port
    port="$(free_port 18500)"
    pod_start "$port" --store-full-sync "$FULL_SYNC"
    one "pod-fullsync-$FULL_SYNC" "$POD_PID" "$port" --url "ws://127.0.0.1:$port/ws"
    metrics "$port" >"$PERF_OUT/pod.final-metrics.txt" || true
    pod_stop "$POD_PID"
}

distributed() { # two pods, as TARGETS=dist perf/throughput.sh starts them
    local tagd pa pb pida pidb dflags extra
    # shellcheck disable=SC1091
    source "$PERF_ROOT/scripts/services.sh"
    services_up >&2
    tagd="$(date +%s)"
    read -r -a extra <<<"${DIST_EXTRA:-}"
    dflags=(--kafka-brokers 127.0.0.1:9092 --redis-url redis://127.0.0.1:6379/
        --postgres-url postgres://postgres@127.0.0.1:5432/test
        --postgres-schema "perf_$tagd" --prefix "perf$tagd." --kafka-replication-factor 1
        "${extra[@]}")
    pa="$(free_port 18700)"; pod_start "$pa" --pod-id "perfa$tagd" "${dflags[@]}"; pida="$POD_PID"
    pb="$(free_port 18710)"; pod_start "$pb" --pod-id "perfb$tagd" "${dflags[@]}"; pidb="$POD_PID"
    one dist "$pida $pidb" "$pa $pb" --url "ws://127.0.0.1:$pa/ws" --url "ws://127.0.0.1:$pb/ws"
    metrics "$pa" >"$PERF_OUT/dist-a.final-metrics.txt" || true
    metrics "$pb" >"$PERF_OUT/dist-b.final-metrics.txt" || true
    pod_stop "$pida"; pod_stop "$pidb"
    psql -q postgres://postgres@127.0.0.1:5432/test -c "DROP SCHEMA IF EXISTS perf_$tagd CASCADE" >&2 || true
}

case "$OVER_TARGET" in
    pod) embedded ;;
    dist) distributed; SIO=0 ;;
    *) die "OVER_TARGET must be pod or dist, not $OVER_TARGET" ;;
esac

if [[ "$SIO" == 1 ]]; then
    sio_start
    # shellcheck disable=SC2046
    one socketio "$(sio_pid $SIO_A) $(sio_pid $SIO_B)" "" --protocol socketio $(sio_urls)
    sio_stop
fi
column -t -s $'\t' "$SUMMARY" >&2
