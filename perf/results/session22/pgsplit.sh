#!/usr/bin/env bash
# per-postgres-backend CPU over 8 s, labelled by the backend's last query (pg_stat_activity)
snap() { for p in $(pgrep -x postgres); do c=$(awk '{print $14+$15}' /proc/$p/stat 2>/dev/null); echo "$p $c"; done | sort; }
snap > /tmp/d/p0; sleep 8; snap > /tmp/d/p1
psql -Atq postgres://postgres@127.0.0.1:5432/test -F '|' -c "select pid, coalesce(backend_type,''), left(regexp_replace(query, '\s+', ' ', 'g'), 50) from pg_stat_activity" | sort -t'|' -k1,1 > /tmp/d/pa
join <(sort /tmp/d/p0) <(sort /tmp/d/p1) | awk '{d=$3-$2; if (d>0) print $1, d}' | sort -k1,1 | join -t' ' - <(sed 's/|/ /' /tmp/d/pa | sort -k1,1) | awk '{printf "%5.1f%%  %s\n", $2/8, substr($0, index($0,$3))}' | sort -nr | head -25
