#!/usr/bin/env bash
# perf/pacing.sh: CPU-µs and context switches per delivered message of one embedded pod at fixed
# rates, for each --store-commit-window-us. One fresh pod per (rate, window), 1000 connections,
# 1:1 traffic, 100-byte payloads, 22 s; from 8 s in, for 10 s, the pod's utime+stime
# (/proc/PID/stat) and voluntary+involuntary context switches of all its threads
# (/proc/PID/task/*/status) are read. Latency from the generator's report.
#
#   perf/pacing.sh "RATES" "WINDOWS"      e.g. perf/pacing.sh "1000 4000" "0 1000 2000"
#
# Env: POD, BENCH (binaries; default target/release/…, copied first). V2_DEVICE=1 keeps one
# idle protocol v2 connection (`?since=0`) open during each run, so the embedded pod sends
# carbons (it skips them while no v2 connection is open; the generator is a v1 client).
# POD_ARGS: more flags for every pod (word-split), e.g. POD_ARGS="--store-sent-hold-ms 0".
# Rows on stdout (TSV).
set -euo pipefail
cd "$(dirname "$0")/.."
read -r -a RATES <<<"${1:-1000 4000}"
read -r -a WINDOWS <<<"${2:-0 1000 2000}"
work=$(mktemp -d); trap 'kill "${POD_PID:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
cp "${POD:-target/release/distrisocks}" "$work/pod"
cp "${BENCH:-target/release/distrisocks-bench}" "$work/bench"
hz=$(getconf CLK_TCK)
snap() { # PID -> "cpu_ticks context_switches"
    local cpu cs
    cpu=$(awk '{print $14 + $15}' "/proc/$1/stat")
    cs=$(cat /proc/"$1"/task/*/status | awk '/ctxt_switches/ { s += $2 } END { print s }')
    echo "$cpu $cs"
}
echo -e "rate\twindow_us\tdelivered_per_sec\tcpu_us_per_msg\tctx_switches_per_msg\tp50_us\tp99_us\tmissing"
for rate in "${RATES[@]}"; do
    for w in "${WINDOWS[@]}"; do
        rm -rf "$work/data"
        "$work/pod" --listen 127.0.0.1:18960 --shards 2 --data-dir "$work/data" \
            --store-commit-window-us "$w" ${POD_ARGS:-} 2>"$work/pod.log" &
        POD_PID=$!
        sleep 1.5
        if [ "${V2_DEVICE:-0}" = 1 ]; then
            exec 3<>/dev/tcp/127.0.0.1/18960
            printf 'GET /ws?user_id=v2-probe&since=0 HTTP/1.1\r\nHost: pacing\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n' >&3
        fi
        "$work/bench" --url ws://127.0.0.1:18960/ws --connections 1000 --rate "$rate" \
            --duration-secs 22 --drain-secs 5 --threads 1 --json "$work/bench.json" >/dev/null 2>&1 &
        bench=$!
        sleep 8; read -r c0 s0 <<<"$(snap "$POD_PID")"; t0=$(date +%s.%N)
        sleep 10; read -r c1 s1 <<<"$(snap "$POD_PID")"; t1=$(date +%s.%N)
        wait "$bench"
        [ "${V2_DEVICE:-0}" = 1 ] && exec 3>&-
        kill "$POD_PID"; wait "$POD_PID" 2>/dev/null || true
        python3 - "$work/bench.json" "$c0" "$c1" "$s0" "$s1" "$t0" "$t1" "$hz" "$rate" "$w" <<'PY'
import json, sys
f, c0, c1, s0, s1, t0, t1, hz, rate, w = sys.argv[1:]
d = json.load(open(f))
msgs = d["delivered_per_sec"] * (float(t1) - float(t0))
cpu_us = (int(c1) - int(c0)) / int(hz) * 1e6
l = d["latency_us"]
print(f"{rate}\t{w}\t{d['delivered_per_sec']:.0f}\t{cpu_us / msgs:.0f}\t"
      f"{(int(s1) - int(s0)) / msgs:.2f}\t{l['p50']}\t{l['p99']}\t{d['counts']['missing']}")
PY
    done
done
