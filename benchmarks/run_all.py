"""``make bench``: run every benchmark and print one table of the figures against their goals.

Each benchmark is its own process and prints its detail as it goes, then
``RESULT <name> <value> [goal<op><number>]`` lines; this collects those lines
into one table. Figures are ratios against references timed in the same run
wherever the issue defines one (the machine is shared, so absolute times are
read as context only). Nothing here is a test: a goal not met is reported, not
failed.

    .venv/bin/python benchmarks/run_all.py [--quick] [--only TEXT ...]
"""

from __future__ import annotations

import argparse
import operator
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

_RESULT = re.compile(r"^RESULT (\S+) (\S+)(?: goal(<=|>=|<|>)(\S+))?$")
_OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}


def runs(quick: bool) -> list[tuple[str, list[str]]]:
    seconds = "4" if quick else "10"
    return [
        ("one head vs floor", ["pipeline_latency.py", "--heads", "8" if quick else "20"]),
        (
            "throughput, 100 Queues, git + local runner",
            ["throughput.py", "--queues", "20" if quick else "100"],
        ),
        (
            "throughput, 1,000 Queues, git + local runner",
            ["throughput.py", "--queues", "100" if quick else "1000"],
        ),
        (
            "throughput, 100 Queues, no-op extensions",
            ["throughput.py", "--queues", "20" if quick else "100", "--extensions", "noop"],
        ),
        (
            "throughput, 100 Queues, no-op extensions, reference: one process per stage, "
            "one record per partition at a time",
            [
                "throughput.py",
                "--queues",
                "20" if quick else "100",
                "--extensions",
                "noop",
                "--per-stage-workers",
                "--max-in-flight",
                "1",
            ],
        ),
        (
            "throughput, 1,000 Queues, no-op extensions",
            ["throughput.py", "--queues", "100" if quick else "1000", "--extensions", "noop"],
        ),
        ("gate path", ["gate_path.py", "--seconds", seconds]),
        (
            "gate path, stovepipe api --processes 2",
            ["gate_path.py", "--seconds", seconds, "--api-processes", "2"],
        ),
        ("git SourceControl per head", ["sourcecontrol_git.py", "--seconds", seconds]),
        ("idle stovepipe up", ["idle_cpu.py", "--window", "15" if quick else "30"]),
        ("WatchEvents streams", ["watch_streams.py"]),
        ("redaction linearity", ["redaction_linearity.py"]),
        ("console pages, 1,000 commits", ["console_pages.py"]),
        ("hook delivery", ["hook_delivery.py"]),
        ("ingest latency: commit -> Request", ["ingest_latency.py"]),
        ("poller cadence, 1,000 Queues", ["poller_cadence.py"]),
        (
            "scale-out, one and three replicas per stage",
            ["scale_out.py", *(["--heads", "120", "--queues", "12"] if quick else [])],
        ),
        ("Phase 2 latency: whole-repo fact -> project facts", ["project_latency.py"]),
        ("tracing + metrics overhead", ["telemetry_overhead.py"]),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller runs, for a smoke check")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="TEXT",
        help="run only the benchmarks whose title contains TEXT (repeatable)",
    )
    args = parser.parse_args()
    chosen = [
        (title, argv)
        for title, argv in runs(args.quick)
        if not args.only or any(text in title for text in args.only)
    ]
    if not chosen:
        titles = "\n  ".join(title for title, _ in runs(args.quick))
        parser.error(f"no benchmark title contains {args.only}; the titles:\n  {titles}")
    rows: list[tuple[str, str, str, str]] = []
    for title, argv in chosen:
        print(f"\n=== {title}: {' '.join(argv)}", flush=True)
        done = subprocess.run(
            [sys.executable, str(HERE / argv[0]), *argv[1:]],
            capture_output=True,
            text=True,
            check=False,
        )
        for line in done.stdout.splitlines():
            match = _RESULT.match(line.strip())
            if match is None:
                print(f"  {line}")
                continue
            name, value, op, goal = match.groups()
            met = "-"
            if op is not None:
                met = "met" if _OPS[op](float(value), float(goal)) else "NOT met"
            rows.append((name, value, f"{op}{goal}" if op else "", met))
        if done.returncode != 0:
            tail = "\n".join(done.stderr.strip().splitlines()[-5:])
            print(f"  failed (exit {done.returncode}):\n{tail}")
            rows.append((title, "failed", "", "NOT met"))
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure':{width}}  {'figure':>10}  {'goal':>8}  result")
    for name, value, goal, met in rows:
        print(f"{name:{width}}  {value:>10}  {goal:>8}  {met}")


if __name__ == "__main__":
    main()
