#!/usr/bin/env bash
# thr.sh POD RATE [pod flags...]: one fresh embedded pod (2 shards), 1000 connections of 1:1
# traffic at RATE msg/s for 22 s (BENCH: the generator binary). From 8 s in, for 10 s, each of
# the pod's threads is read from /proc: CPU (utime+stime), context switches, and bytes written
# (wchar: write/pwrite syscalls; the shards' sends go through io_uring and are not counted).
# Prints the process's wchar per message, then per thread "name:CPU-µs/cs/bytes per message",
# the totals, and the generator's delivered msg/s, p50, p99 (µs) and missing count.
set -euo pipefail
POD=$1; RATE=$2; shift 2
BENCH=${BENCH:-target/release/distrisocks-bench}
work=$(mktemp -d); trap 'kill "${PP:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
$POD --listen 127.0.0.1:18960 --shards 2 --data-dir "$work/data" "$@" 2>"$work/pod.log" & PP=$!
sleep 1.5
$BENCH --url ws://127.0.0.1:18960/ws --connections 1000 --rate "$RATE" --duration-secs 22 \
    --drain-secs 3 --threads 1 --json "$work/b.json" >/dev/null 2>&1 & B=$!
snap() {
    for t in /proc/$PP/task/*; do
        echo "$(cat "$t/comm") $(awk '{print $14+$15}' "$t/stat") \
$(awk '/ctxt/{s+=$2}END{print s}' "$t/status") $(awk '/^wchar/{print $2}' "$t/io")"
    done
}
sleep 8; snap >"$work/t0"; io0=$(awk '/^wchar/{print $2}' "/proc/$PP/io")
sleep 10; snap >"$work/t1"; io1=$(awk '/^wchar/{print $2}' "/proc/$PP/io")
echo "wchar per msg: $(( (io1 - io0) / (10 * RATE) )) B"
wait $B; kill $PP; wait $PP 2>/dev/null || true
d=$(python3 -c "import json;d=json.load(open('$work/b.json'));l=d['latency_us'];print(round(d['delivered_per_sec']), l['p50'], l['p99'], d['counts']['missing'])")
paste "$work/t0" "$work/t1" | awk -v r="$RATE" -v d="$d" '{
    c = $6 - $2; s = $7 - $3; w = ($8 - $4) / (10 * r)
    if (c > 0 || s > 100) { printf "%s:%d/%.2f/%dB ", substr($1, 1, 8), c * 1000 / r, s / (10 * r), w; tc += c; ts += s }
} END { printf "| total %d us/msg %.2f cs/msg | deliv p50 p99 miss: %s\n", tc * 1000 / r, ts / (10 * r), d }'
