"""The engines of a chaos run and their faults. Embedded mode has none (SQLite lives in the
pod). Distributed mode starts a private tansu, a private Redis and a private Postgres
cluster (initdb; the shared server with a schema of its own when no initdb is found), and
puts a chaos proxy in front of each, so a fault hits only this run's pods."""

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from proxy import Proxy

TANSU = os.environ.get("DISTRISOCKS_TANSU_BIN",
                       str(Path.home() / ".cache/distrisocks/tansu/bin/tansu"))
SHARED_POSTGRES_PORT = int(os.environ.get("DISTRISOCKS_CHAOS_POSTGRES_PORT", "5432"))
# The private broker's storage: a SQLite file in the run's directory for runs up to
# SQLITE_BROKER_MINUTES, so that the broker can be killed and restarted with its log kept, as
# Apache Kafka keeps it. In memory (`memory://tansu/`) the broker_restart fault is left out
# (a restart would lose every record, which no Kafka deployment does). Longer runs keep the
# log in memory: tansu 0.6's SQLite engine stops acknowledging produces once its database
# reaches ~150 MB, after 20 minutes of the suite's traffic in session 7 and 16 in session 11,
# and every later fault would then be judged against a dead broker. An explicit
# DISTRISOCKS_CHAOS_TANSU_STORAGE wins either way.
TANSU_STORAGE = os.environ.get("DISTRISOCKS_CHAOS_TANSU_STORAGE")
SQLITE_BROKER_MINUTES = 10


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, what, proc=None, secs=30):
    deadline = time.time() + secs
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} not listening on {port} in {secs} s")


class Engines:
    def __init__(self, mode, out, seed, minutes):
        self.mode, self.out = mode, Path(out)
        self.storage = TANSU_STORAGE or (
            "sqlite" if minutes <= SQLITE_BROKER_MINUTES else "memory://tansu/")
        self.tag = f"chaos{seed}p{os.getpid()}"
        self.procs = {}
        if mode != "distributed":
            return
        self.pg = None
        try:
            self._start_all()
        except BaseException:
            self.close()
            raise

    def _start_all(self):
        self.redis_port = free_port()
        self._start_redis()
        self.redis = Proxy(self.redis_port)
        self.pg = PrivatePostgres.start(self.out) if PrivatePostgres.available() else None
        self.postgres = Proxy(self.pg.port if self.pg else SHARED_POSTGRES_PORT)
        self.broker_port = free_port()
        self.broker = Proxy(self.broker_port)
        (self.out / "tansu").mkdir(exist_ok=True)
        self._start_broker()

    def _broker_storage(self):
        if self.storage != "sqlite":
            return self.storage
        # Four slashes: tansu 0.6 reads sqlite:///x as a path relative to its directory.
        return f"sqlite:///{(self.out / 'tansu' / 'tansu.db').resolve()}"

    def _start_broker(self):
        self.procs["tansu"] = subprocess.Popen(
            [TANSU, "broker", "--listener-url", f"tcp://127.0.0.1:{self.broker_port}",
             "--advertised-listener-url", f"tcp://127.0.0.1:{self.broker.port}",
             "--storage-engine", self._broker_storage()],
            cwd=self.out / "tansu", stdout=subprocess.DEVNULL,
            stderr=open(self.out / "tansu.log", "ab"))
        wait_listening(self.broker_port, "tansu", self.procs["tansu"])

    def _start_redis(self):
        # No persistence: a restart is also a flush (every route and lease gone).
        self.procs["redis"] = subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no"],
            stdout=open(self.out / "redis.log", "ab"), stderr=subprocess.STDOUT)
        wait_listening(self.redis_port, "redis-server", self.procs["redis"])

    def pod_args(self, name, out):
        # A short outbound queue (default 1024) lets the non-reading client overflow it in
        # seconds; every other device reads far faster than it fills.
        data = ["--data-dir", str(Path(out) / f"data-{name}"), "--outbound-queue", "64"]
        if self.mode != "distributed":
            return data
        lease = "3000"
        return data + [
            "--pod-id", f"{self.tag}-{name}", "--prefix", f"{self.tag}.",
            "--kafka-brokers", f"127.0.0.1:{self.broker.port}",
            "--redis-url", f"redis://127.0.0.1:{self.redis.port}/",
            "--postgres-url", f"postgres://postgres@127.0.0.1:{self.postgres.port}/test",
            "--postgres-schema", self.tag, "--route-lease-ms", lease,
            "--redrive-interval-ms", "300", "--redrive-none-after-ms", "3000",
            "--redrive-sent-after-ms", "5000", "--kafka-produce-timeout-ms", "2500",
            "--kafka-replication-factor", "1", "--shutdown-patience-ms", "1000",
            # tansu 0.6 loses its storage after an idempotent producer's epoch bump
            # (tests/cluster_faults.rs, Broker); Apache Kafka does not.
            "--kafka-idempotence", "false",
        ]

    def kinds(self):
        """The engine faults this run can inject."""
        kinds = ["broker_stall", "broker_reset", "broker_latency", "redis_restart",
                 "redis_stall", "redis_latency", "postgres_reset", "postgres_stall",
                 "postgres_latency"]
        kinds += ["postgres_restart"] if self.pg else []
        return kinds + (["broker_restart"] if not self.storage.startswith("memory:") else [])

    def fault(self, kind, rng):
        if kind == "postgres_restart":
            # An immediate stop is a crash for the server: no checkpoint, WAL replay on
            # start. The proxy's connections die with it.
            down = rng.uniform(0.2, 3.0)
            self.pg.ctl("stop", "-m", "immediate")
            self.postgres.reset()
            time.sleep(down)
            return {"down_secs": round(down, 2), "up": self.pg.start_again()}
        if kind == "broker_restart":
            down = rng.uniform(0.2, 3.0)
            self.procs["tansu"].send_signal(signal.SIGKILL)
            self.procs["tansu"].wait()
            self.broker.reset()
            time.sleep(down)
            self._start_broker()
            return {"down_secs": round(down, 2)}
        if kind == "redis_restart":
            self.procs["redis"].send_signal(signal.SIGKILL)
            self.procs["redis"].wait()
            self.redis.reset()
            time.sleep(rng.uniform(0.2, 2.0))
            self._start_redis()
            return {}
        engine, action = kind.split("_")
        proxy = {"broker": self.broker, "redis": self.redis, "postgres": self.postgres}[engine]
        if action == "reset":
            proxy.reset()
            return {}
        if action == "latency":
            delay, secs = rng.uniform(0.02, 0.3), rng.uniform(2, 8)
            direction = rng.choice(["both", "up", "down"])
            proxy.latency(delay, secs, direction)
            return {"delay_ms": round(delay * 1000), "secs": round(secs, 2),
                    "direction": direction}
        secs, direction = rng.uniform(1, 5), rng.choice(["both", "up", "down"])
        proxy.stall(secs, direction)
        return {"secs": round(secs, 2), "direction": direction}

    def close(self):
        for p in self.procs.values():
            p.kill()
            p.wait()
        if self.mode == "distributed":
            for name in ("broker", "redis", "postgres"):
                if hasattr(self, name):
                    getattr(self, name).close()
            if self.pg:
                self.pg.remove()
                return
            subprocess.run(["psql", f"postgres://postgres@127.0.0.1:{SHARED_POSTGRES_PORT}/test",
                            "-qc", f"DROP SCHEMA IF EXISTS {self.tag} CASCADE"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class PrivatePostgres:
    """A Postgres cluster of this run alone, so that it can be crashed and restarted without
    touching the machine's server. initdb refuses to run as root: as root it runs as the
    `postgres` user, in a directory of its own under the temp dir."""

    def __init__(self, bindir, data, port):
        self.bindir, self.data, self.port = bindir, data, port

    @staticmethod
    def bindir():
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        override = os.environ.get("DISTRISOCKS_CHAOS_PG_BINDIR")
        return override or (os.path.dirname(found[-1]) if found else None)

    @staticmethod
    def available():
        return os.environ.get("DISTRISOCKS_CHAOS_SHARED_POSTGRES") != "1" and \
            PrivatePostgres.bindir() is not None

    @classmethod
    def start(cls, out):
        data = Path(tempfile.mkdtemp(prefix="chaos-pg-"))
        pg = cls(cls.bindir(), data, free_port())
        if os.geteuid() == 0:
            shutil.chown(data, "postgres", "postgres")
        pg.run("initdb", "-D", str(data / "db"), "-U", "postgres", "--auth=trust",
               "--no-sync", "-E", "UTF8", "--locale=C")
        pg.ctl("start", "-w")
        pg.run("createdb", "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres", "test")
        return pg

    def run(self, tool, *args):
        cmd = [os.path.join(self.bindir, tool), *args]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def ctl(self, action, *args):
        opts = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1"
        self.run("pg_ctl", "-D", str(self.data / "db"), "-l", str(self.data / "log"),
                 "-o", opts, action, *args)

    def start_again(self, tries=3):
        """Starts the stopped server; False when it would not come back."""
        for _ in range(tries):
            try:
                self.ctl("start", "-w")
                return True
            except subprocess.CalledProcessError:
                time.sleep(1)
        return False

    def remove(self):
        try:
            self.ctl("stop", "-m", "immediate")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.data, ignore_errors=True)
