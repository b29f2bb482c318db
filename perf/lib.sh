# shellcheck shell=bash
# perf/lib.sh: helpers shared by the perf/ scenarios. Source it; do not run it.
#
# Every scenario starts what it needs (pod, Socket.IO peer), registers it with perf_cleanup
# (called from an EXIT/INT/TERM trap) and stops only what it started, by pid.
# Environment knobs common to all scenarios:
#   PERF_OUT      directory for JSON reports and samples (default perf/out/<scenario>-<time>)
#   PERF_NO_WAIT  set to 1 to skip waiting for /tmp/ci-run.log to contain "EXIT=" (shared-machine guard)
#   BENCH, POD    binaries (default target/release/distrisocks-bench, target/release/distrisocks)
#   PERF_FREEZE   1 (default): copy the pod and bench binaries to a temp dir first, so that a
#                 rebuild of target/ by someone else cannot change them mid-run; 0 to use them in place
#   POD_EXTRA     extra pod flags, word-split (e.g. "--read-buffer-bytes 1024")

PERF_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="${BENCH:-$PERF_ROOT/target/release/distrisocks-bench}"
POD="${POD:-$PERF_ROOT/target/release/distrisocks}"
SIO_DIR="$PERF_ROOT/perf/peers/socketio"
PERF_PIDS=()      # processes we started and must stop
PERF_TMPS=()      # temp dirs we created and must remove
PERF_SIO_STARTED=0

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
die() { echo "perf: error: $*" >&2; exit 1; }

perf_out_dir() { # NAME -> sets PERF_OUT (and freezes the binaries, see freeze_binaries)
    freeze_binaries
    PERF_OUT="${PERF_OUT:-$PERF_ROOT/perf/out/$1-$(date +%Y%m%d-%H%M%S)}"
    mkdir -p "$PERF_OUT"
    log "output in $PERF_OUT"
}

perf_cleanup() {
    local pid
    for pid in "${PERF_PIDS[@]:-}"; do
        [[ -n "$pid" ]] || continue
        # only our own children: a pid that was already reaped may have been reused
        if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qE 'distrisocks|perf/|overload\.sh'; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    PERF_PIDS=()
    if (( PERF_SIO_STARTED )); then
        "$SIO_DIR/start.sh" stop >/dev/null 2>&1 || true
        PERF_SIO_STARTED=0
    fi
    local d
    for d in "${PERF_TMPS[@]:-}"; do if [[ -n "$d" && -e "$d" ]]; then rm -rf "$d"; fi; done
    PERF_TMPS=()
}
perf_traps() { trap perf_cleanup EXIT; trap 'exit 130' INT TERM; }

# Waits until the shared CI run is over (a line starting with EXIT= in /tmp/ci-run.log).
wait_ci() {
    [[ "${PERF_NO_WAIT:-0}" == 1 ]] && return 0
    [[ -f /tmp/ci-run.log ]] || return 0
    until grep -q '^EXIT=' /tmp/ci-run.log; do
        log "CI still running (/tmp/ci-run.log has no EXIT= yet); waiting 30 s"
        sleep 30
    done
}

machine_info() { # one block of text describing the machine and the load right now
    echo "date: $(date -u +%FT%TZ)"
    echo "commit: $(git -C "$PERF_ROOT" rev-parse --short HEAD)"
    echo "nproc: $(nproc)"
    echo "kernel: $(uname -r)"
    echo "uptime: $(uptime)"
    free -g | sed 's/^/free -g: /'
    echo "ulimit -n: $(ulimit -n) (hard $(ulimit -Hn))"
    echo "pod binary: $POD ($(stat -c %y "$POD" | cut -d. -f1), sha256 $(sha256sum "$POD" | cut -c1-16))"
    echo "bench binary: $BENCH ($(stat -c %y "$BENCH" | cut -d. -f1), sha256 $(sha256sum "$BENCH" | cut -c1-16))"
}

# target/ is shared with other sessions that may rebuild it mid-run: measure private copies.
freeze_binaries() {
    [[ "${PERF_FREEZE:-1}" == 1 ]] || return 0
    local d; d="$(mktemp -d /tmp/perf-bin.XXXXXX)"
    PERF_TMPS+=("$d")
    cp -p "$POD" "$d/distrisocks"; cp -p "$BENCH" "$d/distrisocks-bench"
    POD="$d/distrisocks"; BENCH="$d/distrisocks-bench"
}

load_now() { cut -d" " -f1 /proc/loadavg; } # the 1-minute average: one field, so summary.tsv columns stay put for awk

# ---------------------------------------------------------------------------------------------
# /proc readers

rss_kib() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }
# utime+stime of PID (and its threads) in clock ticks
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
clk_tck() { getconf CLK_TCK; }
sockets_used() { awk '/^sockets:/{print $3}' /proc/net/sockstat; }
tcp_mem_pages() { awk '/^TCP:/{for(i=1;i<=NF;i++) if($i=="mem") print $(i+1)}' /proc/net/sockstat; }
slab_kib() { awk '/^Slab:/{print $2}' /proc/meminfo; }
# bytes per slab cache (active_objs*objsize) for the socket-related caches, "name=bytes" lines
slab_caches() {
    [[ -r /proc/slabinfo ]] || return 0
    awk 'NR>2 && $1 ~ /^(TCP|tcp_bind_bucket|request_sock_TCP|sock_inode_cache|dentry|filp|eventpoll_epi|eventpoll_pwq|skbuff_head_cache|kmalloc-.*|ep_head|pid|inode_cache|kernfs_node_cache|io_kiocb|anon_vma.*|vm_area_struct)$/ {printf "%s=%d\n", $1, $2*$4}' /proc/slabinfo
}
slab_total_bytes() {
    [[ -r /proc/slabinfo ]] || { echo 0; return; }
    awk 'NR>2 {s+=$2*$4} END{printf "%d\n", s}' /proc/slabinfo
}
# A snapshot of the kernel-side counters, as JSON.
kernel_snapshot() {
    printf '{"sockets_used":%s,"tcp_mem_pages":%s,"slab_kib":%s,"slabinfo_bytes":%s,"caches":{%s}}\n' \
        "$(sockets_used)" "$(tcp_mem_pages)" "$(slab_kib)" "$(slab_total_bytes)" \
        "$(slab_caches | awk -F= '{printf "%s\"%s\":%s", (NR>1?",":""), $1, $2}')"
}

# ---------------------------------------------------------------------------------------------
# The pod

free_port() { # a port nobody listens on
    local p
    for p in $(seq "${1:-18080}" 65000); do
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
}

# pod_start PORT [extra flags...] -> sets POD_PID, POD_DIR, POD_PORT
pod_start() {
    local port="$1"; shift
    POD_DIR="$(mktemp -d /tmp/perf-pod.XXXXXX)"
    PERF_TMPS+=("$POD_DIR")
    POD_PORT="$port"
    DISTRISOCKS_LOG="${DISTRISOCKS_LOG:-warn}" "$POD" --listen "127.0.0.1:$port" --data-dir "$POD_DIR" "$@" ${POD_EXTRA:-} \
        >"$POD_DIR/pod.log" 2>&1 &
    POD_PID=$!
    PERF_PIDS+=("$POD_PID")
    local deadline=$((SECONDS + 30))
    until curl -fsS -m 1 -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null; do
        kill -0 "$POD_PID" 2>/dev/null || { tail -20 "$POD_DIR/pod.log" >&2; die "pod on $port exited"; }
        (( SECONDS < deadline )) || die "pod on $port not healthy in 30 s"
        sleep 0.2
    done
    log "pod pid $POD_PID on 127.0.0.1:$port ($*)"
}

pod_stop() { # PID
    local pid="$1"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

metrics() { curl -fsS -m 5 "http://127.0.0.1:$1/metrics"; }
# sum of one metric over its labels
metric_sum() { metrics "$1" | awk -v n="distrisocks_$2" '$1==n || index($1, n"{")==1 {s+=$2} END{printf "%d\n", s}'; }

# ---------------------------------------------------------------------------------------------
# The Socket.IO peer (two node processes behind Redis, perf/peers/socketio)

SIO_A=3001
SIO_B=3002
sio_start() {
    "$SIO_DIR/start.sh" start "$SIO_A" "$SIO_B" >&2
    PERF_SIO_STARTED=1
}
sio_stop() { "$SIO_DIR/start.sh" stop >&2 || true; PERF_SIO_STARTED=0; }
sio_stats() { curl -fsS -m 5 "http://127.0.0.1:$1/stats"; }
sio_gc() { curl -fsS -m 10 "http://127.0.0.1:$1/gc"; }
sio_pid() { cat "$SIO_DIR/run/server-$1.pid"; }
sio_urls() { echo "--url ws://127.0.0.1:$SIO_A/socket.io/ --url ws://127.0.0.1:$SIO_B/socket.io/"; }

# ---------------------------------------------------------------------------------------------
# Generator reports

# jget FILE JQ-EXPR
jget() { jq -r "$2" "$1"; }

# One line summary of a bench JSON report.
bench_line() {
    jq -r '[
        "offered=\(.offered_per_sec)", "delivered=\(.delivered_per_sec)",
        "sent=\(.counts.sent)", "accepted=\(.counts.accepted)", "refused=\(.counts.refused)",
        "unanswered=\(.counts.unanswered)", "missing=\(.counts.missing)", "dup=\(.counts.duplicates)",
        "p50=\(.latency_us.p50)us", "p99=\(.latency_us.p99)us", "p999=\(.latency_us.p999)us",
        "max=\(.latency_us.max)us", "errors=\(.counts.error_frames|tojson)",
        "connect_ok=\(.counts.connect_ok)", "connect_failed=\(.counts.connect_failed)"
    ] | join(" ")' "$1"
}

# median of numbers on stdin
median() { sort -n | awk '{a[NR]=$1} END{ if(NR==0){print "NA"} else if(NR%2){print a[(NR+1)/2]} else {print (a[NR/2]+a[NR/2+1])/2} }'; }
range() { sort -n | awk 'NR==1{min=$1} {max=$1} END{ if(NR) printf "%s..%s\n", min, max; else print "NA"}'; }

# ---------------------------------------------------------------------------------------------
# One traffic step with evidence gathered mid-run.
#
# run_step TAG "PID..." "METRICS_PORT..." WINDOW_DELAY -- BENCH-ARGS...
#   Runs the generator (bench args + --json $PERF_OUT/TAG.json) in the background; WINDOW_DELAY
#   seconds after its start samples, over a MID_SECS (5) window: utime+stime of the PIDs (-> CPU %
#   of one core, summed), `top -b -n1`, each pod's /metrics (queue depths), and
#   `perf stat -e task-clock,context-switches,cpu-migrations,page-faults` of the first PID if perf
#   works. Sets STEP_CPU (pct, summed over PIDS), STEP_GEN_CPU, STEP_QDEPTH, STEP_INBOX.
MID_SECS="${MID_SECS:-5}"
run_step() {
    local tag="$1" pids="$2" ports="$3" delay="$4"; shift 5
    local mid="$PERF_OUT/$tag.mid.txt" hz c0=0 c1=0 g0 g1 p gen
    hz="$(clk_tck)"
    "$BENCH" "$@" --json "$PERF_OUT/$tag.json" >/dev/null 2>"$PERF_OUT/$tag.log" &
    gen=$!
    PERF_PIDS+=("$gen")
    sleep "$delay"
    STEP_CPU=NA; STEP_GEN_CPU=NA; STEP_QDEPTH=NA; STEP_INBOX=NA
    if kill -0 "$gen" 2>/dev/null; then
        for p in $pids; do c0=$(( c0 + $(cpu_ticks "$p") )); done
        g0="$(cpu_ticks "$gen")"
        {
            echo "== load $(load_now) at $(date +%T)"
            if [[ -n "${PERF_STAT_OK:-}" ]]; then
                perf stat -e task-clock,context-switches,cpu-migrations,page-faults -p "${pids%% *}" -- sleep "$MID_SECS" 2>&1 &
            fi
            local pstat=$!
            sleep 1
            echo "== top -b -n1"; top -b -n1 -w 200 | head -20
            for p in $pids; do echo "== threads of $p (top -H)"; top -b -n1 -H -w 200 -p "$p" | sed -n '7,16p'; done
            for p in $ports; do
                echo "== metrics :$p"; metrics "$p" | grep -E '^distrisocks_(store_queue_depth|inbox_depth|store_commit|store_batches|connections)' || true
            done
            [[ -n "${PERF_STAT_OK:-}" ]] && wait "$pstat" || sleep $(( MID_SECS - 1 ))
        } >"$mid" 2>&1
        for p in $pids; do c1=$(( c1 + $(cpu_ticks "$p") )); done
        g1="$(cpu_ticks "$gen" 2>/dev/null || echo "$g0")"
        STEP_CPU="$(awk -v a="$c0" -v b="$c1" -v hz="$hz" -v s="$MID_SECS" 'BEGIN{printf "%.0f", (b-a)/hz/s*100}')"
        STEP_GEN_CPU="$(awk -v a="$g0" -v b="$g1" -v hz="$hz" -v s="$MID_SECS" 'BEGIN{printf "%.0f", (b-a)/hz/s*100}')"
        STEP_QDEPTH="$(awk '/^distrisocks_store_queue_depth /{print $2}' "$mid" | paste -sd+ - | sed 's/^$/NA/')"
        STEP_INBOX="$(awk '/^distrisocks_inbox_depth/{s+=$2} END{print s+0}' "$mid")"
    fi
    wait "$gen" || log "generator exited non-zero ($tag)"
}

perf_stat_probe() {
    if perf stat -e task-clock true >/dev/null 2>&1; then PERF_STAT_OK=1; else PERF_STAT_OK=; fi
}

# TSV row of a bench report: offered delivered sent accepted refused unanswered missing dup p50 p99 p999 max errors
report_cols() {
    jq -r '[.offered_per_sec, .delivered_per_sec, .counts.sent, .counts.accepted, .counts.refused,
            .counts.unanswered, .counts.missing, .counts.duplicates, .latency_us.p50, .latency_us.p99,
            .latency_us.p999, .latency_us.max, (.counts.error_frames|tojson),
            (.counts.connect_failed), (.counts.close_codes|tojson), (.counts.dropped_backlog)] | @tsv' "$1"
}
report_header="offered\tdelivered\tsent\taccepted\trefused\tunanswered\tmissing\tdup\tp50_us\tp99_us\tp999_us\tmax_us\terror_frames\tconnect_failed\tclose_codes\tdropped_backlog"

# store commit figures from a report's metrics delta: "avg_commit_us avg_batch_cmds"
store_cols() {
    jq -r '[.metrics_delta[]? ] | if length == 0 then "NA\tNA" else .[0] as $m |
        (($m["distrisocks_store_batches_total"] // 0)) as $b |
        if $b == 0 then "NA\tNA" else
        "\((($m["distrisocks_store_commit_micros_total"] // 0) / $b) | floor)\t\((($m["distrisocks_store_commands_total"] // 0) / $b) | floor)" end end' "$1"
}
