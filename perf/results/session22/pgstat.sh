#!/usr/bin/env bash
# usage: pgstat.sh RATE [pod flags]: 2 dist pods, Postgres activity per delivered message over 10 s
set -euo pipefail
cd /work/main
source perf/lib.sh
perf_traps
RATE=$1; shift
POD=${POD:-/tmp/bins/pod-steer}; BENCH=${BENCH:-/tmp/bins/bench}
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
q="select xact_commit, xact_rollback, tup_returned, tup_fetched, tup_inserted, tup_updated, tup_deleted, blks_hit, blks_read from pg_stat_database where datname='test'"
q2="select relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del, seq_scan, idx_scan from pg_stat_user_tables where schemaname='m_$tagd' order by relname"
psql -Atq postgres://postgres@127.0.0.1:5432/test -F ' ' -c "$q" > /tmp/d/db0; psql -Atq postgres://postgres@127.0.0.1:5432/test -F ' ' -c "$q2" > /tmp/d/tb0
(/tmp/s22/pgsplit.sh > /tmp/d/pgsplit.txt &); sleep 10
psql -Atq postgres://postgres@127.0.0.1:5432/test -F ' ' -c "$q" > /tmp/d/db1; psql -Atq postgres://postgres@127.0.0.1:5432/test -F ' ' -c "$q2" > /tmp/d/tb1
echo "xact_commit xact_rollback tup_returned tup_fetched tup_inserted tup_updated tup_deleted blks_hit blks_read"
paste -d' ' /tmp/d/db0 /tmp/d/db1 | awk -v r=$RATE '{n=NF/2; for(i=1;i<=n;i++) printf "%.2f ", ($(i+n)-$i)/(10*r); print ""}'
echo "table ins upd hot_upd del seq_scan idx_scan (per msg)"
join /tmp/d/tb0 /tmp/d/tb1 | awk -v r=$RATE '{printf "%-24s %.2f %.2f %.2f %.2f %.3f %.2f\n", $1, ($8-$2)/(10*r), ($9-$3)/(10*r), ($10-$4)/(10*r), ($11-$5)/(10*r), ($12-$6)/(10*r), ($13-$7)/(10*r)}'
wait $bp || true
jq -c '{p50:.latency_us.p50,p99:.latency_us.p99,missing:.counts.missing,dup:.counts.dup,deliv:.delivered_per_sec}' /tmp/d/bench.json
pod_stop $pa; pod_stop $pb
psql -q postgres://postgres@127.0.0.1:5432/test -c "DROP SCHEMA IF EXISTS m_$tagd CASCADE" >/dev/null 2>&1 || true
