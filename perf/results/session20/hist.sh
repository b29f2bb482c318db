#!/bin/bash
POD=$1; RATE=$2; shift 2
rm -rf /tmp/pdata; $POD --listen 127.0.0.1:18964 --shards 2 --data-dir /tmp/pdata "$@" 2>/tmp/pod.log &
P=$!; sleep 1.5
${BENCH:-target/release/distrisocks-bench} --url ws://127.0.0.1:18964/ws --connections 1000 --connect-rate 2000 --rate $RATE --duration-secs ${DUR:-20} --payload-bytes 100 --drain-secs 3 --json /tmp/b.json >/dev/null 2>/tmp/b.log
curl -s 127.0.0.1:18964/metrics | grep -E 'store_commit_seconds_(bucket|count|sum)' 
kill $P; wait $P 2>/dev/null
grep latency /tmp/b.log
