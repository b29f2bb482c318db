#!/usr/bin/env python3
"""Independent checker of a chaos run's history (issue 11).

Reads the JSON lines `distrisocks-chaos` recorded (what each device saw on the wire, one
clock) and, optionally, the orchestrator's resource samples, and judges the whole run
against the delivery contract of docs/PROTOCOL.md. It shares no code with the gateway.

    check.py HISTORY [--resources FILE] [--max-rss-mib N] [--max-fds N] [--json OUT]

Prints one verdict per invariant (PASS/FAIL, a count, a few examples) and exits 1 when any
invariant is violated, 2 when the history cannot be read.
"""

import argparse
import json
import sys
from collections import defaultdict

RETRYABLE = {"overloaded", "store_unavailable", "rate_limited"}
RANK = {"NONE": 0, "SENT": 1, "DELIVERED": 2}
EXAMPLES = 5
# Counts a verdict reports beside its violations.
EXTRAS = ("late_live_arrivals", "across_reconnects", "close_frames_seen", "peak_queued")


class History:
    """The events of one run, indexed the ways the invariants need."""

    def __init__(self, events):
        self.events = events
        self.sends = defaultdict(list)      # (user, cmid) -> [send event]
        self.accepted = defaultdict(list)   # (user, cmid) -> [accepted event]
        self.errors = defaultdict(list)     # (user, cmid) -> [error event]
        self.recvs = defaultdict(list)      # user -> [recv event], in order
        self.statuses = defaultdict(list)   # (user, id) -> [status event], in order
        self.v2_users = set()
        self.other = []                     # events no correct run records
        self.end = None
        for e in events:
            self._index(e)

    def _index(self, e):
        ev, u = e.get("ev"), e.get("u")
        if ev == "send":
            self.sends[(u, e["cmid"])].append(e)
        elif ev == "accepted":
            self.accepted[(u, e["cmid"])].append(e)
        elif ev == "error":
            self.errors[(u, e.get("cmid"))].append(e)
        elif ev == "recv":
            self.recvs[u].append(e)
        elif ev == "status":
            self.statuses[(u, e["id"])].append(e)
        elif ev == "connect" and e.get("since") is not None:
            self.v2_users.add(u)
        elif ev in ("garbage", "accepted_unknown", "other"):
            self.other.append(e)
        elif ev == "end":
            self.end = e

    def accepted_ids(self):
        """id -> (sender, cmid, recipient) for every message some `accepted` named."""
        out = {}
        for (u, cmid), acc in self.accepted.items():
            for a in acc:
                out.setdefault(a["id"], (u, cmid, a["to"]))
        return out


def verdict(name, violations, checked):
    return {"invariant": name, "ok": not violations, "checked": checked,
            "violations": len(violations), "examples": violations[:EXAMPLES]}


def one_id_per_send(h):
    """Every `accepted` of one (sender, client_msg_id) names one id; no two sends share one."""
    bad, owner = [], {}
    for key, acc in h.accepted.items():
        ids = {a["id"] for a in acc}
        if len(ids) > 1:
            bad.append({"send": key, "ids": sorted(ids)})
        for i in ids:
            if owner.setdefault(i, key) != key:
                bad.append({"id": i, "sends": [owner[i], key]})
    return verdict("one id per send (idempotent resends)", bad, len(h.accepted))


def no_loss(h):
    """Every accepted message reached its recipient's device at least once. A v2 device
    that sends to itself holds the message through its `accepted` (its `pos`): the pod then
    sends it no live copy below the device's cursor (docs/PROTOCOL.md, protocol v2)."""
    got = defaultdict(set)
    for u, rs in h.recvs.items():
        for r in rs:
            if r.get("to") == u:
                got[u].add(r["id"])
    for (u, _), acc in h.accepted.items():
        for a in acc:
            if a.get("to") == u and u in h.v2_users and a.get("pos") is not None:
                got[u].add(a["id"])
    bad = [{"id": i, "from": s, "cmid": c, "to": to}
           for i, (s, c, to) in h.accepted_ids().items() if i not in got[to]]
    return verdict("no accepted message missing at its recipient", bad, len(h.accepted_ids()))


def no_phantom(h):
    """Every received message was sent: by an accepted id, or (its `accepted` lost in a
    crash) by a send of the same sender whose client_msg_id is the payload."""
    ids, bad, n = h.accepted_ids(), [], 0
    for u, rs in h.recvs.items():
        for r in rs:
            n += 1
            key = (r.get("from"), r.get("payload"))
            sent = ids.get(r["id"], (None, None, None))[:2] == key or key in h.sends
            if not sent:
                bad.append({"at": u, "s": r["s"], "id": r["id"], "from": r.get("from")})
    return verdict("no message received that was never sent", bad, n)


def stored_once(h):
    """One send reaches its recipient under one id: two ids for one client_msg_id would be
    the same message stored twice and shown twice."""
    seen, bad = defaultdict(set), []
    for u, rs in h.recvs.items():
        for r in rs:
            if r.get("to") == u:
                seen[(r.get("from"), r.get("payload"))].add(r["id"])
    for key, ids in seen.items():
        if len(ids) > 1:
            bad.append({"send": key, "ids": sorted(ids)})
    return verdict("each send stored once", bad, len(seen))


def no_duplicate_in_session(h):
    """Within one connection, no id twice (repeats are for new connections)."""
    bad, n = [], 0
    for u, rs in h.recvs.items():
        seen = set()
        for r in rs:
            n += 1
            k = (r["s"], r["id"])
            if k in seen:
                bad.append({"at": u, "s": r["s"], "id": r["id"], "t": r["t"]})
            seen.add(k)
    return verdict("no duplicate id within one connection", bad, n)


def conversations_orderable(h):
    """Every conversation can be put in order by its `seq`: each seq names one message, and
    what its members hold (sent, from `accepted`; received, from `message` frames) covers
    1..max with no hole. Live frames may arrive out of order (docs/PROTOCOL.md: a redriven
    message comes after newer ones); that is counted in `late`, not a violation."""
    at = defaultdict(lambda: defaultdict(set))
    for acc in h.accepted.values():
        for a in acc:
            if a.get("seq") is not None:
                at[a.get("cid")][a["seq"]].add(a["id"])
    late = 0
    for u, rs in h.recvs.items():
        last = {}
        for r in rs:
            if r.get("seq") is None:
                continue
            at[r.get("cid")][r["seq"]].add(r["id"])
            k = (r["s"], r.get("cid"), r.get("from"))
            late += r["seq"] < last.get(k, 0)
            last[k] = max(r["seq"], last.get(k, 0))
    bad = []
    for cid, seqs in at.items():
        holes = [q for q in range(1, max(seqs) + 1) if q not in seqs]
        clash = {q: sorted(ids) for q, ids in seqs.items() if len(ids) > 1}
        if holes or clash:
            bad.append({"cid": cid, "holes": holes[:10], "two_ids_at": dict(list(clash.items())[:3])})
    v = verdict("conversations in seq order, no hole", bad, len(at))
    v["late_live_arrivals"] = late
    return v


def statuses_forward(h):
    """On one connection, a sender's status frames for one message never go backwards.
    Across a reconnect a SENT still in flight may follow a DELIVERED the previous
    connection showed (docs/PROTOCOL.md: statuses mean "at least this far"); those are
    counted in `across_reconnects`, not failed."""
    bad, across = [], 0
    for (u, i), st in h.statuses.items():
        if any(RANK.get(s.get("status"), -1) < 0 for s in st):
            bad.append({"sender": u, "id": i, "statuses": [s.get("status") for s in st]})
            continue
        for a, b in zip(st, st[1:]):
            if RANK[b["status"]] < RANK[a["status"]]:
                if a["s"] == b["s"]:
                    bad.append({"sender": u, "id": i, "s": b["s"],
                                "statuses": [x["status"] for x in st]})
                else:
                    across += 1
    v = verdict("statuses never go backwards on a connection", bad, len(h.statuses))
    v["across_reconnects"] = across
    return v


def delivered_after_receipt(h):
    """DELIVERED (a status frame, or an `accepted` repeat saying so) is never seen before a
    device of the recipient received the message."""
    first = {}
    for u, rs in h.recvs.items():
        for r in rs:
            if r.get("to") == u:
                first.setdefault(r["id"], r["t"])
    claims = [(s["id"], s["t"]) for st in h.statuses.values() for s in st
              if s.get("status") == "DELIVERED"]
    claims += [(a["id"], a["t"]) for acc in h.accepted.values() for a in acc
               if a.get("status") == "DELIVERED"]
    bad = [{"id": i, "delivered_at": t, "first_receipt": first.get(i)}
           for i, t in claims if first.get(i) is None or first[i] > t]
    return verdict("DELIVERED only after a receipt", bad, len(claims))


def refused_not_delivered(h):
    """A send the pod refused every time it was sent (overloaded, store_unavailable, ...)
    and never accepted is never delivered."""
    received = set()
    for u, rs in h.recvs.items():
        received.update((r.get("from"), r.get("payload")) for r in rs if r.get("to") == u)
    bad, n = [], 0
    for key, sends in h.sends.items():
        errs = h.errors.get(key, [])
        if h.accepted.get(key) or len(errs) < len(sends):
            continue
        n += 1
        if key in received:
            bad.append({"send": key, "errors": [e["code"] for e in errs]})
    return verdict("refused sends never delivered", bad, n)


def expected_errors_only(h):
    """The chaos client sends only valid frames: any non-retryable error, undecodable frame
    or answer to a send it does not have is a violation."""
    bad = [e for errs in h.errors.values() for e in errs if e.get("code") not in RETRYABLE]
    bad += h.other
    return verdict("no unexpected error or frame", bad, len(h.events))


def v2_streams_gapless(h):
    """Each v2 user ends the run holding every position 1..max of its stream, one id per
    position and one position per id (received frames and its own `accepted`)."""
    bad = []
    for u in sorted(h.v2_users):
        at = defaultdict(set)
        for r in h.recvs.get(u, []):
            if r.get("pos") is not None:
                at[r["pos"]].add(r["id"])
        for (s, _), acc in h.accepted.items():
            if s == u:
                for a in acc:
                    if a.get("pos") is not None:
                        at[a["pos"]].add(a["id"])
        holes = [p for p in range(1, max(at, default=0) + 1) if p not in at]
        clash = {p: sorted(ids) for p, ids in at.items() if len(ids) > 1}
        where = defaultdict(set)
        for p, ids in at.items():
            for i in ids:
                where[i].add(p)
        moved = {i: sorted(ps) for i, ps in where.items() if len(ps) > 1}
        if holes or clash or moved:
            bad.append({"user": u, "holes": holes[:10], "max": max(at, default=0),
                        "two_ids_at": dict(list(clash.items())[:3]),
                        "two_positions": dict(list(moved.items())[:3])})
    return verdict("v2 streams complete, no hole", bad, len(h.v2_users))


def non_readers_closed(h):
    """A client that stops reading is let go by the pod that holds it (aborted with 4008 or
    4001, then dropped when not even the close frame fits) before the orchestrator gives up
    waiting: it writes `hear` with reason `dropped` when that pod's count of such drops
    rose, `pod_gone` when that pod's process went away first (killed, or exited fenced:
    nothing left to judge), `timeout` when neither happened. An episode the end of the
    traffic cut short is not judged. Reports how many of those devices still read a close
    frame (`close_frames_seen`) and how many episodes a pod's end decided (`pod_gone`)."""
    bad, n, seen, gone, open_at = [], 0, 0, 0, {}
    for e in h.events:
        ev, u = e.get("ev"), e.get("u")
        if ev == "deaf":
            open_at[u] = e["t"]
        elif ev == "hear" and u in open_at:
            n += 1
            reason = e.get("reason")
            gone += reason == "pod_gone"
            if reason not in ("dropped", "pod_gone"):
                bad.append({"device": u, "deaf_at": open_at[u], "reason": reason})
        elif ev == "close" and u in open_at and e.get("by") in ("server", None):
            seen += e.get("code") in (4001, 4008)
            del open_at[u]
    v = verdict("non-reading clients let go", bad, n)
    v["close_frames_seen"] = seen
    v["pod_gone"] = gone
    return v


def settled(h):
    """The client's drain ended with every send accepted and every message received."""
    e = h.end or {}
    bad = [] if e.get("settled") else [{"end": e or "no end event: the client did not finish"}]
    return verdict("drain settled", bad, 1)


def resources(samples, max_rss_mib, max_fds):
    """RSS and open files of every pod process stayed under the bounds."""
    bad = [s for s in samples
           if s.get("rss_kib", 0) > max_rss_mib * 1024 or s.get("fds", 0) > max_fds]
    return verdict(f"pod RSS <= {max_rss_mib} MiB, fds <= {max_fds}", bad, len(samples))


def queues_drained(samples):
    """Queue depths are bounded by construction (bounded channels), so what can go wrong is a
    queue that never empties: a command or hand-off stuck behind a fault. Every pod alive at
    the end was sampled once more after the client's drain settled (`final`), and its store
    queue and shard inboxes must then be empty. Reports the peak seen during the run."""
    queued = [s["queued"] for s in samples if s.get("queued") is not None]
    finals = [s for s in samples if s.get("final")]
    bad = [s for s in finals if s.get("queued") != 0]
    if not finals:
        bad = [{"final": "no sample after the drain: the pods' queues were never read"}]
    v = verdict("queues drained after the traffic", bad, len(finals))
    v["peak_queued"] = max(queued, default=0)
    return v


CHECKS = [one_id_per_send, no_loss, no_phantom, stored_once, no_duplicate_in_session,
          conversations_orderable, statuses_forward, delivered_after_receipt,
          refused_not_delivered, expected_errors_only, v2_streams_gapless, non_readers_closed,
          settled]


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def check(events, samples=None, max_rss_mib=1024, max_fds=4096):
    h = History(events)
    out = [c(h) for c in CHECKS]
    if samples is not None:
        out.append(resources(samples, max_rss_mib, max_fds))
        if any("queued" in s for s in samples):
            out.append(queues_drained(samples))
    return out


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("history")
    ap.add_argument("--resources")
    ap.add_argument("--max-rss-mib", type=int, default=1024)
    ap.add_argument("--max-fds", type=int, default=4096)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    try:
        events = read_lines(a.history)
        samples = read_lines(a.resources) if a.resources else None
    except (OSError, ValueError) as e:
        print(f"check.py: cannot read the history: {e}", file=sys.stderr)
        return 2
    verdicts = check(events, samples, a.max_rss_mib, a.max_fds)
    for v in verdicts:
        mark = "PASS" if v["ok"] else "FAIL"
        extra = "".join(f" ({v[k]} {k.replace('_', ' ')})" for k in EXTRAS if k in v)
        print(f"{mark}  {v['invariant']}: {v['checked']} checked, {v['violations']} violations{extra}")
        for ex in v["examples"]:
            print(f"        {json.dumps(ex)}")
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(verdicts, f, indent=1)
    failed = [v for v in verdicts if not v["ok"]]
    print(f"{len(events)} events; {'VIOLATIONS: ' + str(len(failed)) if failed else 'all invariants hold'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
