#!/usr/bin/env bash
# perf/throughput.sh: highest sustainable 1:1 rate (open loop, 100-byte payloads, ~1000
# connections = 500 pairs), stepping the offered rate up.
#
#   perf/throughput.sh [RATES...]          default: 5000 10000 20000 40000 60000
#
# TARGETS (default "sync nosync socketio"):
#   sync      pod, embedded store, --store-full-sync true (the default: fsync per commit)
#   nosync    pod, embedded store, --store-full-sync false
#   socketio  Socket.IO peer: two node processes behind Redis, users spread over both ports
#   dist      distributed mode: 2 pods on Kafka (tansu at 127.0.0.1:9092), Redis, Postgres
#             (scripts/services.sh services_up), users spread over both pods, own schema/prefix;
#             --kafka-fetch-wait-ms FETCH_WAIT (10, as perf/cost.sh): tansu holds every fetch for
#             the full wait, so the pods' default of 100 ms would fail every step on latency alone
#   broker    the broker alone (kcat): BROKER_MSGS (200000) 100-byte records produced with
#             acks=all, linger.ms=1 to a fresh topic, then consumed; msg/s of each (no gateway)
# A step passes when offered >= 97 % of the target rate, delivered >= 97 % of offered, missing = 0,
# refused = 0 and p99 <= 50 ms. After FAIL_STOP (2) failing steps in a row a target stops.
# Mid-step evidence (CPU of the server processes and of the generator, top, /metrics queue depths,
# perf stat software counters) lands in $PERF_OUT/<tag>.mid.txt; the table in summary.tsv.
# Env: STEP_SECS (15), CONNS (1000), PAYLOAD (100), REPEAT (1), FAIL_STOP (2), TARGETS.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
perf_traps

read -r -a RATES <<<"${*:-5000 10000 20000 40000 60000}"
read -r -a TARGETS <<<"${TARGETS:-sync nosync socketio}"
STEP_SECS="${STEP_SECS:-15}"
CONNS="${CONNS:-1000}"
PAYLOAD="${PAYLOAD:-100}"
REPEAT="${REPEAT:-1}"
FAIL_STOP="${FAIL_STOP:-2}"

wait_ci
perf_out_dir throughput
perf_stat_probe
machine_info | tee "$PERF_OUT/machine.txt" >&2
SUMMARY="$PERF_OUT/summary.tsv"
echo -e "target\trate\trun\tload\t${report_header}\tserver_cpu_pct\tgen_cpu_pct\tstore_queue_mid\tinbox_mid\tcommit_us_avg\tcmds_per_batch\tpass" >"$SUMMARY"

passes() { # JSON RATE -> 0 if the step is sustainable
    jq -e --argjson r "$2" '
        .offered_per_sec >= 0.97 * $r and .delivered_per_sec >= 0.97 * .offered_per_sec
        and .counts.missing == 0 and .counts.refused == 0 and .latency_us.p99 <= 50000
        and .counts.connect_failed == 0' "$1" >/dev/null
}

step() { # TARGET RATE RUN PIDS PORTS BENCH-URL-ARGS...
    local target="$1" rate="$2" run="$3" pids="$4" ports="$5"; shift 5
    local tag="$target-$rate-$run" ld metrics_args=() p ok=no
    for p in $ports; do metrics_args+=(--metrics-url "http://127.0.0.1:$p/metrics"); done
    local watch=(); for p in $pids; do watch+=(--watch-pid "$p"); done
    ld="$(load_now)"
    log "$target: $rate msg/s for ${STEP_SECS}s (run $run), load $ld"
    run_step "$tag" "$pids" "$ports" $(( 2 + STEP_SECS / 3 )) -- "$@" \
        --connections "$CONNS" --connect-rate 2000 --rate "$rate" --duration-secs "$STEP_SECS" \
        --payload-bytes "$PAYLOAD" --drain-secs 5 "${metrics_args[@]}" "${watch[@]}"
    local json="$PERF_OUT/$tag.json"
    [[ -s "$json" ]] || { log "no report for $tag"; return 1; }
    passes "$json" "$rate" && ok=yes
    echo -e "$target\t$rate\t$run\t$ld\t$(report_cols "$json")\t$STEP_CPU\t$STEP_GEN_CPU\t$STEP_QDEPTH\t$STEP_INBOX\t$(store_cols "$json")\t$ok" >>"$SUMMARY"
    log "$(bench_line "$json") server_cpu=${STEP_CPU}% gen_cpu=${STEP_GEN_CPU}% pass=$ok"
    [[ "$ok" == yes ]]
}

sweep() { # TARGET PIDS PORTS URL-ARGS...
    local target="$1" pids="$2" ports="$3"; shift 3
    local fails=0 rate run
    for rate in "${RATES[@]}"; do
        local any_fail=0
        for ((run = 1; run <= REPEAT; run++)); do
            step "$target" "$rate" "$run" "$pids" "$ports" "$@" || any_fail=1
        done
        if (( any_fail )); then fails=$((fails + 1)); else fails=0; fi
        if (( fails >= FAIL_STOP )); then log "$target: $FAIL_STOP failing steps in a row; stopping"; break; fi
    done
    return 0
}

# The broker alone: produce then consume BROKER_MSGS records of PAYLOAD bytes with kcat.
broker_alone() {
    command -v kcat >/dev/null || die "kcat not installed (apt-get install kcat)"
    local n="${BROKER_MSGS:-200000}" topic="perfbroker$(date +%s)" f t0 t1 t2 got run
    f="$(mktemp /tmp/perf-broker.XXXXXX)"; PERF_TMPS+=("$f")
    awk -v n="$n" -v p="$PAYLOAD" 'BEGIN{s=sprintf("%*s", p, ""); gsub(/ /, "x", s); for(i=0;i<n;i++) print s}' >"$f"
    for ((run = 1; run <= REPEAT; run++)); do
        local tp="$topic-$run" ld; ld="$(load_now)"
        # auto-create the topic (broker default partitions) with one record first (counted by the consumer)
        echo warm | kcat -P -b 127.0.0.1:9092 -t "$tp" -X topic.request.required.acks=all 2>>"$PERF_OUT/broker.log" || true
        t0="$(date +%s.%N)"
        kcat -P -b 127.0.0.1:9092 -t "$tp" -X linger.ms=1 -X topic.request.required.acks=all \
            -X enable.idempotence=true -l "$f" 2>>"$PERF_OUT/broker.log"
        t1="$(date +%s.%N)"
        got="$(timeout 120 kcat -C -b 127.0.0.1:9092 -t "$tp" -o beginning -e -q 2>>"$PERF_OUT/broker.log" | wc -l)"
        t2="$(date +%s.%N)"
        local prod cons
        prod="$(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN{printf "%.0f", n/(b-a)}')"
        cons="$(awk -v n="$got" -v a="$t1" -v b="$t2" 'BEGIN{printf "%.0f", n/(b-a)}')"
        echo -e "broker\t$n\t$run\t$ld\tproduce_per_s=$prod\tconsume_per_s=$cons\tconsumed=$got" | tee -a "$PERF_OUT/broker.tsv" >&2
    done
}

for target in "${TARGETS[@]}"; do
    case "$target" in
        sync|nosync)
            port="$(free_port 18300)"
            if [[ "$target" == sync ]]; then pod_start "$port" --store-full-sync true
            else pod_start "$port" --store-full-sync false; fi
            sweep "$target" "$POD_PID" "$port" --url "ws://127.0.0.1:$port/ws"
            metrics "$port" >"$PERF_OUT/$target.final-metrics.txt" || true
            pod_stop "$POD_PID"
            ;;
        socketio)
            sio_start
            # shellcheck disable=SC2046
            sweep socketio "$(sio_pid $SIO_A) $(sio_pid $SIO_B)" "" --protocol socketio $(sio_urls)
            sio_stop
            ;;
        dist)
            # shellcheck disable=SC1091
            source "$PERF_ROOT/scripts/services.sh"
            services_up >&2
            tagd="$(date +%s)"
            dflags=(--kafka-brokers 127.0.0.1:9092 --redis-url redis://127.0.0.1:6379/
                --postgres-url postgres://postgres@127.0.0.1:5432/test
                --postgres-schema "perf_$tagd" --prefix "perf$tagd." --kafka-replication-factor 1
                --kafka-fetch-wait-ms "${FETCH_WAIT:-10}")
            pa="$(free_port 18700)"; pod_start "$pa" --pod-id "perfa$tagd" "${dflags[@]}"; pida="$POD_PID"
            pb="$(free_port 18710)"; pod_start "$pb" --pod-id "perfb$tagd" "${dflags[@]}"; pidb="$POD_PID"
            sweep dist "$pida $pidb" "$pa $pb" --url "ws://127.0.0.1:$pa/ws" --url "ws://127.0.0.1:$pb/ws"
            pod_stop "$pida"; pod_stop "$pidb"
            psql -q postgres://postgres@127.0.0.1:5432/test -c "DROP SCHEMA IF EXISTS perf_$tagd CASCADE" >&2 || true
            ;;
        broker)
            broker_alone
            ;;
        *) die "unknown target $target" ;;
    esac
done

log "highest passing rate per target:"
awk -F'\t' 'NR>1 && $NF=="yes" { if ($2+0 > best[$1]+0) best[$1]=$2 } NR>1 {seen[$1]=1}
    END { for (t in seen) printf "  %s: %s msg/s\n", t, (t in best ? best[t] : "none") }' "$SUMMARY" | tee "$PERF_OUT/best.txt" >&2
column -t -s $'\t' "$SUMMARY" >&2
