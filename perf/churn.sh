#!/usr/bin/env bash
# perf/churn.sh: new connections per second (TCP connect + WebSocket upgrade + dev auth; a
# connection counts once the pod answered 101; route registration and the store replay run right
# after the 101, so they show in the pod's CPU, not in the connect latency).
#
#   perf/churn.sh [CONNECT_RATES...]     default: 2000 5000 10000 20000 40000
#
# For each paced --connect-rate the generator opens CONNS (10000) connections to one pod
# (--store-full-sync false; connecting writes only a last-seen time, batched) and closes them; REPEAT (3)
# runs per rate. Reports the achieved rate (connections opened / wall time of the connect phase),
# connection errors by kind, connect latency p50/p99, and the pod's CPU during the phase.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
perf_traps

read -r -a RATES <<<"${*:-2000 5000 10000 20000 40000}"
CONNS="${CONNS:-10000}"
REPEAT="${REPEAT:-3}"

wait_ci
perf_out_dir churn
machine_info | tee "$PERF_OUT/machine.txt" >&2
SUMMARY="$PERF_OUT/summary.tsv"
echo -e "connect_rate\trun\tload\tconnect_ok\tconnect_failed\tconnect_errors\tconnect_secs\tachieved_per_s\tconnect_p50_us\tconnect_p99_us\tpod_cpu_pct" >"$SUMMARY"

port="$(free_port 18600)"
pod_start "$port" --store-full-sync false
hz="$(clk_tck)"
for rate in "${RATES[@]}"; do
    for ((run = 1; run <= REPEAT; run++)); do
        tag="churn-$rate-$run"; ld="$(load_now)"
        log "connect-rate $rate (run $run), load $ld"
        c0="$(cpu_ticks "$POD_PID")"; t0="$(date +%s.%N)"
        "$BENCH" --url "ws://127.0.0.1:$port/ws" --connections "$CONNS" --connect-rate "$rate" \
            --procs 1 --rate 0 --duration-secs 0 --drain-secs 0 --connect-timeout-secs 10 \
            --user-prefix "churn-$rate-$run-" --json "$PERF_OUT/$tag.json" >/dev/null 2>"$PERF_OUT/$tag.log" \
            || log "generator exited non-zero"
        c1="$(cpu_ticks "$POD_PID")"; t1="$(date +%s.%N)"
        json="$PERF_OUT/$tag.json"
        cpu="$(awk -v a="$c0" -v b="$c1" -v hz="$hz" -v t0="$t0" -v t1="$t1" 'BEGIN{printf "%.0f", (b-a)/hz/(t1-t0)*100}')"
        jq -r --arg r "$rate" --arg run "$run" --arg ld "$ld" --arg cpu "$cpu" '
            [$r, $run, $ld, .counts.connect_ok, .counts.connect_failed, (.counts.connect_errors|tojson),
             .connect_secs, ((.counts.connect_ok / .connect_secs) | floor),
             .connect_latency_us.p50, .connect_latency_us.p99, $cpu] | @tsv' "$json" | tee -a "$SUMMARY" >&2
        # let the pod tear the closed connections down before the next run
        for _ in $(seq 30); do (( $(metric_sum "$port" connections) == 0 )) && break; sleep 1; done
    done
done
pod_stop "$POD_PID"
column -t -s $'\t' "$SUMMARY" >&2
