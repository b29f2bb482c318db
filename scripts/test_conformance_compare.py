#!/usr/bin/env python3
"""Tests of conformance_compare.py's strict check (run by scripts/conformance.sh)."""

import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import conformance_compare as cc  # noqa: E402

OK = {"behavior": "OK", "behaviorClose": "OK", "remoteCloseCode": 1000}


def case(**kw):
    return dict(OK, **kw)


class StrictCheck(unittest.TestCase):
    def test_identical_results_pass(self):
        self.assertEqual(cc.compare({"1.1.1": case()}, {"1.1.1": case()}), [])

    def test_worse_better_or_a_new_close_code_all_fail(self):
        expected = {"1": case(behavior="NON-STRICT"), "2": case(), "3": case()}
        report = {"1": case(), "2": case(behavior="NON-STRICT"), "3": case(remoteCloseCode=1002)}
        problems = cc.compare(report, expected)
        self.assertEqual([p.split(":")[0] for p in problems], ["1", "2", "3"])
        self.assertIn("behavior NON-STRICT -> OK", problems[0])
        self.assertIn("remoteCloseCode 1000 -> 1002", problems[2])

    def test_missing_and_unlisted_cases_fail(self):
        problems = cc.compare({"2": case()}, {"1": case()})
        self.assertEqual(len(problems), 2)
        self.assertIn("missing", problems[0])
        self.assertIn("not in the expected", problems[1])

    def test_a_failing_case_fails_even_when_recorded_as_failing(self):
        failing = case(behavior="FAILED")
        self.assertIn("does not pass", cc.compare({"1": failing}, {"1": failing})[0])

    def test_a_field_left_out_is_not_checked(self):
        want = {"behavior": "OK", "behaviorClose": "OK"}
        self.assertEqual(cc.compare({"1": case(remoteCloseCode=1006)}, {"1": want}), [])

    def test_update_records_failing_cases_and_keeps_left_out_fields_out(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "expected.json")
            with open(path, "w") as f:
                json.dump({"1": {"behavior": "OK", "behaviorClose": "OK"}}, f)
            report = {"1": case(remoteCloseCode=1006), "2": case(behavior="FAILED")}
            cc.write_expected(path, report)
            written = cc.load_expected(path)
        self.assertEqual(written["1"], {"behavior": "OK", "behaviorClose": "OK"})
        self.assertEqual(written["2"]["behavior"], "FAILED")
        self.assertTrue(cc.compare(report, written), "the recorded failure still fails")


if __name__ == "__main__":
    unittest.main()
