#!/usr/bin/env bash
# CPU of tansu, postgres, pods over 10 s with two distributed pods idle
set -euo pipefail
cd /work/main; source perf/lib.sh; perf_traps
POD=${POD:-/tmp/bins/pod-new}
tagd=$(date +%s)
dflags=(--kafka-brokers 127.0.0.1:9092 --redis-url redis://127.0.0.1:6379/ --postgres-url postgres://postgres@127.0.0.1:5432/test
  --postgres-schema "i_$tagd" --prefix "i$tagd." --kafka-replication-factor 1 --kafka-fetch-wait-ms ${FW:-10})
pod_start 18801 --pod-id "ia$tagd" "${dflags[@]}"; pa=$POD_PID
pod_start 18802 --pod-id "ib$tagd" "${dflags[@]}"; pb=$POD_PID
sleep 5
cpu() { local s=0; for p in "$@"; do s=$((s + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $s; }
T=$(pgrep -x tansu | head -1); PG=$(pgrep -x postgres)
a0=$(cpu $pa $pb); t0=$(cpu $T); g0=$(cpu $PG); sleep 10; a1=$(cpu $pa $pb); t1=$(cpu $T); g1=$(cpu $PG)
echo "idle 10s (W=${FW:-10}): pods $((a1-a0))% tansu $((t1-t0))% postgres $((g1-g0))% (of one core, x10 ticks)"
pod_stop $pa; pod_stop $pb
psql -q postgres://postgres@127.0.0.1:5432/test -c "DROP SCHEMA IF EXISTS i_$tagd CASCADE" >/dev/null 2>&1 || true
