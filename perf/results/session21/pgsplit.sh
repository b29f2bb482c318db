#!/usr/bin/env bash
# per-postgres-process CPU over 8 s, by process title
snap() { for p in $(pgrep -x postgres); do t=$(tr '\0' ' ' < /proc/$p/cmdline 2>/dev/null | cut -c1-60); c=$(awk '{print $14+$15}' /proc/$p/stat 2>/dev/null); echo "$p|$t|$c"; done; }
snap > /tmp/d/p0; sleep 8; snap > /tmp/d/p1
join -t'|' <(sort /tmp/d/p0) <(sort /tmp/d/p1) | awk -F'|' '{d=$5-$3; if (d>0) printf "%5.1f%%  %s\n", d/8, $2}' | sort -nr | head -20
