#!/usr/bin/env python3
"""Markdown summary of one chaos run's output directory, for perf/RESULTS.md: faults by
kind, operations checked, verdicts, and every pod's RSS and open files over time.

    summarize.py DIR [--window-secs 300]
"""

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path


def lines(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir")
    ap.add_argument("--window-secs", type=int, default=300)
    a = ap.parse_args(argv)
    d = Path(a.dir)
    v = json.loads((d / "verdicts.json").read_text())
    ops = Counter(e["ev"] for e in lines(d / "history.jsonl"))
    print(f"mode {v['mode']}, seed {v['seed']}")
    print("\nfaults: " + ", ".join(f"{k} {n}" for k, n in sorted(v["faults"].items())))
    print(f"total {sum(v['faults'].values())}")
    print("\noperations: " + ", ".join(f"{k} {ops[k]}" for k in
                                      ("send", "accepted", "recv", "ack", "status", "connect")))
    print("\n| invariant | checked | violations |\n|---|---|---|")
    for x in v["verdicts"]:
        print(f"| {x['invariant']} | {x['checked']} | {x['violations']} |")
    samples = lines(d / "resources.jsonl")
    t0 = min(s["t"] for s in samples)
    win = defaultdict(lambda: defaultdict(list))
    for s in samples:
        win[int((s["t"] - t0) // a.window_secs)][s["pod"]].append(s)
    pods = sorted({s["pod"] for s in samples})
    print("\n| minutes | " + " | ".join(f"pod {p} RSS MiB (min–max) | fds max" for p in pods) + " |")
    print("|---|" + "---|---|" * len(pods))
    for w in sorted(win):
        cells = []
        for p in pods:
            ss = win[w][p]
            if not ss:
                cells += ["—", "—"]
                continue
            rss = [s["rss_kib"] // 1024 for s in ss]
            cells += [f"{min(rss)}–{max(rss)}", str(max(s["fds"] for s in ss))]
        m = w * a.window_secs // 60
        print(f"| {m}–{m + a.window_secs // 60} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
