#!/usr/bin/env python3
"""Tests of check.py: a clean history passes every invariant, and each kind of violation
makes exactly its invariant fail (so no check is one that cannot fail)."""

import copy
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check  # noqa: E402


def ev(t, u, s, kind, **kw):
    return dict(t=t, u=u, s=s, ev=kind, **kw)


def clean():
    """u0 (v1) sends two messages to u1 (v2); u1 reconnects once and syncs."""
    return [
        ev(1, "u0", 1, "connect", url="a", since=None),
        ev(2, "u1", 1, "connect", url="a", since=0),
        ev(3, "u0", 1, "send", cmid="u0-1", to="u1", resend=False),
        ev(4, "u0", 1, "accepted", cmid="u0-1", to="u1", id="m1", status="NONE",
           cid="c", seq=1, pos=1),
        ev(5, "u1", 1, "recv", id="m1", **{"from": "u0"}, to="u1", payload="u0-1", cid="c",
           seq=1, pos=1),
        ev(6, "u1", 1, "ack", ids=["m1"]),
        ev(7, "u0", 1, "status", id="m1", status="SENT"),
        ev(8, "u0", 1, "status", id="m1", status="DELIVERED"),
        ev(9, "u0", 1, "send", cmid="u0-2", to="u1", resend=False),
        ev(10, "u0", 1, "error", code="overloaded", cmid="u0-2", id=None),
        ev(11, "u1", 1, "close", by="server", code=1001),
        ev(12, "u0", 1, "send", cmid="u0-2", to="u1", resend=True),
        ev(13, "u0", 1, "accepted", cmid="u0-2", to="u1", id="m2", status="NONE",
           cid="c", seq=2, pos=2),
        ev(14, "u1", 2, "connect", url="a", since=1),
        ev(15, "u1", 2, "recv", id="m2", **{"from": "u0"}, to="u1", payload="u0-2", cid="c",
           seq=2, pos=2),
        ev(16, "u0", 1, "status", id="m2", status="DELIVERED"),
        ev(17, "", 0, "end", settled=True, outbox=0, missing=0),
    ]


def late_recv(id, payload, seq, s=2):
    """One more `message` frame at u1, from u0, after everything in `clean`."""
    return ev(15.5, "u1", s, "recv", id=id, **{"from": "u0"}, to="u1", payload=payload,
              cid="c", seq=seq, pos=seq)


def failing(events):
    return sorted(v["invariant"] for v in check.check(events) if not v["ok"])


def replace(events, at, **kw):
    """The events with the one recorded at time `at` changed by `kw`."""
    out = copy.deepcopy(events)
    for e in out:
        if e["t"] == at:
            e.update(kw)
    return out


def without(events, t):
    return [e for e in events if e["t"] != t]


class CheckerTest(unittest.TestCase):
    def assertOnly(self, events, name):
        self.assertEqual(failing(events), [name])

    def test_a_clean_history_passes(self):
        self.assertEqual(failing(clean()), [])

    def test_a_resend_under_a_second_id(self):
        h = clean() + [ev(13.5, "u0", 1, "accepted", cmid="u0-2", to="u1", id="m3",
                          status="NONE", cid="c", seq=3, pos=3)]
        self.assertIn("one id per send (idempotent resends)", failing(h))

    def test_a_lost_message(self):
        h = without(without(clean(), 15), 16)
        self.assertOnly(h, "no accepted message missing at its recipient")

    def test_a_v2_device_holds_what_it_sent_itself(self):
        note = [ev(13.1, "u1", 1, "send", cmid="u1-1", to="u1", resend=False),
                ev(13.2, "u1", 1, "accepted", cmid="u1-1", to="u1", id="m5", status="NONE",
                   cid="self", seq=1, pos=3)]
        self.assertEqual(failing(clean() + note), [])
        v1 = [dict(e, u="u0", cmid="u0-9", to="u0") for e in note]
        self.assertOnly(clean() + v1, "no accepted message missing at its recipient")

    def test_a_phantom(self):
        h = clean() + [late_recv("m9", "never-sent", 3)]
        self.assertOnly(h, "no message received that was never sent")

    def test_a_message_stored_twice(self):
        h = clean() + [late_recv("m9", "u0-2", 3)]
        self.assertOnly(h, "each send stored once")

    def test_a_duplicate_within_a_connection(self):
        h = clean() + [late_recv("m2", "u0-2", 2)]
        self.assertOnly(h, "no duplicate id within one connection")

    def test_a_repeat_on_a_new_connection_is_fine(self):
        self.assertEqual(failing(clean() + [late_recv("m1", "u0-1", 1)]), [])

    def test_a_late_live_arrival_is_counted_not_failed(self):
        h = clean() + [ev(4.5, "u1", 1, "recv", id="m2", **{"from": "u0"}, to="u1",
                          payload="u0-2", cid="c", seq=2, pos=2)]
        h = without(sorted(h, key=lambda e: e["t"]), 15)
        vs = {v["invariant"]: v for v in check.check(h)}
        v = vs["conversations in seq order, no hole"]
        self.assertEqual((v["ok"], v["late_live_arrivals"]), (True, 1))

    def test_a_hole_in_a_conversation(self):
        h = replace(replace(clean(), 13, seq=3), 15, seq=3)
        self.assertOnly(h, "conversations in seq order, no hole")

    def test_two_messages_at_one_seq(self):
        h = replace(replace(clean(), 13, seq=1), 15, seq=1)
        self.assertOnly(h, "conversations in seq order, no hole")

    def test_a_status_going_backwards(self):
        h = replace(clean(), 7, status="DELIVERED")
        h = replace(h, 8, status="SENT")
        self.assertOnly(h, "statuses never go backwards on a connection")

    def test_a_late_sent_after_a_reconnect_is_counted_not_failed(self):
        h = replace(replace(clean(), 7, status="DELIVERED"), 8, status="SENT", s=2)
        v = {v["invariant"]: v for v in check.check(h)}["statuses never go backwards on a connection"]
        self.assertEqual((v["ok"], v["across_reconnects"]), (True, 1))

    def test_delivered_before_any_receipt(self):
        h = replace(clean(), 16, t=14.5)
        self.assertOnly(h, "DELIVERED only after a receipt")

    def test_a_refused_send_delivered(self):
        h = without(replace(clean(), 12, ev="error", code="store_unavailable"), 13)
        h = [e for e in h if not (e.get("ev") == "status" and e.get("id") == "m2")]
        self.assertIn("refused sends never delivered", failing(h))

    def test_an_unexpected_error(self):
        h = replace(clean(), 10, code="invalid_frame")
        self.assertOnly(h, "no unexpected error or frame")

    def test_a_hole_in_a_v2_stream(self):
        h = replace(clean(), 15, pos=3)
        self.assertOnly(h, "v2 streams complete, no hole")

    def test_an_unsettled_drain(self):
        h = replace(clean(), 17, settled=False)
        self.assertOnly(h, "drain settled")
        self.assertOnly(without(clean(), 17), "drain settled")

    def deaf_episode(self, reason):
        return clean() + [ev(9.1, "u1", 0, "deaf"), ev(9.5, "", 0, "hear", reason=reason),
                          ev(9.6, "u1", 1, "close", by="server", code=4008)]

    def test_a_non_reader_let_go(self):
        h = replace(self.deaf_episode("dropped"), 9.5, u="u1")
        v = {v["invariant"]: v for v in check.check(h)}["non-reading clients let go"]
        self.assertEqual((v["ok"], v["checked"], v["close_frames_seen"]), (True, 1, 1))

    def test_a_non_reader_whose_pod_went_away(self):
        h = replace(self.deaf_episode("pod_gone"), 9.5, u="u1")
        v = {v["invariant"]: v for v in check.check(h)}["non-reading clients let go"]
        self.assertEqual((v["ok"], v["checked"], v["pod_gone"]), (True, 1, 1))

    def test_a_non_reader_the_pod_never_closed(self):
        h = replace(self.deaf_episode("timeout"), 9.5, u="u1")
        self.assertOnly(h, "non-reading clients let go")

    def test_resources_over_the_bound(self):
        samples = [{"pid": 1, "rss_kib": 10_000, "fds": 50}, {"pid": 1, "rss_kib": 99_000, "fds": 50}]
        vs = check.check(clean(), samples, max_rss_mib=64, max_fds=100)
        self.assertEqual([v["invariant"] for v in vs if not v["ok"]],
                         ["pod RSS <= 64 MiB, fds <= 100"])

    def queue_samples(self, final_queued):
        return [{"pid": 1, "rss_kib": 1, "fds": 1, "queued": 0},
                {"pid": 1, "rss_kib": 1, "fds": 1, "queued": 700},
                {"pid": 1, "rss_kib": 1, "fds": 1, "queued": final_queued, "final": True}]

    def test_queues_empty_after_the_drain(self):
        vs = check.check(clean(), self.queue_samples(0))
        q = [v for v in vs if v["invariant"] == "queues drained after the traffic"]
        self.assertEqual(len(q), 1)
        self.assertTrue(q[0]["ok"])
        self.assertEqual(q[0]["peak_queued"], 700)

    def test_a_queue_left_full_after_the_drain(self):
        vs = check.check(clean(), self.queue_samples(3))
        self.assertEqual([v["invariant"] for v in vs if not v["ok"]],
                         ["queues drained after the traffic"])

    def test_queues_never_read_after_the_drain(self):
        samples = self.queue_samples(0)[:2]
        vs = check.check(clean(), samples)
        self.assertEqual([v["invariant"] for v in vs if not v["ok"]],
                         ["queues drained after the traffic"])


if __name__ == "__main__":
    unittest.main()
