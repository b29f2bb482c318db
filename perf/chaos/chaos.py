#!/usr/bin/env python3
"""The chaos suite's orchestrator (issue 11): pods under steady recorded traffic
(`distrisocks-chaos`), a seeded random schedule of faults, then the independent checker.

    chaos.py --seed N --minutes M [--mode embedded|distributed] [--out DIR]

embedded:    one pod (2 shards, SQLite); faults: kill -9 and restart, graceful restart
             (SIGTERM), SIGSTOP/SIGCONT, a reconnect storm of every device, slow readers
             (every fourth device stops reading for 1-5 s), a non-reading client (one
             device stops reading until the pod drops it).
distributed: two pods on a private tansu, a private Redis and a private Postgres cluster
             (engines.py), each engine behind a chaos proxy (proxy.py); faults: kill -9 of a
             pod and restart, graceful restart, SIGSTOP past the route lease, the reconnect
             storm, slow readers and the non-reading client, the broker killed and
             restarted (its log kept), stalled, slowed or its connections reset, Redis
             killed and restarted empty, stalled or slowed, Postgres crashed (immediate
             stop) and restarted, its connections reset, stalled or slowed (20-300 ms
             added latency for 2-8 s).

Every fault is logged to DIR/faults.jsonl; pod RSS and open files every second to
DIR/resources.jsonl; the client's history to DIR/history.jsonl. Exit status: the checker's
(0: every invariant holds). A failure prints the command that replays the same schedule.
"""

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check  # noqa: E402
from engines import Engines, free_port  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
LEASE_MS = 3000


class Pod:
    """One pod process that can be killed, paused and restarted on the same address."""

    def __init__(self, name, binary, args, out):
        self.name, self.binary, self.args, self.out = name, binary, args, out
        self.port = free_port()
        self.proc = None
        self.starts = 0

    @property
    def url(self):
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self, patience=30):
        """Starts the pod and waits for /healthz; False when it is not healthy in time
        (a fenced restart exits while the old id key lives, and is retried; an engine that
        stays away keeps it down). The run goes on either way: the checker judges."""
        self.starts += 1
        log = open(self.out / f"pod-{self.name}.log", "ab")
        env = dict(os.environ, DISTRISOCKS_LOG=os.environ.get("DISTRISOCKS_LOG", "warn"))
        cmd = [self.binary, "--listen", f"127.0.0.1:{self.port}", "--shards", "2"] + self.args
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, env=env)
        deadline = time.time() + patience
        while not healthy(self.port):
            if self.proc.poll() is not None:
                self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, env=env)
            if time.time() > deadline:
                print(f"chaos: pod {self.name} not healthy in {patience} s", file=sys.stderr)
                return False
            time.sleep(0.2)
        return True

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def send(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM):
        if not self.alive():
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def healthy(port):
    import urllib.request
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def proc_sample(p):
    """RSS, open descriptors and queued work of a live pod process; None once it is gone."""
    pid = p.proc.pid
    try:
        rss = next(int(line.split()[1]) for line in open(f"/proc/{pid}/status")
                   if line.startswith("VmRSS:"))
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, StopIteration):
        return None
    return {"t": time.time(), "pod": p.name, "pid": pid, "rss_kib": rss, "fds": fds,
            "queued": queued(p.port)}


def sample(pods, path, stop):
    """Samples every live pod once a second until `stop`."""
    with open(path, "w", encoding="utf-8") as f:
        while not stop.wait(1.0):
            for p in pods:
                s = proc_sample(p) if p.alive() else None
                if s is not None:
                    f.write(json.dumps(s) + "\n")
                    f.flush()


def final_samples(pods, path, patience=15.0):
    """After the drain settled: one more sample per live pod, taken once its queues are empty
    or `patience` has passed (the checker fails a queue that never empties)."""
    with open(path, "a", encoding="utf-8") as f:
        for p in pods:
            deadline = time.time() + patience
            s = proc_sample(p) if p.alive() else None
            while s is not None and s["queued"] != 0 and time.time() < deadline:
                time.sleep(0.2)
                s = proc_sample(p)
            if s is not None:
                f.write(json.dumps(dict(s, final=True)) + "\n")


# --- faults: each takes (rng, pods, engines) and returns a description --------------------

def kill9(rng, pods, _):
    p = rng.choice(pods)
    p.stop(signal.SIGKILL)
    time.sleep(rng.uniform(0.2, 2.0))
    return {"pod": p.name, "up": p.start()}


def graceful_restart(rng, pods, _):
    p = rng.choice(pods)
    p.stop(signal.SIGTERM)
    return {"pod": p.name, "up": p.start()}


def pause_past_lease(rng, pods, engines):
    return pause(rng, pods, engines, past_lease=True)


def pause(rng, pods, _, past_lease=False):
    p = rng.choice(pods)
    secs = rng.uniform(LEASE_MS / 1000 + 1, LEASE_MS / 1000 + 3) if past_lease else rng.uniform(0.5, 3)
    p.send(signal.SIGSTOP)
    time.sleep(secs)
    p.send(signal.SIGCONT)
    if past_lease:
        # A pod that wakes fenced may exit; the schedule brings it back.
        time.sleep(1.0)
        if not p.alive():
            p.start()
    return {"pod": p.name, "secs": round(secs, 2), "up": p.alive()}


def client_storm(rng, pods, engines):
    """Every device drops its connection and reconnects at once."""
    (engines.out / "control" / "storm").write_text("1")
    return {}


def slow_readers(rng, pods, engines):
    """Every fourth device stops reading (and sending) for a while, then catches up."""
    secs = rng.uniform(1, 5)
    (engines.out / "control" / "stall").write_text(f"{secs:.2f}")
    return {"secs": round(secs, 2)}


def scrape(port):
    """A pod's /metrics text; None when it does not answer."""
    import urllib.request
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
            return r.read().decode()
    except OSError:
        return None


def metric_sum(port, name, text=None):
    """The sum over the labelled series of one of a pod's metrics (counters per shard, inbox
    depths); None when the pod does not answer."""
    text = text if text is not None else scrape(port)
    if text is None:
        return None
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith(f"distrisocks_{name}{{"))


def queued(port):
    """Commands waiting for the store plus messages waiting in shard inboxes."""
    text = scrape(port)
    if text is None:
        return None
    store = sum(int(line.split()[-1]) for line in text.splitlines()
                if line.startswith("distrisocks_store_queue_depth "))
    return store + int(metric_sum(port, "inbox_depth", text))


LET_GO = ("slow_consumer_closes_total", "ping_timeout_closes_total", "stuck_write_drops_total",
          "route_lost_closes_total")


def non_reader(users):
    """One device reconnects with a tiny receive buffer and stops reading; a watcher tells
    it to read again once the pod holding it let it go (4008 when its credit of
    unacknowledged messages or its queue ran out; 4001 when it answered no ping; dropped
    without a close frame when not even that fits: that pod's sum of those counters rose:
    `dropped`), once that pod's process went away (killed, or exited fenced: `pod_gone`,
    the kernel let the connection go), or after 90 s (`timeout`, a violation for the
    checker). A fenced pod's 4009 counts as letting go (`route_lost_closes_total`): it fits
    in a socket that had room. The device names its pod in `deaf_url` each time it connects;
    the watcher follows the newest, and a stale one from an earlier episode (written when
    that device reconnected) is removed first, so it cannot point at the wrong pod. One such
    device at a time."""
    busy = threading.Event()

    def let_go(port):
        counts = [metric_sum(port, name) for name in LET_GO]
        return None if None in counts else sum(counts)

    def newest(pods, control):
        url = control / "deaf_url"
        if not url.exists():
            return None
        text = url.read_text().strip()
        url.unlink()
        return next((p for p in pods if p.url == text), None)

    def holder(pods, control, deadline):
        while time.time() < deadline:
            pod = newest(pods, control)
            if pod is not None:
                return pod
            time.sleep(0.1)
        return None

    def outcome(pods, control, pod, deadline):
        starts, base = pod.starts, let_go(pod.port)
        while time.time() < deadline:
            time.sleep(0.2)
            moved = newest(pods, control)
            if moved is not None and moved is not pod:
                pod, starts, base = moved, moved.starts, let_go(moved.port)
                continue
            if pod.starts != starts or not pod.alive():
                return "pod_gone"
            n = let_go(pod.port)
            if n is not None and base is not None and n > base:
                return "dropped"
            base = n if base is None else base
        return "timeout"

    def watch(pods, control):
        deadline = time.time() + 90
        pod = holder(pods, control, deadline)
        reason = outcome(pods, control, pod, deadline) if pod else "timeout"
        (control / "hear").write_text(reason)
        busy.clear()

    def fault(rng, pods, engines):
        if busy.is_set():
            return {"skipped": "a device is already not reading"}
        busy.set()
        device = rng.randrange(users)
        (engines.out / "control" / "deaf_url").unlink(missing_ok=True)
        (engines.out / "control" / "deaf").write_text(str(device))
        threading.Thread(target=watch, args=(pods, engines.out / "control"), daemon=True).start()
        return {"device": f"u{device}"}
    fault.__name__ = "non_reader"
    return fault


def engine_fault(kind):
    def fault(rng, _pods, engines):
        return engines.fault(kind, rng)
    fault.__name__ = kind
    return fault


def fault_kinds(mode, users, engines):
    clients = [client_storm, slow_readers, non_reader(users)]
    if mode == "embedded":
        return [kill9, graceful_restart, pause] + clients
    return [kill9, graceful_restart, pause_past_lease] + clients + [
        engine_fault(k) for k in engines.kinds()]


def run_faults(rng, kinds, pods, engines, until, log):
    counts = {}
    while True:
        wait = rng.uniform(5, 12)
        if time.time() + wait + 3 > until:
            return counts
        time.sleep(wait)
        for p in pods:
            if not p.alive():
                log.write(json.dumps({"t": time.time(), "fault": "was_down", "pod": p.name}) + "\n")
                p.start()
        f = rng.choice(kinds)
        name = f.__name__
        started = time.time()
        try:
            detail = f(rng, pods, engines)
        except Exception as e:  # noqa: BLE001 - a broken fault must not end the run unjudged
            detail = {"failed": f"{type(e).__name__}: {e}"}
        if detail and "skipped" in detail:
            name += "_skipped"
        if detail and "failed" in detail:
            name += "_failed"
        counts[name] = counts.get(name, 0) + 1
        log.write(json.dumps({"t": started, "fault": name, "secs": round(time.time() - started, 2),
                              **(detail or {})}) + "\n")
        log.flush()
        print(f"chaos: {name} {detail or ''}", file=sys.stderr)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--minutes", type=float, required=True)
    ap.add_argument("--mode", choices=["embedded", "distributed"], default="embedded")
    ap.add_argument("--out")
    ap.add_argument("--users", type=int, default=40)
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--max-rss-mib", type=int, default=512)
    ap.add_argument("--only", help="comma-separated fault kinds: a schedule of these alone")
    ap.add_argument("--skip", help="comma-separated fault kinds left out of the schedule")
    ap.add_argument("--pod", default=str(ROOT / "target/release/distrisocks"))
    ap.add_argument("--client", default=str(ROOT / "target/release/distrisocks-chaos"))
    a = ap.parse_args(argv)
    # A SIGTERM unwinds like an error, so `finally` stops the pods, engines and client.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    out = Path(a.out or tempfile.mkdtemp(prefix=f"chaos-{a.mode}-{a.seed}-"))
    out.mkdir(parents=True, exist_ok=True)
    if any(out.glob("data-*")) or (out / "history.jsonl").exists():
        # The users and client_msg_ids of every run are the same: a pod on an earlier run's
        # data answers the new sends as duplicates of the old messages, and the checker
        # rightly sees thousands of messages missing. Never mix two runs.
        sys.exit(f"chaos: {out} holds an earlier run (data-*, history.jsonl); "
                 "remove it or pick another --out")
    rng = random.Random(a.seed)
    replay = f"perf/chaos.sh --seed {a.seed} --minutes {a.minutes} --mode {a.mode}"
    print(f"chaos: {a.mode}, seed {a.seed}, {a.minutes} min, output in {out}", file=sys.stderr)

    (out / "control").mkdir(exist_ok=True)
    engines = Engines(a.mode, out, a.seed, a.minutes)
    if a.mode == "distributed" and engines.storage.startswith("memory:"):
        print("chaos: the broker keeps its log in memory, so broker_restart is left out "
              "(engines.py, SQLITE_BROKER_MINUTES)", file=sys.stderr)
    pods = [Pod(n, a.pod, engines.pod_args(n, out), out)
            for n in (["a"] if a.mode == "embedded" else ["a", "b"])]
    stop = threading.Event()
    client = None
    try:
        for p in pods:
            p.start()
        sampler = threading.Thread(target=sample, args=(pods, out / "resources.jsonl", stop))
        sampler.start()
        traffic = max(20, int(a.minutes * 60))
        client = subprocess.Popen(
            [a.client, "--users", str(a.users), "--rate", str(a.rate), "--seed", str(a.seed),
             "--duration-secs", str(traffic), "--drain-secs", "90",
             "--history", str(out / "history.jsonl"), "--control", str(out / "control")] + [x for p in pods for x in ("--url", p.url)])
        with open(out / "faults.jsonl", "w", encoding="utf-8") as log:
            kinds = fault_kinds(a.mode, a.users, engines)
            if a.only:
                kinds = [k for k in kinds if k.__name__ in a.only.split(",")]
            if a.skip:
                kinds = [k for k in kinds if k.__name__ not in a.skip.split(",")]
            counts = run_faults(rng, kinds, pods, engines, time.time() + traffic, log)
        for p in pods:
            if not p.alive():
                p.start(patience=90)
        client.wait(timeout=traffic + 150)
        stop.set()
        sampler.join()
        final_samples(pods, out / "resources.jsonl")
    finally:
        if client is not None and client.poll() is None:
            client.kill()
            client.wait()
        stop.set()
        for p in pods:
            p.stop()
        engines.close()
    samples = check.read_lines(out / "resources.jsonl")
    verdicts = check.check(check.read_lines(out / "history.jsonl"), samples,
                           a.max_rss_mib, 4096)
    with open(out / "verdicts.json", "w", encoding="utf-8") as f:
        json.dump({"seed": a.seed, "mode": a.mode, "faults": counts, "verdicts": verdicts}, f, indent=1)
    for v in verdicts:
        extra = "".join(f" ({v[k]} {k.replace('_', ' ')})" for k in check.EXTRAS if k in v)
        print(f"{'PASS' if v['ok'] else 'FAIL'}  {v['invariant']}: {v['checked']} checked, "
              f"{v['violations']} violations{extra}")
        for ex in v["examples"]:
            print(f"        {json.dumps(ex)}")
    print(f"faults survived: {json.dumps(counts)}; restarts: "
          f"{json.dumps({p.name: p.starts - 1 for p in pods})}")
    if any(not v["ok"] for v in verdicts):
        print(f"chaos: VIOLATIONS; replay this schedule with: {replay}  (output in {out})")
        return 1
    broken = sorted(k for k in counts if k.endswith("_failed"))
    if broken:
        # The history was judged, but a fault the schedule asked for did not happen as
        # written: a bug of the suite, and the run proves less than it claims.
        print(f"chaos: faults that raised: {', '.join(broken)} (faults.jsonl); replay: {replay}")
        return 1
    print(f"chaos: all invariants hold ({out})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
