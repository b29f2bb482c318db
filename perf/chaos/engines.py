"""The engines of a chaos run and their faults. Embedded mode has none (SQLite lives in the
pod). Distributed mode starts a private tansu and a private Redis, uses the shared Postgres
with a schema of its own, and puts a chaos proxy in front of each, so a fault hits only
this run's pods."""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from proxy import Proxy

TANSU = os.environ.get("DISTRISOCKS_TANSU_BIN",
                       str(Path.home() / ".cache/distrisocks/tansu/bin/tansu"))
POSTGRES_PORT = int(os.environ.get("DISTRISOCKS_CHAOS_POSTGRES_PORT", "5432"))
# The private broker's storage. In memory by default: the 30-minute soak of session 7 had
# tansu's SQLite engine stop acknowledging produces after 20 minutes (148 MB database);
# the broker is never restarted here, so nothing needs to persist.
TANSU_STORAGE = os.environ.get("DISTRISOCKS_CHAOS_TANSU_STORAGE", "memory://tansu/")


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
    def __init__(self, mode, out, seed):
        self.mode, self.out = mode, Path(out)
        self.tag = f"chaos{seed}p{os.getpid()}"
        self.procs = {}
        if mode != "distributed":
            return
        self.redis_port = free_port()
        self._start_redis()
        self.redis = Proxy(self.redis_port)
        self.postgres = Proxy(POSTGRES_PORT)
        broker_port = free_port()
        self.broker = Proxy(broker_port)
        (self.out / "tansu").mkdir(exist_ok=True)
        self.procs["tansu"] = subprocess.Popen(
            [TANSU, "broker", "--listener-url", f"tcp://127.0.0.1:{broker_port}",
             "--advertised-listener-url", f"tcp://127.0.0.1:{self.broker.port}",
             "--storage-engine", TANSU_STORAGE],
            cwd=self.out / "tansu", stdout=subprocess.DEVNULL,
            stderr=open(self.out / "tansu.log", "ab"))
        wait_listening(broker_port, "tansu", self.procs["tansu"])

    def _start_redis(self):
        # No persistence: a restart is also a flush (every route and lease gone).
        self.procs["redis"] = subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no"],
            stdout=open(self.out / "redis.log", "ab"), stderr=subprocess.STDOUT)
        wait_listening(self.redis_port, "redis-server", self.procs["redis"])

    def pod_args(self, name, out):
        data = ["--data-dir", str(Path(out) / f"data-{name}")]
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

    def fault(self, kind, rng):
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
        secs, direction = rng.uniform(1, 5), rng.choice(["both", "up", "down"])
        proxy.stall(secs, direction)
        return {"secs": round(secs, 2), "direction": direction}

    def close(self):
        for p in self.procs.values():
            p.kill()
            p.wait()
        if self.mode == "distributed":
            for proxy in (self.broker, self.redis, self.postgres):
                proxy.close()
            subprocess.run(["psql", f"postgres://postgres@127.0.0.1:{POSTGRES_PORT}/test", "-qc",
                            f"DROP SCHEMA IF EXISTS {self.tag} CASCADE"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
