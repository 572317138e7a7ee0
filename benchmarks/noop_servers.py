"""The no-op SourceControl and BuildRunner in a process of their own, for ``throughput.py``.

They run apart from the benchmark's client so that neither slows the other and
their CPU is counted on its own line. Protocol on stdin/stdout, one line each:

- on start, prints ``READY <sourcecontrol address> <buildrunner address>`` once
  every branch ``q0`` … ``q<N-1>`` of ``--repository`` has one commit;
- ``push`` makes one new (green) head on every branch and answers ``PUSHED``;
- end of input stops the servers.

    .venv/bin/python benchmarks/noop_servers.py --repository /tmp/x --branches 100
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))  # the shared harness: tests/harness

from harness.noop_extensions import noop_extensions  # noqa: E402


def branch_names(count: int) -> list[str]:
    return [f"q{i}" for i in range(count)]


async def serve(repository: str, branches: list[str]) -> None:
    async with noop_extensions() as ext:
        histories = [ext.source_control.history(repository, b) for b in branches]
        for history in histories:
            history.commit()
        print(f"READY {ext.source_control_address} {ext.build_runner_address}", flush=True)
        while line := await asyncio.to_thread(sys.stdin.readline):
            if line.strip() == "push":
                for history in histories:
                    history.commit()
                print("PUSHED", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repository", required=True)
    parser.add_argument("--branches", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.repository, branch_names(args.branches)))


if __name__ == "__main__":
    main()
