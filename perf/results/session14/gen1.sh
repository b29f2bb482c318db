#!/usr/bin/env bash
# usage: gen1.sh BENCH RATE THREADS -> prints gen_us_per_msg pod_us_per_msg cs_gen_per_msg p50 p99
B=$1; R=$2; T=$3
rm -rf /tmp/g1; mkdir -p /tmp/g1
/tmp/bin-new/distrisocks --listen 127.0.0.1:18962 --shards 2 --data-dir /tmp/g1/data 2>/tmp/g1/pod.log &
POD=$!
sleep 1.5
$B --url ws://127.0.0.1:18962/ws --connections 1000 --connect-rate 2000 --rate $R --duration-secs 20 --drain-secs 3 --threads $T --json /tmp/g1/b.json >/dev/null 2>&1 &
G=$!
sleep 7
snap() { awk '{print $14+$15}' /proc/$1/stat; }
cs() { cat /proc/$1/task/*/status | awk '/ctxt_switches/ {s+=$2} END {print s}'; }
g0=$(snap $G); p0=$(snap $POD); c0=$(cs $G)
sleep 10
g1=$(snap $G); p1=$(snap $POD); c1=$(cs $G)
wait $G; kill $POD; wait $POD 2>/dev/null
python3 - $g0 $g1 $p0 $p1 $c0 $c1 $R <<'PY'
import sys,json
g0,g1,p0,p1,c0,c1,R=map(float,sys.argv[1:])
d=json.load(open('/tmp/g1/b.json'))
r=d['delivered_per_sec']; n=r*10
print(f"gen_us={(g1-g0)/100*1e6/n:.0f}\tpod_us={(p1-p0)/100*1e6/n:.0f}\tgen_cs={(c1-c0)/n:.2f}\tp50={d['latency_us']['p50']}\tp99={d['latency_us']['p99']}\tmissing={d['counts']['missing']}")
PY
