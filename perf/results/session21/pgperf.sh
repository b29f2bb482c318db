#!/usr/bin/env bash
pids=$(pgrep -f "postgres: 15/main: postgres test 127.0.0.1" | paste -sd,)
perf record -F 999 -g -p $pids -o /tmp/d/pg.data -- sleep 6 >/dev/null 2>&1
