"""Real git repositories and process probes for the BuildRunner tests."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path


def git(*args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True, timeout=60
    )
    return result.stdout.strip()


class GitRepo:
    """A throwaway repository on ``main`` that tests commit files to."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True)
        git("init", "--quiet", "--initial-branch=main", cwd=path)

    def commit(self, files: dict[str, str], message: str = "change") -> str:
        """Write ``files`` (relative path -> content), commit everything; the new sha."""
        for relative, content in files.items():
            target = self.path / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        git("add", "--all", cwd=self.path)
        git("commit", "--quiet", "--allow-empty", "-m", message, cwd=self.path)
        return git("rev-parse", "HEAD", cwd=self.path)

    def touch(self, *paths: str) -> dict[str, str]:
        """New content for each path, so the next commit changes exactly these."""
        return {p: f"{uuid.uuid4()}\n" for p in paths}


def process_alive(pid: int) -> bool:
    """Whether ``pid`` still runs; a zombie (dead, not yet reaped by init) does not."""
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


def read_text(path: Path) -> str:
    """Small files the tests inspect; a sync helper keeps blocking I/O out of coroutines."""
    return path.read_text()


def listing(path: Path) -> list[str]:
    """Names under ``path`` (empty when it does not exist)."""
    return sorted(p.name for p in path.iterdir()) if path.exists() else []


def tree_size(path: Path) -> int:
    """Bytes held by the files under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def processes_with(token: str, *, program: str | None = None) -> list[int]:
    """Live processes (zombies excluded) whose command line contains ``token``;
    with ``program``, only those running it (``argv[0]``), not bwrap or a shell
    that merely carries the token in its arguments.

    Seen from the host, so it finds processes inside a sandbox's pid namespace
    too; tokens are made unique per test (``unique_sleep``) so other work on the
    machine never matches.
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
