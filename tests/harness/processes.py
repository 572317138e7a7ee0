"""Looking at processes from outside: is it alive, which pid did it write down, which
processes carry a token, as whom they run."""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def process_alive(pid: int) -> bool:
    """Whether ``pid`` still runs; a zombie (dead, not yet reaped) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return fields[0] != "Z"


def read_pid(path: Path) -> int | None:
    """The pid a helper script wrote to ``path``, once it has."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text else None


def processes_with(token: str, *, program: str | None = None) -> list[int]:
    """Live processes (zombies excluded) whose command line contains ``token``;
    with ``program``, only those running it (``argv[0]``), not bwrap or a shell
    that merely carries the token in its arguments.

    Seen from the host, so it finds processes inside a sandbox's pid namespace
    too; tokens are made unique per test (:func:`unique_sleep`) so other work on
    the machine never matches.
    """
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if program is not None and argv[0].decode(errors="replace") != program:
            continue
        if token in b" ".join(argv).decode(errors="replace") and process_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def process_uid(pid: int) -> int:
    """The real uid of ``pid`` as the host sees it."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


def unique_sleep(seconds: int) -> str:
    """``sleep`` with a duration no other process on the machine uses, to find it by."""
    return f"sleep {seconds}.{uuid.uuid4().int % 10**9:09d}"
