"""Per-target output on disk, capped so a chatty target cannot fill the disk.

The file holds at most about twice the limit: when it grows past that, it is
rewritten with its last ``limit`` bytes. Readers get the last ``limit`` bytes,
which is where a failing build explains itself. Writes are small appends to a
local file, cheap enough to make from the event loop.
"""

from __future__ import annotations

import os
from pathlib import Path

from stovepipe.extensions.buildrunner.model import LogChunk


def read_log(path: Path, limit_bytes: int, *, dropped: bool = False) -> LogChunk:
    """The kept output in ``path`` (empty when there is none); ``dropped`` says older
    output was already cut from the file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = b""
    return LogChunk.tail(data, limit_bytes, dropped=dropped)


class TargetLog:
    """The output of one target of one build; written while it runs, read any time."""

    def __init__(self, path: Path, limit_bytes: int) -> None:
        if limit_bytes <= 0:
            raise ValueError("the log limit must be positive")
        self._path = path
        self._limit = limit_bytes
        self._size = 0
        self._dropped = False
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND)

    def write(self, data: bytes) -> None:
        if self._fd is None:
            return
        os.write(self._fd, data)
        self._size += len(data)
        if self._size > 2 * self._limit:
            self._keep_tail()

    def _keep_tail(self) -> None:
        assert self._fd is not None
        with self._path.open("rb") as reader:
            reader.seek(-self._limit, os.SEEK_END)
            tail = reader.read()
        os.ftruncate(self._fd, 0)
        os.write(self._fd, tail)
        self._size = len(tail)
        self._dropped = True

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @property
    def dropped(self) -> bool:
        """Whether older output was cut from the file to keep it under the cap."""
        return self._dropped

    def read(self) -> LogChunk:
        return read_log(self._path, self._limit, dropped=self._dropped)
