#!/bin/bash
# prof.sh POD BENCH RATE OUT
POD=$1; BENCH=$2; RATE=$3; OUT=$4
rm -rf /tmp/pdata; $POD --listen 127.0.0.1:18961 --shards 2 --data-dir /tmp/pdata 2>/tmp/pod.log &
P=$!; sleep 1.5
$BENCH --url ws://127.0.0.1:18961/ws --connections 1000 --connect-rate 2000 --rate $RATE --duration-secs 16 --payload-bytes 100 --drain-secs 3 --json /tmp/b.json >/dev/null 2>/tmp/b.log &
B=$!; sleep 7
perf record -F 999 -g -p $P -o $OUT.data -- sleep 5 2>/dev/null >/dev/null
wait $B; kill $P; wait $P 2>/dev/null
perf report -i $OUT.data --no-children --sort sym --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -40 > $OUT.txt
