#!/usr/bin/env bash
# usage: dist-run.sh RATE SECS [extra pod flags...]  -> per-thread CPU of pod A, perf profile
set -euo pipefail
cd /work/main
source perf/lib.sh
perf_traps
RATE=$1; SECS=$2; shift 2
POD=${POD:-/tmp/bins/pod-b29}; BENCH=${BENCH:-/tmp/bins/bench-b29}
tagd=$(date +%s)
dflags=(--kafka-brokers 127.0.0.1:9092 --redis-url redis://127.0.0.1:6379/
  --postgres-url postgres://postgres@127.0.0.1:5432/test
  --postgres-schema "m_$tagd" --prefix "m$tagd." --kafka-replication-factor 1 --kafka-fetch-wait-ms ${FW:-2})
pod_start 18801 --pod-id "ma$tagd" "${dflags[@]}" "$@"; pa=$POD_PID
pod_start 18802 --pod-id "mb$tagd" "${dflags[@]}" "$@"; pb=$POD_PID
"$BENCH" --url ws://127.0.0.1:18801/ws --url ws://127.0.0.1:18802/ws --connections 1000 --connect-rate 2000 \
  --rate $RATE --duration-secs $SECS --payload-bytes 100 --drain-secs 5 --json /tmp/d/bench.json > /tmp/d/bench.out 2>&1 &
bp=$!
sleep 12
[[ -n "${PGSPLIT:-}" ]] && /tmp/pgsplit.sh > /tmp/d/pgsplit.txt &
[[ -n "${PGPERF:-}" ]] && /tmp/pgperf.sh &
snap() { for t in /proc/$1/task/*; do echo "$(cat $t/comm) $(awk '{print $14+$15}' $t/stat)"; done; }
csw() { for t in /proc/$1/task/*; do echo "$(cat $t/comm)-$(basename $t) $(awk '/ctxt_switches/{s+=$2} END{print s}' $t/status)"; done | sort; }
csw $pa > /tmp/d/c0; snap $pa > /tmp/d/t0; sa=$(date +%s.%N)
if [[ -n "${PROF:-}" ]]; then perf record -F 999 -g -p $pa -o /tmp/d/perf.data -- sleep 8 >/dev/null 2>&1; else sleep 8; fi
snap $pa > /tmp/d/t1; sb=$(date +%s.%N); csw $pa > /tmp/d/c1
wait $bp || true
join <(sort /tmp/d/t0 | awk '{a[$1]+=$2} END{for(k in a) print k, a[k]}' | sort) <(sort /tmp/d/t1 | awk '{a[$1]+=$2} END{for(k in a) print k, a[k]}' | sort) | \
  awk -v dt=$(echo "$sb - $sa" | bc) -v r=$RATE '{d=($3-$2)/100; printf "%-20s %6.1f%%  %6.0f us/msg\n", $1, 100*d/dt, 1e6*d/dt/r}' | sort -k2 -nr
join /tmp/d/c0 /tmp/d/c1 | awk -v r=$RATE '{d=$3-$2; if (d>800) printf "csw %-28s %8d  %.2f/msg\n", $1, d, d/8/r}'
jq -c '{p50:.latency_us.p50,p99:.latency_us.p99,missing:.counts.missing,dup:.counts.dup,deliv:.delivered_per_sec}' /tmp/d/bench.json
curl -s http://127.0.0.1:18801/metrics > /tmp/d/ma.txt; curl -s http://127.0.0.1:18802/metrics > /tmp/d/mb.txt
pod_stop $pa; pod_stop $pb
psql -q postgres://postgres@127.0.0.1:5432/test -c "DROP SCHEMA IF EXISTS m_$tagd CASCADE" >/dev/null 2>&1 || true
