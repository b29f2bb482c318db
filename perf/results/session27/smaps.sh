#!/usr/bin/env bash
# smaps.sh POD: 19k idle connections (2 generator processes), then the pod's anonymous mappings by RSS
POD=$1; BENCH=/tmp/bins/base/distrisocks-bench
rm -rf /tmp/pdm; $POD --listen 127.0.0.1:18961 --shards 2 --data-dir /tmp/pdm --store-full-sync false 2>/dev/null & PP=$!; sleep 1.5
r0=$(awk '/VmRSS/{print $2}' /proc/$PP/status)
awk '/^[0-9a-f]+-[0-9a-f]+ /{m=$1; p=($6==""?"anon":$6)} /^Rss:/{print m, p, $2}' /proc/$PP/smaps > /tmp/sm0
$BENCH --url ws://127.0.0.1:18961/ws --connections 19000 --connect-rate 2000 --procs 2 --rate 0 --duration-secs 0 --drain-secs 0 --idle-secs 25 --connect-timeout-secs 10 --user-prefix idle-x- --json /tmp/smb.json >/dev/null 2>&1 & B=$!
sleep 17
r1=$(awk '/VmRSS/{print $2}' /proc/$PP/status)
awk '/^[0-9a-f]+-[0-9a-f]+ /{m=$1; p=($6==""?"anon":$6)} /^Rss:/{print m, p, $2}' /proc/$PP/smaps > /tmp/sm1
echo "rss $r0 -> $r1 kB: $(( (r1-r0)*1024/19000 )) B/conn"
# growth per mapping (by start address), biggest first
awk 'NR==FNR{a[$1]=$3; next} {d=$3-a[$1]; if (d>200) print d" kB", $1, $2}' /tmp/sm0 /tmp/sm1 | sort -rn | head -12
wait $B; kill $PP; wait $PP 2>/dev/null
