#!/usr/bin/env bash
# usage: distthreads.sh RATE [pod flags]: 2 dist pods; per-thread CPU (by thread name, both pods
# summed) and per-process CPU of postgres/tansu/redis/bench, per delivered message over 10 s.
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
  --postgres-schema "m_$tagd" --prefix "m$tagd." --kafka-replication-factor 1 --kafka-fetch-wait-ms ${FW:-10})
pod_start 18801 --pod-id "ma$tagd" "${dflags[@]}" "$@"; pa=$POD_PID
pod_start 18802 --pod-id "mb$tagd" "${dflags[@]}" "$@"; pb=$POD_PID
"$BENCH" --url ws://127.0.0.1:18801/ws --url ws://127.0.0.1:18802/ws --connections 1000 --connect-rate 2000 \
  --rate $RATE --duration-secs 25 --payload-bytes 100 --drain-secs 5 --json /tmp/d/bench.json > /tmp/d/bench.out 2>&1 &
bp=$!
sleep 12
snap() { for P in $pa $pb; do for t in /proc/$P/task/*; do n=$(tr ' ' '_' < $t/comm); c=$(awk '{print $14+$15}' $t/stat); v=$(awk '/^voluntary_ctxt/{print $2}' $t/status); i=$(awk '/^nonvoluntary_ctxt/{print $2}' $t/status); echo "$P-$(basename $t) $n $c $v $i"; done; done
  for name in postgres tansu redis-server; do t=0; for p in $(pgrep -x $name); do t=$((t+$(awk '{print $14+$15}' /proc/$p/stat))); done; echo "proc-$name $name $t 0 0"; done
  b=$(pgrep -n -f "bench --url ws:" || true); echo "proc-bench bench $(awk '{print $14+$15}' /proc/$b/stat) 0 0"; }
snap > /tmp/d/s0; sleep 10; snap > /tmp/d/s1
join <(sort /tmp/d/s0) <(sort /tmp/d/s1) | awk -v r=$RATE '{dc[$2]+=$7-$3; dv[$2]+=$8-$4; di[$2]+=$9-$5} END {for (n in dc) if (dc[n]>0||dv[n]>100) printf "%-18s cpu_us/msg %7.1f  vcs/msg %5.2f ivcs/msg %5.2f\n", n, dc[n]*1e4/(10*r), dv[n]/(10*r), di[n]/(10*r)}' | sort -k3 -nr
wait $bp || true
jq -c '{p50:.latency_us.p50,p99:.latency_us.p99,missing:.counts.missing,dup:.counts.duplicates,deliv:.delivered_per_sec}' /tmp/d/bench.json
pod_stop $pa; pod_stop $pb
psql -q postgres://postgres@127.0.0.1:5432/test -c "DROP SCHEMA IF EXISTS m_$tagd CASCADE" >/dev/null 2>&1 || true
