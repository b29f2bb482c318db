#!/usr/bin/env bash
# Start / stop the Socket.IO comparison peer: two Node processes behind one Redis.
#
#   ./start.sh [start] [PORT_A [PORT_B]]   start (defaults 3001 and 3002)
#   ./start.sh stop                        stop the processes started from here
#   ./start.sh status                      show pids and /stats of running ones
#
# Environment: REDIS_HOST (127.0.0.1), REDIS_PORT (6379), HOST (127.0.0.1),
# START_TIMEOUT seconds to wait for /healthz (20), RUN_DIR for pid and log files
# (<this dir>/run).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RUN_DIR="${RUN_DIR:-$HERE/run}"
REDIS_HOST="${REDIS_HOST:-127.0.0.1}"
REDIS_PORT="${REDIS_PORT:-6379}"
HOST="${HOST:-127.0.0.1}"
START_TIMEOUT="${START_TIMEOUT:-20}"

log() { echo "start.sh: $*" >&2; }
die() { echo "start.sh: error: $*" >&2; exit 1; }

usage() {
    sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

is_port() { [[ "$1" =~ ^[0-9]+$ ]] && (( $1 >= 1 && $1 <= 65535 )); }

http_ok() { curl -fsS -m 2 -o /dev/null "$1" 2>/dev/null; }

# The pid in $1 is alive and is one of our server.js processes (guards against pid reuse).
is_our_server() {
    local pid="$1"
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    [[ -r "/proc/$pid/cmdline" ]] || return 0
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'server\.js'
}

redis_pong() {
    [[ "$(timeout 2 redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]
}

ensure_redis() {
    command -v redis-cli >/dev/null 2>&1 \
        || die "redis-cli not found (install redis-tools, or run scripts/services.sh from the repo root)"
    if redis_pong; then
        return 0
    fi
    [[ "$REDIS_HOST" == 127.0.0.1 || "$REDIS_HOST" == localhost ]] \
        || die "Redis at $REDIS_HOST:$REDIS_PORT does not answer PING and is not local; start it yourself"
    command -v redis-server >/dev/null 2>&1 \
        || die "Redis is down and redis-server is not installed (apt-get install redis-server, or scripts/services.sh)"
    log "Redis not answering on $REDIS_HOST:$REDIS_PORT; starting redis-server"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no >/dev/null \
        || die "redis-server failed to start"
    local deadline=$((SECONDS + 10))
    until redis_pong; do
        (( SECONDS < deadline )) || die "Redis did not answer PONG on $REDIS_HOST:$REDIS_PORT within 10s"
        sleep 0.2
    done
    log "Redis up on $REDIS_HOST:$REDIS_PORT"
}

ensure_deps() {
    command -v node >/dev/null 2>&1 || die "node not found (Node.js 20 or newer is needed)"
    local major
    major="$(node -p 'process.versions.node.split(".")[0]')"
    (( major >= 20 )) || die "Node.js $(node -v) is too old; 20 or newer is needed"
    if [[ ! -d "$HERE/node_modules" ]]; then
        command -v npm >/dev/null 2>&1 || die "npm not found"
        log "node_modules missing; running npm ci"
        (cd "$HERE" && npm ci --no-audit --no-fund) >&2 || die "npm ci failed"
    fi
}

pid_file() { echo "$RUN_DIR/server-$1.pid"; }
log_file() { echo "$RUN_DIR/server-$1.log"; }

stop_pid_file() {
    local f="$1" pid port
    pid="$(cat "$f" 2>/dev/null || true)"
    port="$(basename "$f" .pid)"; port="${port#server-}"
    if is_our_server "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + 10))
        while kill -0 "$pid" 2>/dev/null; do
            if (( SECONDS >= deadline )); then
                log "pid $pid (port $port) did not exit within 10s; sending SIGKILL"
                kill -KILL "$pid" 2>/dev/null || true
                break
            fi
            sleep 0.1
        done
        log "stopped pid $pid (port $port)"
    else
        log "pid file $f is stale (pid '${pid}' not running); removing"
    fi
    rm -f "$f"
}

cmd_stop() {
    shopt -s nullglob
    local files=("$RUN_DIR"/server-*.pid)
    if (( ${#files[@]} == 0 )); then
        log "nothing to stop (no pid files in $RUN_DIR)"
        return 0
    fi
    local f
    for f in "${files[@]}"; do stop_pid_file "$f"; done
}

cmd_status() {
    shopt -s nullglob
    local f pid port any=0
    for f in "$RUN_DIR"/server-*.pid; do
        any=1
        pid="$(cat "$f")"; port="$(basename "$f" .pid)"; port="${port#server-}"
        if is_our_server "$pid"; then
            echo "port $port pid $pid: $(curl -fsS -m 2 "http://$HOST:$port/stats" 2>/dev/null || echo 'no answer on /stats')"
        else
            echo "port $port pid $pid: not running (stale pid file)"
        fi
    done
    (( any )) || echo "not running (no pid files in $RUN_DIR)"
}

cmd_start() {
    local ports=("${1:-3001}" "${2:-3002}")
    local p
    for p in "${ports[@]}"; do is_port "$p" || die "not a port number: '$p'"; done
    [[ "${ports[0]}" != "${ports[1]}" ]] || die "the two ports must differ"
    command -v curl >/dev/null 2>&1 || die "curl not found"

    ensure_deps
    ensure_redis
    mkdir -p "$RUN_DIR"
    cd "$HERE"

    for p in "${ports[@]}"; do
        local f; f="$(pid_file "$p")"
        if [[ -f "$f" ]]; then
            if is_our_server "$(cat "$f")"; then
                die "a server is already running on port $p (pid $(cat "$f")); run '$0 stop' first"
            fi
            rm -f "$f"
        fi
        if http_ok "http://$HOST:$p/healthz" || (exec 3<>"/dev/tcp/$HOST/$p") 2>/dev/null; then
            die "port $p on $HOST is already in use by another process"
        fi
    done

    local started=()
    for p in "${ports[@]}"; do
        # A simple command in the background: $! is the pid that nohup, then node, runs as.
        PORT="$p" HOST="$HOST" REDIS_URL="redis://$REDIS_HOST:$REDIS_PORT" \
            nohup node --expose-gc "$HERE/server.js" >"$(log_file "$p")" 2>&1 </dev/null &
        echo $! >"$(pid_file "$p")"
        started+=("$p")
        log "started port $p pid $(cat "$(pid_file "$p")") (log $(log_file "$p"))"
    done

    local deadline=$((SECONDS + START_TIMEOUT))
    for p in "${ports[@]}"; do
        local pid; pid="$(cat "$(pid_file "$p")")"
        until http_ok "http://$HOST:$p/healthz"; do
            if ! kill -0 "$pid" 2>/dev/null; then
                log "server on port $p (pid $pid) exited; last log lines:"
                tail -n 20 "$(log_file "$p")" >&2 || true
                cmd_stop
                die "server on port $p failed to start"
            fi
            if (( SECONDS >= deadline )); then
                log "server on port $p (pid $pid) not healthy after ${START_TIMEOUT}s; last log lines:"
                tail -n 20 "$(log_file "$p")" >&2 || true
                cmd_stop
                die "timed out waiting for http://$HOST:$p/healthz"
            fi
            sleep 0.2
        done
        log "port $p healthy"
    done
    echo "socketio peer up: ws://$HOST:${ports[0]}/socket.io/ and ws://$HOST:${ports[1]}/socket.io/ (stop with: $0 stop)"
}

case "${1:-start}" in
    start) shift || true; cmd_start "$@" ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    -h|--help|help) usage ;;
    *) if [[ "$1" =~ ^[0-9]+$ ]]; then cmd_start "$@"; else usage; fi ;;
esac
