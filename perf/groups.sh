#!/usr/bin/env bash
# perf/groups.sh: what a group message's fan-out costs (issue 10 item 3), against the same
# copies sent as direct messages, in one run. One fresh embedded pod (2 shards) per round;
# rounds alternate `direct` and `group`. A group of MEMBERS users, ONLINE of them connected as
# v2 devices that ack every message; MESSAGES group messages at RATE per second, or as many
# rounds of one direct message per online member. The pod's CPU (utime + stime from
# /proc/PID/stat) is read over the sending phase by the scenario binary itself.
#
#   perf/groups.sh [ROUNDS]          env: MEMBERS=1000 ONLINE=100 MESSAGES=200 RATE=20
#
# Env: POD, GROUPBENCH (binaries; default target/release/…, copied first), POD_ARGS.
# Rows on stdout (TSV): CPU-µs per delivered copy in both modes, per group message, and the
# copies' latency from send to arrival.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
work=$(mktemp -d); trap 'kill "${POD_PID:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
cp "${POD:-target/release/distrisocks}" "$work/pod"
cp "${GROUPBENCH:-target/release/distrisocks-groupbench}" "$work/groupbench"
hz=$(getconf CLK_TCK)
MEMBERS=${MEMBERS:-1000} ONLINE=${ONLINE:-100} MESSAGES=${MESSAGES:-200} RATE=${RATE:-20}
echo -e "round\tmode\tmembers\tonline\tmessages\tcopies\tmissing\tduplicated\tcpu_us_per_copy\tcpu_us_per_message\tp50_ms\tp99_ms\tmax_ms"
for r in $(seq 1 "$rounds"); do
    for mode in direct group; do
        rm -rf "$work/data"
        port=$((18970 + r))
        "$work/pod" --listen "127.0.0.1:$port" --shards 2 --data-dir "$work/data" ${POD_ARGS:-} \
            2>"$work/pod.log" &
        POD_PID=$!
        for _ in $(seq 50); do curl -fsS -m 1 "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
        out=$("$work/groupbench" --url "ws://127.0.0.1:$port/ws" --mode "$mode" --members "$MEMBERS" \
            --online "$ONLINE" --messages "$MESSAGES" --rate "$RATE" --prefix "r$r-$mode" \
            --pod-pid "$POD_PID")
        kill "$POD_PID"; wait "$POD_PID" 2>/dev/null || true
        echo "$out" | jq -r --arg r "$r" --argjson hz "$hz" '
            (.pod_cpu_ticks * 1e6 / $hz) as $us
            | [$r, .mode, .members, .online, .messages, .copies_received, .missing, .duplicated,
               ($us / ([.copies_received, 1] | max) | floor),
               ($us / .messages | floor),
               (.p50_ms * 100 | round / 100), (.p99_ms * 100 | round / 100),
               (.max_ms * 100 | round / 100)] | @tsv'
    done
done
