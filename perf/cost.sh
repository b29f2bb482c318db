#!/usr/bin/env bash
# perf/cost.sh: CPU-µs per delivered message of every process, at a fixed rate where
# everything passes. One fresh deployment per target, 1:1 traffic, 100-byte payloads.
#
#   perf/cost.sh [RATE]            default 2000 msg/s
#
# TARGETS (default "sync dist"):
#   sync   one embedded pod (--store-full-sync true)
#   dist   two distributed pods on tansu, Redis and Postgres (own schema and prefix)
#   dist3  three distributed pods
# Per target: the generator runs STEP_SECS (30); from WINDOW_AT (10) s in, for WINDOW_SECS (10)
# s, utime+stime of each process group is read from /proc: the pods, every `postgres`
# process, every `tansu` process, `redis-server`, the generator. CPU-µs per message = CPU
# time over the window / (delivered msg/s x window); broker_io_bytes = bytes the broker's TCP
# connections on :9092 sent and received (`ss -ti` bytes_sent + bytes_received) per delivered
# message over the same window (connections opened meanwhile count from their start).
# Rows go to $PERF_OUT/cost.tsv.
# Env: POD (binary), POD_EXTRA, DIST_EXTRA (flags of distributed pods only), FETCH_WAIT (10,
# --kafka-fetch-wait-ms of distributed pods), KEEP_SCHEMA, CONNS (1000), TARGETS, STEP_SECS,
# WINDOW_AT, WINDOW_SECS, FRESH_BROKER (1: restart the tansu that scripts/services.sh started
# before each distributed target; its in-memory log keeps every earlier run's topics, and its
# CPU per record grew with them within one session, RESULTS §17; 0: keep it).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
perf_traps

RATE="${1:-2000}"
read -r -a TARGETS <<<"${TARGETS:-sync dist}"
STEP_SECS="${STEP_SECS:-30}"
WINDOW_AT="${WINDOW_AT:-10}"
WINDOW_SECS="${WINDOW_SECS:-10}"
CONNS="${CONNS:-1000}"

wait_ci
perf_out_dir cost
machine_info >"$PERF_OUT/machine.txt"
TSV="$PERF_OUT/cost.tsv"
echo -e "target\trate\tdelivered_per_sec\tp50_us\tp99_us\tmax_us\tmissing\tdup\tpods_us\tpostgres_us\tbroker_us\tredis_us\tgen_us\ttotal_us\tbroker_io_bytes" >"$TSV"

broker_bytes() { # -> bytes sent + received so far on the broker's established connections
    ss -tinH state established '( sport = :9092 )' |
        awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^bytes_(sent|received):/) { split($i, kv, ":"); s += kv[2] } }
             END { printf "%d\n", s }'
}

group_ticks() { # PIDS... -> summed utime+stime (processes that ended count 0)
    local t=0 p
    for p in "$@"; do t=$(( t + $(cpu_ticks "$p" 2>/dev/null || echo 0) )); done
    echo "$t"
}

measure() { # TARGET "POD PIDS" BENCH-ARGS...
    local target="$1" pods="$2"; shift 2
    local json="$PERF_OUT/$target.json" hz gen pg br rd
    hz="$(clk_tck)"
    "$BENCH" "$@" --connections "$CONNS" --connect-rate 2000 --rate "$RATE" \
        --duration-secs "$STEP_SECS" --payload-bytes 100 --drain-secs 5 --json "$json" \
        >/dev/null 2>"$PERF_OUT/$target.log" &
    gen=$!
    PERF_PIDS+=("$gen")
    sleep "$WINDOW_AT"
    # A service that is not running (tansu for TARGETS=sync) counts 0, not a failed run.
    pg="$(pgrep -x postgres | tr '\n' ' ' || true)"; br="$(pgrep -x tansu | tr '\n' ' ' || true)"
    rd="$(pgrep -x redis-server | tr '\n' ' ' || true)"
    # shellcheck disable=SC2086
    local a=("$(group_ticks $pods)" "$(group_ticks $pg)" "$(group_ticks $br)" "$(group_ticks $rd)" "$(group_ticks $gen)")
    # shellcheck disable=SC2086
    local io0; io0="$(broker_bytes)"
    sleep "$WINDOW_SECS"
    # shellcheck disable=SC2086
    local io1; io1="$(broker_bytes)"
    # shellcheck disable=SC2086
    local b=("$(group_ticks $pods)" "$(group_ticks $pg)" "$(group_ticks $br)" "$(group_ticks $rd)" "$(group_ticks $gen)")
    wait "$gen" || log "generator exited non-zero ($target)"
    local rate_d
    rate_d="$(jq -r '.delivered_per_sec' "$json")"
    local row=() i total=0 us
    for i in 0 1 2 3 4; do
        us="$(awk -v d=$(( b[i] - a[i] )) -v hz="$hz" -v r="$rate_d" -v w="$WINDOW_SECS" \
            'BEGIN{ if (r > 0) printf "%.0f", d / hz * 1e6 / (r * w); else print "NA" }')"
        row+=("$us"); [[ "$us" == NA ]] || total=$(( total + us ))
    done
    local iob
    iob="$(awk -v d=$(( io1 - io0 )) -v r="$rate_d" -v w="$WINDOW_SECS" 'BEGIN{ if (r > 0) printf "%.0f", d / (r * w); else print "NA" }')"
    echo -e "$target\t$RATE\t$rate_d\t$(jq -r '[.latency_us.p50, .latency_us.p99, .latency_us.max, .counts.missing, .counts.duplicates] | @tsv' "$json")\t${row[0]}\t${row[1]}\t${row[2]}\t${row[3]}\t${row[4]}\t$total\t$iob" >>"$TSV"
    log "$(tail -1 "$TSV")"
}

dist_pods() { # N -> starts N distributed pods; sets DPIDS, DURLS
    local n="$1" tag i port
    # shellcheck disable=SC1091
    source "$PERF_ROOT/scripts/services.sh"
    services_up >&2
    if [[ "${FRESH_BROKER:-1}" == 1 ]]; then
        restart_tansu >&2 || log "broker not restarted (not started by scripts/services.sh); figures may drift"
    fi
    tag="$(date +%s)"
    DSCHEMA="cost_$tag"
    local flags=(--kafka-brokers 127.0.0.1:9092 --redis-url redis://127.0.0.1:6379/
        --postgres-url postgres://postgres@127.0.0.1:5432/test --postgres-schema "$DSCHEMA"
        --prefix "cost$tag." --kafka-fetch-wait-ms "${FETCH_WAIT:-10}" ${DIST_EXTRA:-})
    DPIDS=""; DURLS=()
    for i in $(seq 1 "$n"); do
        port="$(free_port $(( 18800 + 10 * i )))"
        pod_start "$port" --pod-id "cost$i-$tag" "${flags[@]}"
        DPIDS+="$POD_PID "; DURLS+=(--url "ws://127.0.0.1:$port/ws")
    done
}

for target in "${TARGETS[@]}"; do
    case "$target" in
        sync)
            port="$(free_port 18300)"; pod_start "$port" --store-full-sync true
            measure sync "$POD_PID" --url "ws://127.0.0.1:$port/ws"
            pod_stop "$POD_PID"
            ;;
        dist|dist3)
            n=2; [[ "$target" == dist3 ]] && n=3
            dist_pods "$n"
            measure "$target" "$DPIDS" "${DURLS[@]}"
            for p in $DPIDS; do pod_stop "$p"; done
            [[ -n "${KEEP_SCHEMA:-}" ]] || psql -q postgres://postgres@127.0.0.1:5432/test -c "DROP SCHEMA IF EXISTS $DSCHEMA CASCADE" >&2 || true
            ;;
        *) die "unknown target $target" ;;
    esac
done
column -t -s $'\t' "$TSV" >&2
