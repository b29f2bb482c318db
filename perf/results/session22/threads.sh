#!/bin/bash
# per-thread CPU ticks and context switches of an embedded pod over 10 s at RATE
POD=$1; RATE=$2; shift 2
rm -rf /tmp/pdata; $POD --listen 127.0.0.1:18963 --shards 2 --data-dir /tmp/pdata "$@" 2>/tmp/pod.log &
P=$!; sleep 1.5
/tmp/bins/bench --url ws://127.0.0.1:18963/ws --connections 1000 --connect-rate 2000 --rate $RATE --duration-secs 20 --threads 1 --payload-bytes 100 --drain-secs 3 --json /tmp/b.json >/dev/null 2>/tmp/b.log &
B=$!; sleep 6
snap() { for t in /proc/$P/task/*; do n=$(cat $t/comm); c=$(awk '{print $14+$15}' $t/stat); v=$(awk '/^voluntary_ctxt/{print $2}' $t/status); i=$(awk '/^nonvoluntary_ctxt/{print $2}' $t/status); echo "$(basename $t) $n $c $v $i"; done; }
snap > /tmp/s0; sleep 10; snap > /tmp/s1
curl -s 127.0.0.1:18963/metrics | grep '^distrisocks_connections{'
join <(sort /tmp/s0) <(sort /tmp/s1) | awk -v r=$RATE '{dc=$7-$3; dv=$8-$4; di=$9-$5; if (dc>0||dv>100) printf "%-16s cpu_us/msg %6.1f  vcs/msg %5.2f ivcs/msg %5.2f\n", $2, dc*1e4/(10*r), dv/(10*r), di/(10*r)}'
wait $B; kill $P; wait $P 2>/dev/null
