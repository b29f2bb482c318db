#!/bin/bash
POD=$1; RATE=$2; shift 2
rm -rf /tmp/pdata; $POD --listen 127.0.0.1:18963 --shards 2 --data-dir /tmp/pdata "$@" 2>/tmp/pod.log &
P=$!; sleep 1.5
${BENCH:-target/release/distrisocks-bench} --url ws://127.0.0.1:18963/ws --connections 1000 --connect-rate 2000 --rate $RATE --duration-secs 14 --payload-bytes 100 --drain-secs 3 --json /tmp/b.json >/dev/null 2>/tmp/b.log &
B=$!; sleep 6
perf stat -e 'syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom,syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_write,syscalls:sys_enter_pwrite64,syscalls:sys_enter_fsync,syscalls:sys_enter_futex,syscalls:sys_enter_pread64' -p $P -- sleep 5 2>&1 | grep syscalls | awk -v r=$RATE '{printf "%s %.2f/msg\n", $2, $1/(5*r)}'
wait $B; kill $P; wait $P 2>/dev/null
