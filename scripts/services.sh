#!/usr/bin/env bash
# scripts/services.sh — make sure the services the distributed-mode tests need are running
# on loopback, installing what is missing. Fails loudly: every failure prints a
# "services: ..." line on stderr and returns/exits non-zero.
#
#   PostgreSQL 15   127.0.0.1:5432   trust auth for 127.0.0.1, database `test`
#   Redis           127.0.0.1:6379
#   tansu (Kafka)   127.0.0.1:9092   in-memory storage by default; started by us, pid file kept
#
# Use as a program:
#   scripts/services.sh up             # start (and install) all three, then print the exports
#   scripts/services.sh env            # print the exports only (eval "$(scripts/services.sh env)")
#   scripts/services.sh status         # one line per service; exit 1 if any is down
#   scripts/services.sh restart-tansu [PAUSE_SECONDS]
#   scripts/services.sh down-tansu     # stop the tansu that this script started (pid file), nothing else
#
# Use as a library (the test script):
#   source scripts/services.sh         # defines functions, exports the DISTRISOCKS_TEST_* variables;
#   services_up                        # starts nothing until this is called
#   trap services_down_tansu EXIT      # optional: stop our broker when the run ends
# Sourcing turns on `set -euo pipefail` in the sourcing shell (the test script wants it anyway).
#
# restart_tansu — for broker-outage tests. Kills the tansu we started (SIGTERM, SIGKILL after
# 10 s), waits until 127.0.0.1:9092 refuses connections, optionally sleeps PAUSE_SECONDS (the
# outage), starts it again on the same port and waits until it answers metadata. From a Rust test:
#   std::process::Command::new("bash").args(["scripts/services.sh", "restart-tansu", "2"]).status()
# (run from the repo root, or use env!("CARGO_MANIFEST_DIR")). NOTE: with the default storage
# `memory://tansu/` a restart LOSES every topic and message: the broker comes back empty (like
# a Kafka whose disks were wiped). For a restart that keeps data, set
# DISTRISOCKS_TANSU_STORAGE=sqlite:////abs/path/tansu.db before the first start (the cached
# binary has the libsql engine; note the FOUR slashes: tansu 0.6.0 reads sqlite:///x/y as a path
# relative to its working directory). restart_tansu refuses to kill a broker that this script did not start.
#
# Knobs (environment): DISTRISOCKS_CACHE (default ~/.cache/distrisocks), DISTRISOCKS_TANSU_STORAGE
# (default memory://tansu/), DISTRISOCKS_TANSU_VERSION (default 0.6.0, used only to install),
# DISTRISOCKS_TANSU_START_TIMEOUT (default 60 s), DISTRISOCKS_SERVICES_TIMEOUT (default 30 s,
# PostgreSQL and Redis).

set -euo pipefail

# ---------------------------------------------------------------------------------------------
# Settings and exports (cheap, no side effects).

SERVICES_CACHE="${DISTRISOCKS_CACHE:-$HOME/.cache/distrisocks}"
SERVICES_TANSU_ROOT="$SERVICES_CACHE/tansu"
SERVICES_TANSU_BIN="$SERVICES_TANSU_ROOT/bin/tansu"
SERVICES_TANSU_PIDFILE="$SERVICES_TANSU_ROOT/tansu.pid"
SERVICES_TANSU_LOG="$SERVICES_TANSU_ROOT/tansu.log"
SERVICES_TANSU_HOST=127.0.0.1
SERVICES_TANSU_PORT=9092
SERVICES_TANSU_STORAGE="${DISTRISOCKS_TANSU_STORAGE:-memory://tansu/}"
SERVICES_TANSU_VERSION="${DISTRISOCKS_TANSU_VERSION:-0.6.0}"
SERVICES_TANSU_START_TIMEOUT="${DISTRISOCKS_TANSU_START_TIMEOUT:-60}"
SERVICES_TIMEOUT="${DISTRISOCKS_SERVICES_TIMEOUT:-30}"
SERVICES_APT_UPDATED="${SERVICES_APT_UPDATED:-}"

export DISTRISOCKS_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:5432/test"
export DISTRISOCKS_TEST_REDIS_URL="redis://127.0.0.1:6379/"
export DISTRISOCKS_TEST_KAFKA="$SERVICES_TANSU_HOST:$SERVICES_TANSU_PORT"
export DISTRISOCKS_TANSU_BIN="$SERVICES_TANSU_BIN"

# ---------------------------------------------------------------------------------------------
# Helpers.

_svc_log() { echo "services: $*" >&2; }
_svc_fail() {
    echo "services: ERROR: $*" >&2
    return 1
}

# Runs a command as root: directly when we are root, else through sudo when there is one.
_svc_root() {
    if [[ "$(id -u)" == 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        _svc_fail "need root (or sudo) to run: $*"
    fi
}

_svc_apt_install() {
    command -v apt-get >/dev/null 2>&1 || _svc_fail "apt-get not found; install $* by hand" || return 1
    if [[ -z "$SERVICES_APT_UPDATED" ]]; then
        _svc_log "apt-get update"
        _svc_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 \
            || _svc_fail "apt-get update failed" || return 1
        SERVICES_APT_UPDATED=1
    fi
    _svc_log "apt-get install -y $*"
    _svc_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >&2 \
        || _svc_fail "apt-get install $* failed" || return 1
}

# True when something accepts TCP connections on host:port (1 s limit).
_svc_port_open() {
    timeout 1 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL.

_svc_pg_version() {
    local versions
    # shellcheck disable=SC2012 # version directories (15, 16, ...)
    versions="$(ls /etc/postgresql 2>/dev/null | sort -V || true)"
    if [[ -z "$versions" ]]; then
        return 1
    fi
    if [[ "$(wc -l <<<"$versions")" -gt 1 ]]; then
        _svc_log "several PostgreSQL versions in /etc/postgresql (${versions//$'\n'/ }); using the newest"
    fi
    tail -n 1 <<<"$versions"
}

_svc_psql() {
    psql -h 127.0.0.1 -p 5432 -U postgres -w -v ON_ERROR_STOP=1 -X -q -At "$@"
}

services_postgres() {
    local ver hba deadline
    if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! command -v psql >/dev/null 2>&1; then
        _svc_log "PostgreSQL is not installed; installing"
        _svc_apt_install postgresql || return 1
    fi
    if ! ver="$(_svc_pg_version)"; then
        # shellcheck disable=SC2012
        ver="$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1 || true)"
        [[ -n "$ver" ]] || _svc_fail "PostgreSQL packages present but no server in /usr/lib/postgresql" || return 1
        _svc_log "no PostgreSQL cluster; creating $ver/main"
        _svc_root pg_createcluster "$ver" main >&2 || _svc_fail "pg_createcluster $ver main failed" || return 1
    fi

    if ! pg_isready -q -h 127.0.0.1 -p 5432; then
        _svc_log "starting PostgreSQL $ver/main"
        _svc_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start >&2 \
            || _svc_fail "pg_ctlcluster $ver main start failed (see /var/log/postgresql/postgresql-$ver-main.log)" \
            || return 1
    fi
    deadline=$((SECONDS + SERVICES_TIMEOUT))
    until pg_isready -q -h 127.0.0.1 -p 5432; do
        ((SECONDS < deadline)) || _svc_fail "PostgreSQL not ready on 127.0.0.1:5432 after ${SERVICES_TIMEOUT}s" || return 1
        sleep 0.5
    done

    # Trust auth for loopback TCP: configured only when a password-less connection fails.
    if ! _svc_psql -d postgres -c 'select 1' >/dev/null 2>&1; then
        hba="/etc/postgresql/$ver/main/pg_hba.conf"
        [[ -f "$hba" ]] || _svc_fail "cannot connect as postgres and $hba is missing" || return 1
        _svc_log "adding trust auth for 127.0.0.1 and ::1 to $hba"
        _svc_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba" \
            || _svc_fail "could not edit $hba" || return 1
        _svc_root pg_ctlcluster --skip-systemctl-redirect "$ver" main reload >&2 \
            || _svc_fail "pg_ctlcluster $ver main reload failed" || return 1
        sleep 0.5
        _svc_psql -d postgres -c 'select 1' >/dev/null \
            || _svc_fail "still cannot connect as postgres@127.0.0.1 without a password" || return 1
    fi

    if [[ "$(_svc_psql -d postgres -c "select 1 from pg_database where datname = 'test'")" != 1 ]]; then
        _svc_log "creating database test"
        _svc_psql -d postgres -c 'create database test' >/dev/null \
            || _svc_fail "create database test failed" || return 1
    fi
    _svc_log "PostgreSQL ready: $DISTRISOCKS_TEST_POSTGRES_URL"
}

# ---------------------------------------------------------------------------------------------
# Redis.

_svc_redis_pong() {
    [[ "$(timeout 2 redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" == PONG ]]
}

services_redis() {
    local deadline
    if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
        _svc_log "Redis is not installed; installing"
        _svc_apt_install redis-server redis-tools || return 1
    fi
    if ! _svc_redis_pong; then
        if _svc_port_open 127.0.0.1 6379; then
            _svc_fail "something listens on 127.0.0.1:6379 but does not answer PING with PONG" || return 1
        fi
        _svc_log "starting redis-server on 127.0.0.1:6379"
        _svc_root mkdir -p /var/lib/redis /var/log/redis || _svc_fail "cannot create Redis dirs" || return 1
        _svc_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
            --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log >&2 \
            || _svc_fail "redis-server failed to start (see /var/log/redis/ci.log)" || return 1
    fi
    deadline=$((SECONDS + SERVICES_TIMEOUT))
    until _svc_redis_pong; do
        ((SECONDS < deadline)) || _svc_fail "Redis did not answer PONG within ${SERVICES_TIMEOUT}s (see /var/log/redis/ci.log)" || return 1
        sleep 0.2
    done
    _svc_log "Redis ready: $DISTRISOCKS_TEST_REDIS_URL"
}

# ---------------------------------------------------------------------------------------------
# tansu (Kafka protocol).

# Sends ApiVersions v0 then Metadata v1 over plain TCP; succeeds when the broker answers both.
# Prints "brokers=<id>@<host>:<port>,..." on success, the reason on stderr on failure.
_svc_kafka_probe() {
    command -v python3 >/dev/null 2>&1 || _svc_apt_install python3 || return 1
    python3 - "$1" "$2" <<'PY'
import socket, struct, sys

host, port = sys.argv[1], int(sys.argv[2])

def request(sock, api_key, version, corr, body=b""):
    client = b"services.sh"
    head = struct.pack(">hhih", api_key, version, corr, len(client)) + client
    msg = head + body
    sock.sendall(struct.pack(">i", len(msg)) + msg)
    size = struct.unpack(">i", recv(sock, 4))[0]
    data = recv(sock, size)
    if struct.unpack(">i", data[:4])[0] != corr:
        raise RuntimeError("correlation id mismatch")
    return data[4:]

def recv(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise RuntimeError("connection closed by broker")
        buf += chunk
    return buf

try:
    with socket.create_connection((host, port), timeout=3) as s:
        s.settimeout(3)
        data = request(s, 18, 0, 1)  # ApiVersions v0
        err, n = struct.unpack(">hi", data[:6])
        if err != 0:
            raise RuntimeError(f"ApiVersions error_code={err}")
        apis = {}
        for i in range(n):
            k, lo, hi = struct.unpack(">hhh", data[6 + 6 * i: 12 + 6 * i])
            apis[k] = (lo, hi)
        lo, hi = apis.get(3, (99, -1))
        if not lo <= 1 <= hi:
            raise RuntimeError(f"broker does not offer Metadata v1 (offers {lo}..{hi})")
        data = request(s, 3, 1, 2, struct.pack(">i", -1))  # Metadata v1, all topics
        off = 0
        (nb,) = struct.unpack_from(">i", data, off); off += 4
        brokers = []
        for _ in range(nb):
            node, hl = struct.unpack_from(">ih", data, off); off += 6
            h = data[off:off + hl].decode(); off += hl
            (p, rl) = struct.unpack_from(">ih", data, off); off += 6
            off += max(rl, 0)
            brokers.append(f"{node}@{h}:{p}")
        if not brokers:
            raise RuntimeError("Metadata lists no broker")
        print("brokers=" + ",".join(brokers))
except Exception as e:  # noqa: BLE001 - any failure means "not ready"
    print(f"{type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(1)
PY
}

# Pid of the tansu this script started, if it is still alive; fails otherwise.
_svc_tansu_pid() {
    local pid
    [[ -f "$SERVICES_TANSU_PIDFILE" ]] || return 1
    pid="$(cat "$SERVICES_TANSU_PIDFILE" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    # Alive and really our tansu (a recycled pid must not be killed).
    if [[ -r "/proc/$pid/cmdline" ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "tansu broker"; then
        echo "$pid"
        return 0
    fi
    return 1
}

services_install_tansu() {
    if [[ -x "$SERVICES_TANSU_BIN" ]] && "$SERVICES_TANSU_BIN" --version >/dev/null 2>&1; then
        return 0
    fi
    command -v cargo >/dev/null 2>&1 || _svc_fail "cargo not found; cannot install tansu" || return 1
    _svc_log "installing tansu $SERVICES_TANSU_VERSION into $SERVICES_TANSU_ROOT (cargo install; takes minutes)"
    mkdir -p "$SERVICES_TANSU_ROOT"
    cargo install tansu --locked --version "$SERVICES_TANSU_VERSION" \
        --features dynostore,libsql --root "$SERVICES_TANSU_ROOT" >&2 \
        || _svc_fail "cargo install tansu failed" || return 1
    [[ -x "$SERVICES_TANSU_BIN" ]] || _svc_fail "cargo install finished but $SERVICES_TANSU_BIN is missing" || return 1
}

# The last 20 lines that the latest start wrote to the log, on stderr.
_svc_tansu_log_tail() {
    awk '/=== .* start$/ { buf = "" } { buf = buf $0 "\n" } END { printf "%s", buf }' \
        "$SERVICES_TANSU_LOG" 2>/dev/null | tail -n 20 >&2 || true
}

# Waits (bounded) until the broker on 127.0.0.1:9092 answers ApiVersions + Metadata.
# With a pid, also fails as soon as that process dies.
_svc_tansu_wait() {
    local pid="${1:-}" started_ms deadline=$((SECONDS + SERVICES_TANSU_START_TIMEOUT)) out
    started_ms="$(date +%s%3N)"
    while :; do
        if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
            _svc_log "tansu (pid $pid) exited during startup; last lines of $SERVICES_TANSU_LOG:"
            _svc_tansu_log_tail
            rm -f "$SERVICES_TANSU_PIDFILE"
            _svc_fail "tansu failed to start" || return 1
        fi
        if _svc_port_open "$SERVICES_TANSU_HOST" "$SERVICES_TANSU_PORT" &&
            out="$(_svc_kafka_probe "$SERVICES_TANSU_HOST" "$SERVICES_TANSU_PORT" 2>/dev/null)"; then
            _svc_log "Kafka broker ready on $DISTRISOCKS_TEST_KAFKA after $(($(date +%s%3N) - started_ms)) ms ($out)"
            if [[ "$out" != *"@$SERVICES_TANSU_HOST:$SERVICES_TANSU_PORT"* ]]; then
                _svc_log "WARNING: the broker advertises $out, not $DISTRISOCKS_TEST_KAFKA"
            fi
            return 0
        fi
        if ((SECONDS >= deadline)); then
            _svc_log "last probe: $(_svc_kafka_probe "$SERVICES_TANSU_HOST" "$SERVICES_TANSU_PORT" 2>&1 || true)"
            if [[ -n "$pid" ]]; then _svc_tansu_log_tail; fi
            _svc_fail "no Kafka broker answering on $DISTRISOCKS_TEST_KAFKA after ${SERVICES_TANSU_START_TIMEOUT}s" || return 1
        fi
        sleep 0.2
    done
}

# Starts tansu in the background (no check of what is running: callers do that).
_svc_tansu_start() {
    local pid
    mkdir -p "$SERVICES_TANSU_ROOT"
    _svc_log "starting tansu on $DISTRISOCKS_TEST_KAFKA (storage $SERVICES_TANSU_STORAGE, log $SERVICES_TANSU_LOG)"
    printf '\n=== %s start\n' "$(date -u +%FT%TZ)" >>"$SERVICES_TANSU_LOG"
    nohup "$SERVICES_TANSU_BIN" broker \
        --listener-url "tcp://$SERVICES_TANSU_HOST:$SERVICES_TANSU_PORT" \
        --advertised-listener-url "tcp://$SERVICES_TANSU_HOST:$SERVICES_TANSU_PORT" \
        --storage-engine "$SERVICES_TANSU_STORAGE" \
        </dev/null >>"$SERVICES_TANSU_LOG" 2>&1 &
    pid=$!
    echo "$pid" >"$SERVICES_TANSU_PIDFILE"
    _svc_tansu_wait "$pid"
}

services_tansu() {
    local pid
    services_install_tansu || return 1
    if pid="$(_svc_tansu_pid)"; then
        _svc_log "tansu already started by us (pid $pid)"
        _svc_tansu_wait "$pid"
        return
    fi
    rm -f "$SERVICES_TANSU_PIDFILE"
    if _svc_port_open "$SERVICES_TANSU_HOST" "$SERVICES_TANSU_PORT"; then
        _svc_log "something already listens on $DISTRISOCKS_TEST_KAFKA (not started by us); checking it"
        _svc_tansu_wait
        return
    fi
    _svc_tansu_start
}

# Stops only the tansu this script started (pid file); leaves any other broker alone.
services_down_tansu() {
    local pid i
    if ! pid="$(_svc_tansu_pid)"; then
        rm -f "$SERVICES_TANSU_PIDFILE"
        _svc_log "no tansu started by us is running; nothing to stop"
        return 0
    fi
    _svc_log "stopping tansu (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        _svc_log "tansu (pid $pid) ignored SIGTERM for 10s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.2
    fi
    rm -f "$SERVICES_TANSU_PIDFILE"
    for ((i = 0; i < 50; i++)); do
        _svc_port_open "$SERVICES_TANSU_HOST" "$SERVICES_TANSU_PORT" || return 0
        sleep 0.2
    done
    _svc_fail "$DISTRISOCKS_TEST_KAFKA still accepts connections after stopping tansu"
}

# restart_tansu [PAUSE_SECONDS]: stop our tansu, stay down PAUSE_SECONDS (default 0), start it
# again on the same port and wait until it answers. See the header for the memory:// caveat.
restart_tansu() {
    local pause="${1:-0}"
    if ! _svc_tansu_pid >/dev/null && _svc_port_open "$SERVICES_TANSU_HOST" "$SERVICES_TANSU_PORT"; then
        _svc_fail "the broker on $DISTRISOCKS_TEST_KAFKA was not started by this script; not restarting it" || return 1
    fi
    services_install_tansu || return 1
    services_down_tansu || return 1
    if [[ "$pause" != 0 ]]; then
        _svc_log "tansu down for ${pause}s"
        sleep "$pause"
    fi
    _svc_tansu_start
}

# ---------------------------------------------------------------------------------------------
# Everything.

services_env() {
    local v
    for v in DISTRISOCKS_TEST_POSTGRES_URL DISTRISOCKS_TEST_REDIS_URL DISTRISOCKS_TEST_KAFKA DISTRISOCKS_TANSU_BIN; do
        printf 'export %s=%q\n' "$v" "${!v}"
    done
}

# Node.js >= 20 and npm, for the TypeScript client's tests (clients/js). Installed from Debian's
# packages when missing; an older Node (Debian 12 ships 18, without WebSocket) fails loudly.
services_node() {
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        _svc_apt_install nodejs npm || return 1
    fi
    local major
    major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
    [[ "$major" -ge 20 ]] || _svc_fail "node $(node --version 2>&1) is too old: clients/js needs Node.js >= 20 (WebSocket)" || return 1
    _svc_log "node $(node --version), npm $(npm --version)"
}

# Debian's Chromium, for the demo page's end-to-end tests (playwright-core drives it; the
# browsers Playwright would download are out of reach here).
services_chromium() {
    if [[ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]]; then
        _svc_apt_install chromium || return 1
    fi
    [[ -x "${CHROMIUM:-/usr/bin/chromium}" ]] || _svc_fail "no Chromium at ${CHROMIUM:-/usr/bin/chromium}" || return 1
}

services_up() {
    services_postgres || return 1
    services_redis || return 1
    services_tansu || return 1
}

services_status() {
    local rc=0 pid out
    if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then echo "postgres: up (127.0.0.1:5432)"; else echo "postgres: DOWN"; rc=1; fi
    if _svc_redis_pong 2>/dev/null; then echo "redis: up (127.0.0.1:6379)"; else echo "redis: DOWN"; rc=1; fi
    if out="$(_svc_kafka_probe "$SERVICES_TANSU_HOST" "$SERVICES_TANSU_PORT" 2>/dev/null)"; then
        if pid="$(_svc_tansu_pid)"; then echo "kafka: up ($out; tansu pid $pid, ours)"; else echo "kafka: up ($out; not started by us)"; fi
    else
        echo "kafka: DOWN"
        rc=1
    fi
    return "$rc"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    case "${1:-up}" in
    up) services_up && services_env ;;
    env) services_env ;;
    status) services_status ;;
    down-tansu) services_down_tansu ;;
    restart-tansu) restart_tansu "${2:-0}" ;;
    -h | --help | help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//' ;;
    *)
        echo "services: unknown command '$1' (up, env, status, restart-tansu [PAUSE], down-tansu)" >&2
        exit 2
        ;;
    esac
fi
