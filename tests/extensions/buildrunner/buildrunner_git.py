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
