#!/usr/bin/env bash
# Group fan-out under load: POD=binary RATE=… MESSAGES=…; one fresh pod, group mode only
# (1,000 members, 100 online). Prints binary, CPU-µs per group message, p50/p99/max ms, copies.
set -euo pipefail
hz=$(getconf CLK_TCK); port=18788; d=$(mktemp -d)
"$POD" --listen 127.0.0.1:$port --shards 2 --data-dir "$d" 2>/dev/null &
pid=$!; sleep 1.5
out=$(target/release/distrisocks-groupbench --url ws://127.0.0.1:$port/ws --mode group --members 1000 \
  --online 100 --messages "${MESSAGES:-300}" --rate "${RATE:-60}" --prefix "gl$RANDOM" --pod-pid $pid)
kill $pid; wait $pid 2>/dev/null || true; rm -rf "$d"
echo "$out" | jq -r --arg b "$(basename "$POD")" --argjson hz "$hz" \
  '[$b, .rate, (.pod_cpu_ticks*1e6/$hz/.messages|floor), (.p50_ms|floor), (.p99_ms|floor), (.max_ms|floor), .copies_received, .missing, .duplicated, (.send_secs*10|round/10)] | @tsv'
