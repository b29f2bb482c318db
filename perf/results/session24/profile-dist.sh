#!/usr/bin/env bash
# usage: profile-dist.sh RATE: 2 dist pods (POD binary) under the generator; perf record -g of
# the first pod for 8 s mid-run; report per thread (comm) and symbol to /tmp/d/perf-RATE.txt.
set -euo pipefail
cd /work/main
source perf/lib.sh
perf_traps
RATE=$1; shift
POD=${POD:-/tmp/bins/new-pod}; BENCH=${BENCH:-/tmp/bins/bench}
mkdir -p /tmp/d
tagd=$(date +%s)
dflags=(--kafka-brokers 127.0.0.1:9092 --redis-url redis://127.0.0.1:6379/
  --postgres-url postgres://postgres@127.0.0.1:5432/test
  --postgres-schema "p_$tagd" --prefix "p$tagd." --kafka-replication-factor 1 --kafka-fetch-wait-ms 10)
pod_start 18801 --pod-id "pa$tagd" "${dflags[@]}" "$@"; pa=$POD_PID
pod_start 18802 --pod-id "pb$tagd" "${dflags[@]}" "$@"; pb=$POD_PID
"$BENCH" --url ws://127.0.0.1:18801/ws --url ws://127.0.0.1:18802/ws --connections 1000 --connect-rate 2000 \
  --rate $RATE --duration-secs 25 --payload-bytes 100 --drain-secs 5 --json /tmp/d/bench.json > /tmp/d/bench.out 2>&1 &
bp=$!
sleep 10
perf record -F 999 -g -p $pa -o /tmp/d/perf.data -- sleep 8 >/dev/null 2>&1
wait $bp || true
pod_stop $pa; pod_stop $pb
perf report -i /tmp/d/perf.data --no-children --sort comm,sym --stdio 2>/dev/null | grep -v "^$" | grep -E "^ +[0-9]" | head -80 > /tmp/d/perf-$RATE.txt
psql -q postgres://postgres@127.0.0.1:5432/test -c "DROP SCHEMA IF EXISTS p_$tagd CASCADE" >/dev/null 2>&1 || true
