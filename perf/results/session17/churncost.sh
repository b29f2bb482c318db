#!/usr/bin/env bash
# CPU-µs of the pod per connection opened and closed (10,000 connections at 5,000/s, then
# until the pod holds none): POD=binary.
set -euo pipefail
hz=$(getconf CLK_TCK); port=18777; d=$(mktemp -d)
"$POD" --listen 127.0.0.1:$port --shards 2 --data-dir "$d" --store-full-sync false 2>/dev/null &
pid=$!; sleep 1.5
c0=$(awk '{print $14+$15}' /proc/$pid/stat)
target/release/distrisocks-bench --url ws://127.0.0.1:$port/ws --connections 10000 --connect-rate 5000 \
  --procs 1 --rate 0 --duration-secs 0 --drain-secs 0 --connect-timeout-secs 10 --user-prefix "c$RANDOM-" >/dev/null 2>&1 || true
for _ in $(seq 60); do n=$(curl -fsS http://127.0.0.1:$port/metrics | awk '/^distrisocks_connections\{/{s+=$2} END{print s+0}'); [ "$n" = 0 ] && break; sleep 0.5; done
sleep 0.5
c1=$(awk '{print $14+$15}' /proc/$pid/stat)
seen=$(sqlite3 "$d/distrisocks.db" "SELECT count(*) FROM presence" 2>/dev/null || echo na)
kill $pid; wait $pid 2>/dev/null || true; rm -rf "$d"
echo -e "$(basename $POD)\t$(( (c1-c0) * 1000000 / hz / 10000 ))\t$seen"
