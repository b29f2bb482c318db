#!/usr/bin/env python3
"""Compare a kosoku (Autobahn) report against conformance/expected.json.

Usage:
    conformance_compare.py REPORT_DIR EXPECTED_JSON            # check; exit 1 on regression
    conformance_compare.py REPORT_DIR EXPECTED_JSON --update   # rewrite EXPECTED_JSON

REPORT_DIR is kosoku's `-o` directory, or a directory of several (one per kosoku run).
kosoku writes each like Autobahn does:
`index.json` maps agent -> case id -> {behavior, behaviorClose, remoteCloseCode,
duration, reportfile}, and `reportfile` (in the same directory) holds the case's details.

EXPECTED_JSON maps case id -> {"behavior", "behaviorClose", "remoteCloseCode"} (a bare
string is accepted as shorthand for {"behavior": ...}); a field left out is not checked
(conformance/README.md says which and why). `--update` records every case of the report,
failing ones included, and keeps out the fields the current file leaves out.

The check is strict: the run fails when a case is missing from the report, when the report
has a case the expected file does not list, when any recorded field differs (worse *or
better*: an intended change goes through `--update` and a reviewed diff), or when a case
does not pass (behavior OK, NON-STRICT or INFORMATIONAL; close OK or INFORMATIONAL), even
one recorded as failing. So `--update` cannot turn a regression into a passing run.
"""

from __future__ import annotations

import glob
import json
import os
import sys

PASSING_BEHAVIOR = {"OK", "NON-STRICT", "INFORMATIONAL"}
PASSING_CLOSE = {"OK", "INFORMATIONAL"}
WORST = 99


def case_key(case_id: str) -> list[int]:
    return [int(p) if p.isdigit() else WORST for p in case_id.split(".")]


def load_report(report_dir: str) -> dict[str, dict]:
    """Cases of REPORT_DIR/index.json, or of every REPORT_DIR/*/index.json (one kosoku run
    per subdirectory). Each entry gains `dir`, where its `reportfile` is."""
    top = os.path.join(report_dir, "index.json")
    if os.path.exists(top):
        paths = [top]
    else:
        paths = sorted(glob.glob(os.path.join(report_dir, "*", "index.json")))
    cases: dict[str, dict] = {}
    for path in paths:
        try:
            with open(path) as f:
                index = json.load(f)
        except (OSError, ValueError) as e:
            sys.exit(f"conformance: cannot read kosoku's report {path}: {e}")
        for agent_cases in index.values():  # One agent: the server under test.
            for case_id, entry in agent_cases.items():
                cases[case_id] = dict(entry, dir=os.path.dirname(path))
    return cases


def load_expected(path: str) -> dict[str, dict]:
    try:
        with open(path) as f:
            raw = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"conformance: cannot read expected results {path}: {e}")
    return {k: ({"behavior": v} if isinstance(v, str) else v) for k, v in raw.items()}


def passes(entry: dict) -> bool:
    return (
        entry["behavior"] in PASSING_BEHAVIOR
        and entry["behaviorClose"] in PASSING_CLOSE
    )


def describe(entry: dict) -> str:
    return (
        f"behavior={entry.get('behavior')} close={entry.get('behaviorClose')} "
        f"closeCode={entry.get('remoteCloseCode')}"
    )


def failure_text(entry: dict) -> str:
    """kosoku's explanation of a case's verdicts, from its detail report."""
    try:
        with open(os.path.join(entry["dir"], entry["reportfile"])) as f:
            detail = json.load(f)
    except (OSError, ValueError, KeyError):
        return "(no detail report)"
    parts = [f"result: {detail.get('result')}", f"close: {detail.get('resultClose')}"]
    if detail.get("wasNotCleanReason"):
        parts.append(f"not clean: {detail['wasNotCleanReason']}")
    return "; ".join(parts)


def write_expected(path: str, report: dict[str, dict]) -> None:
    # A field the current file leaves out of a case stays out: it is unchecked on purpose
    # (a timing-dependent close code; see conformance/README.md).
    old = load_expected(path) if os.path.exists(path) else {}
    every = sorted(report, key=case_key)
    passing = [k for k in every if passes(report[k])]
    lines = []
    for case_id in every:
        v = report[case_id]
        entry = {
            "behavior": v["behavior"],
            "behaviorClose": v["behaviorClose"],
            "remoteCloseCode": v.get("remoteCloseCode"),
        }
        if case_id in old:
            entry = {k: val for k, val in entry.items() if k == "behavior" or k in old[case_id]}
        lines.append(f"  {json.dumps(case_id)}: {json.dumps(entry)}")
    with open(path, "w") as f:
        f.write("{\n" + ",\n".join(lines) + "\n}\n")
    failing = [k for k in every if k not in passing]
    print(f"conformance: wrote {len(every)} cases ({len(passing)} passing) to {path}")
    if failing:
        print(
            f"conformance: recorded {len(failing)} FAILING cases, which fail every check: "
            f"{', '.join(failing)}"
        )


def section_summary(report: dict[str, dict]) -> str:
    sections: dict[str, list[int]] = {}
    for case_id, v in report.items():
        s = sections.setdefault(case_id.split(".")[0], [0, 0])
        s[0 if passes(v) else 1] += 1
    return "  ".join(
        f"{sec}.*: {ok}/{ok + bad}"
        for sec, (ok, bad) in sorted(sections.items(), key=lambda kv: case_key(kv[0]))
    )


FIELDS = ("behavior", "behaviorClose", "remoteCloseCode")


def compare(report: dict[str, dict], expected: dict[str, dict]) -> list[str]:
    """Every way the report differs from the expected results, one line per case."""
    problems: list[str] = []
    for case_id in sorted(set(expected) | set(report), key=case_key):
        want, got = expected.get(case_id), report.get(case_id)
        if got is None:
            problems.append(f"{case_id}: missing from kosoku's report (expected {describe(want)})")
            continue
        if want is None:
            problems.append(f"{case_id}: not in the expected results ({describe(got)})")
            continue
        reasons = [
            f"{field} {want[field]} -> {got.get(field)}"
            for field in FIELDS
            if field in want and got.get(field) != want[field]
        ]
        if not passes(got):
            reasons.append("does not pass")
        if reasons:
            problems.append(f"{case_id}: {', '.join(reasons)}\n      {failure_text(got)}")
    return problems


def main(argv: list[str]) -> int:
    args = [a for a in argv if not a.startswith("--")]
    update = "--update" in argv
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    report_dir, expected_path = args
    report = load_report(report_dir)
    if not report:
        print("conformance: FAILED: kosoku's report holds no cases", file=sys.stderr)
        return 1
    if update:
        write_expected(expected_path, report)
        return 0
    expected = load_expected(expected_path)

    regressions = compare(report, expected)
    total = len(report)
    n_pass = sum(1 for v in report.values() if passes(v))
    print(f"conformance: {n_pass}/{total} cases pass; by section: {section_summary(report)}")
    if regressions:
        print(
            f"conformance: FAILED: {len(regressions)} case(s) changed, failing, missing or "
            f"unlisted (an intended change: --update, then review the diff of {expected_path}):",
            file=sys.stderr,
        )
        for line in regressions:
            print(f"  {line}", file=sys.stderr)
        return 1
    print(f"conformance: OK: no regression against {len(expected)} expected cases")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
