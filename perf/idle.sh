#!/usr/bin/env bash
# perf/idle.sh: memory and CPU of idle connections.
#
#   perf/idle.sh [COUNTS...]        default: 1000 10000 19000 (pod) and 1000 10000 (Socket.IO)
#
# For each count: a fresh pod (embedded store, --store-full-sync false), VmRSS + kernel socket
# counters before, the generator opens COUNT idle connections (several 127.0.0.x sources, two
# processes above 10k), settle, RSS + kernel after -> bytes per connection; then the pod's CPU
# (utime+stime from /proc/PID/stat) over IDLE_CPU_SECS (30) with keepalive pings on.
# Then the Socket.IO peer (two node processes + Redis) at SIO_COUNTS (1000 10000): RSS from
# /stats before/after, and after GET /gc.
# Env: REPEAT (1) runs per count, SIO_COUNTS, CONNECT_RATE (2000), IDLE_CPU_SECS (30),
#      MULTI=1 also runs MULTI_PODS (4) pods x MULTI_COUNT (19000) side by side.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
perf_traps

COUNTS=("${@:-1000 10000 19000}"); read -r -a COUNTS <<<"${COUNTS[*]}"
read -r -a SIO_COUNTS <<<"${SIO_COUNTS:-1000 10000}"
REPEAT="${REPEAT:-1}"
CONNECT_RATE="${CONNECT_RATE:-2000}"
IDLE_CPU_SECS="${IDLE_CPU_SECS:-30}"
SETTLE=5

wait_ci
perf_out_dir idle
machine_info | tee "$PERF_OUT/machine.txt" >&2
SUMMARY="$PERF_OUT/summary.tsv"
echo -e "target\tconns\trun\topened\tload\trss_before_kib\trss_after_kib\tuser_B_per_conn\tsockets_delta\ttcp_mem_pages_delta\tslab_delta_kib\tslabinfo_delta_B\tkernel_B_per_socket_end\tidle_cpu_pct\tnote" >"$SUMMARY"

procs_for() { if (( $1 > 10000 )); then echo $(( ($1 + 9499) / 9500 )); else echo 1; fi; }

# start_gen TAG N URL-FLAGS... : generator holding N idle connections for HOLD seconds (bg)
start_gen() {
    local tag="$1" n="$2"; shift 2
    local hold="$(( SETTLE + IDLE_CPU_SECS + 8 ))"
    "$BENCH" "$@" --connections "$n" --connect-rate "$CONNECT_RATE" --procs "$(procs_for "$n")" \
        --rate 0 --duration-secs 0 --drain-secs 0 --idle-secs "$hold" --connect-timeout-secs 10 \
        --user-prefix "idle-$tag-" --json "$PERF_OUT/$tag.json" >/dev/null 2>"$PERF_OUT/$tag.log" &
    GEN_PID=$!
    PERF_PIDS+=("$GEN_PID")
}

wait_conns() { # CMD-THAT-PRINTS-COUNT N TIMEOUT
    local get="$1" n="$2" t="$3" deadline c=0
    deadline=$((SECONDS + t))
    while (( SECONDS < deadline )); do
        c="$($get 2>/dev/null || echo 0)"
        (( c >= n )) && break
        kill -0 "$GEN_PID" 2>/dev/null || break
        sleep 1
    done
    echo "$c"
}

pod_idle() { # N RUN
    local n="$1" run="$2" port tag k0 k1 r0 r1 opened c0 c1 ld
    port="$(free_port 18100)"
    tag="pod-$n-$run"
    pod_start "$port" --store-full-sync false
    sleep 3
    ld="$(load_now)"
    r0="$(rss_kib "$POD_PID")"; k0="$(kernel_snapshot)"
    start_gen "$tag" "$n" --url "ws://127.0.0.1:$port/ws"
    opened="$(wait_conns "metric_sum $port connections" "$n" $(( n / CONNECT_RATE + 40 )))"
    sleep "$SETTLE"
    r1="$(rss_kib "$POD_PID")"; k1="$(kernel_snapshot)"
    c0="$(cpu_ticks "$POD_PID")"; sleep "$IDLE_CPU_SECS"; c1="$(cpu_ticks "$POD_PID")"
    local r2; r2="$(rss_kib "$POD_PID")"
    echo "$k0" >"$PERF_OUT/$tag.kernel-before.json"; echo "$k1" >"$PERF_OUT/$tag.kernel-after.json"
    metrics "$port" >"$PERF_OUT/$tag.metrics.txt" || true
    wait "$GEN_PID" || log "generator exited non-zero"
    pod_stop "$POD_PID"
    row "pod" "$n" "$run" "$opened" "$ld" "$r0" "$r1" "$k0" "$k1" "$c0" "$c1" "rss_after_idle_cpu_kib=$r2"
}

row() { # target n run opened load r0 r1 k0 k1 c0 c1 note
    local t="$1" n="$2" run="$3" opened="$4" ld="$5" r0="$6" r1="$7" k0="$8" k1="$9" c0="${10}" c1="${11}" note="${12}"
    local hz; hz="$(clk_tck)"
    python3 - "$t" "$n" "$run" "$opened" "$ld" "$r0" "$r1" "$k0" "$k1" "$c0" "$c1" "$hz" "$IDLE_CPU_SECS" "$note" >>"$SUMMARY" <<'EOF'
import json, sys
t, n, run, opened, ld, r0, r1, k0, k1, c0, c1, hz, secs, note = sys.argv[1:]
n = int(opened) if int(opened) > 0 else int(n)
k0, k1 = json.loads(k0), json.loads(k1)
r0, r1 = int(r0), int(r1)
user = (r1 - r0) * 1024 / n
ds = k1["sockets_used"] - k0["sockets_used"]
dm = k1["tcp_mem_pages"] - k0["tcp_mem_pages"]
dslab = k1["slab_kib"] - k0["slab_kib"]
dinfo = k1["slabinfo_bytes"] - k0["slabinfo_bytes"]
per_end = (dinfo if dinfo else dslab * 1024) / (2 * n)
cpu = "" if c0 == "" else "%.2f" % ((int(c1) - int(c0)) / int(hz) / int(secs) * 100)
print("\t".join(map(str, [t, sys.argv[2], run, opened, ld, r0, r1, round(user), ds, dm, dslab, dinfo, round(per_end), cpu, note])))
EOF
    tail -1 "$SUMMARY" >&2
}

sio_sum() { # field
    local f="$1"
    echo $(( $(sio_stats $SIO_A | jq ".$f") + $(sio_stats $SIO_B | jq ".$f") ))
}
sio_conns() { sio_sum connections; }

sio_idle() { # N RUN
    local n="$1" run="$2" tag="sio-$1-$2" r0 r1 r2 k0 k1 opened c0 c1 ld pa pb
    sio_start
    sleep 3
    sio_gc $SIO_A >/dev/null; sio_gc $SIO_B >/dev/null; sleep 3
    pa="$(sio_pid $SIO_A)"; pb="$(sio_pid $SIO_B)"
    ld="$(load_now)"
    r0="$(sio_sum rss)"; k0="$(kernel_snapshot)"
    # shellcheck disable=SC2046
    start_gen "$tag" "$n" --protocol socketio $(sio_urls)
    opened="$(wait_conns sio_conns "$n" $(( n / CONNECT_RATE + 40 )))"
    sleep "$SETTLE"
    r1="$(sio_sum rss)"; k1="$(kernel_snapshot)"
    c0="$(( $(cpu_ticks "$pa") + $(cpu_ticks "$pb") ))"; sleep "$IDLE_CPU_SECS"
    c1="$(( $(cpu_ticks "$pa") + $(cpu_ticks "$pb") ))"
    sio_gc $SIO_A >/dev/null; sio_gc $SIO_B >/dev/null; sleep 3
    r2="$(sio_sum rss)"
    { sio_stats $SIO_A; sio_stats $SIO_B; } >"$PERF_OUT/$tag.stats.json"
    wait "$GEN_PID" || log "generator exited non-zero"
    sio_stop
    # /stats rss is in bytes; convert to KiB for the row
    row "socketio(2 procs)" "$n" "$run" "$opened" "$ld" "$((r0 / 1024))" "$((r1 / 1024))" "$k0" "$k1" "$c0" "$c1" \
        "after_gc_B_per_conn=$(( (r2 - r0) / (opened > 0 ? opened : n) ))"
}

multi_pods() { # PODS N
    local pods="$1" n="$2" i ports=() pids=() gens=() r0=0 r1=0 ld k0 k1 opened=0
    for ((i = 0; i < pods; i++)); do
        pod_start "$(free_port $((18200 + i * 10)))" --store-full-sync false
        ports+=("$POD_PORT"); pids+=("$POD_PID")
    done
    sleep 3; ld="$(load_now)"
    for p in "${pids[@]}"; do r0=$(( r0 + $(rss_kib "$p") )); done
    k0="$(kernel_snapshot)"
    for ((i = 0; i < pods; i++)); do
        start_gen "multi-$i" "$n" --url "ws://127.0.0.1:${ports[$i]}/ws"
        gens+=("$GEN_PID")
    done
    for ((i = 0; i < pods; i++)); do
        GEN_PID="${gens[$i]}"
        opened=$(( opened + $(wait_conns "metric_sum ${ports[$i]} connections" "$n" $(( pods * n / CONNECT_RATE + 60 ))) ))
    done
    sleep "$SETTLE"
    for p in "${pids[@]}"; do r1=$(( r1 + $(rss_kib "$p") )); done
    k1="$(kernel_snapshot)"
    for g in "${gens[@]}"; do wait "$g" || true; done
    for p in "${pids[@]}"; do pod_stop "$p"; done
    row "pod x$pods (total)" "$((pods * n))" 1 "$opened" "$ld" "$r0" "$r1" "$k0" "$k1" "" "" "per_pod_conns=$n"
}

for n in "${COUNTS[@]}"; do
    for ((run = 1; run <= REPEAT; run++)); do
        log "pod: $n idle connections (run $run), load $(load_now)"
        pod_idle "$n" "$run"
    done
done
for n in "${SIO_COUNTS[@]}"; do
    for ((run = 1; run <= REPEAT; run++)); do
        log "socket.io: $n idle connections (run $run), load $(load_now)"
        sio_idle "$n" "$run"
    done
done
if [[ "${MULTI:-0}" == 1 ]]; then
    log "multi: ${MULTI_PODS:-4} pods x ${MULTI_COUNT:-19000}"
    IDLE_CPU_SECS=0 multi_pods "${MULTI_PODS:-4}" "${MULTI_COUNT:-19000}"
fi
log "done: $SUMMARY"
column -t -s $'\t' "$SUMMARY" >&2
