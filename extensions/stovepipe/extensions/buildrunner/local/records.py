"""Build records: what the runner knows about each build, on disk, so a restart keeps it.

One JSON file per build, ``<work_dir>/records/<build id>.json``, holding the
trigger (source, URIs, project, targets, idempotency key), the build's state
and message, one result per target (state, exit code, duration, log file) and
how often a crash of the runner interrupted it. A record is replaced whole:
written to a temporary file in the same directory, fsynced, renamed over the
old one, and the directory fsynced, so after a crash a record is either the
old one or the new one, never a torn mix.

A record that cannot be read (a disk error, a hand edit, a newer format) is
left where it is for an operator and reported in the log; its build is
unknown to the new process, which core treats as a lost result (never green).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stovepipe.extensions.buildrunner.model import (
    BuildSource,
    BuildState,
    TargetSpec,
    TargetState,
    TriggerSpec,
)

_log = logging.getLogger(__name__)

FORMAT = 1
BUILD_ID = re.compile(r"build-[0-9a-f]{32}")
_SUFFIX = ".json"
_TEMPORARY = ".tmp"


class RecordError(Exception):
    """A record file that does not hold a record this version can read."""


@dataclass(frozen=True, kw_only=True)
class TargetRecord:
    """One target's result; ``log`` is relative to the work directory (None: never started)."""

    state: TargetState
    exit_code: int = 0
    duration_seconds: float = 0.0
    log: str | None = None
    log_truncated: bool = False


@dataclass(frozen=True, kw_only=True)
class BuildRecord:
    """Everything needed to answer for a build, or to run it again, after a restart.

    ``crashes`` counts the runs of this build that a crash of the runner cut
    short; ``stopped`` says a graceful stop of the runner cut the last one short
    (which does not count); ``finished_at`` (wall clock) orders finished builds
    for eviction.
    """

    build_id: str
    spec: TriggerSpec
    state: BuildState
    message: str = ""
    targets: tuple[TargetRecord, ...]
    crashes: int = 0
    stopped: bool = False
    finished_at: float | None = None


def _encode(record: BuildRecord) -> dict[str, Any]:
    spec = record.spec
    return {
        "format": FORMAT,
        "build_id": record.build_id,
        "state": record.state.value,
        "message": record.message,
        "crashes": record.crashes,
        "stopped": record.stopped,
        "finished_at": record.finished_at,
        "spec": {
            "source": {
                "queue": spec.source.queue,
                "repository": spec.source.repository,
                "ref": spec.source.ref,
            },
            "base_uri": spec.base_uri,
            "head_uri": spec.head_uri,
            "project": spec.project,
            "idempotency_key": spec.idempotency_key,
            "targets": [
                {
                    "name": t.name,
                    "command": t.command,
                    "paths": list(t.paths),
                    "timeout_seconds": t.timeout_seconds,
                    "network": t.network,
                }
                for t in spec.targets
            ],
        },
        "targets": [
            {
                "state": t.state.value,
                "exit_code": t.exit_code,
                "duration_seconds": t.duration_seconds,
                "log": t.log,
                "log_truncated": t.log_truncated,
            }
            for t in record.targets
        ],
    }


def _decode(data: dict[str, Any]) -> BuildRecord:
    if data.get("format") != FORMAT:
        raise RecordError(f"record format {data.get('format')!r}, this runner reads {FORMAT}")
    spec = data["spec"]
    source = spec["source"]
    record = BuildRecord(
        build_id=str(data["build_id"]),
        state=BuildState(data["state"]),
        message=str(data["message"]),
        crashes=int(data["crashes"]),
        stopped=bool(data["stopped"]),
        finished_at=None if data["finished_at"] is None else float(data["finished_at"]),
        spec=TriggerSpec(
            source=BuildSource(
                queue=str(source["queue"]),
                repository=str(source["repository"]),
                ref=str(source["ref"]),
            ),
            base_uri=str(spec["base_uri"]),
            head_uri=str(spec["head_uri"]),
            project=str(spec["project"]),
            idempotency_key=str(spec["idempotency_key"]),
            targets=tuple(
                TargetSpec(
                    name=str(t["name"]),
                    command=str(t["command"]),
                    paths=tuple(str(p) for p in t["paths"]),
                    timeout_seconds=(
                        None if t["timeout_seconds"] is None else float(t["timeout_seconds"])
                    ),
                    network=bool(t["network"]),
                )
                for t in spec["targets"]
            ),
        ),
        targets=tuple(
            TargetRecord(
                state=TargetState(t["state"]),
                exit_code=int(t["exit_code"]),
                duration_seconds=float(t["duration_seconds"]),
                log=None if t["log"] is None else str(t["log"]),
                log_truncated=bool(t["log_truncated"]),
            )
            for t in data["targets"]
        ),
    )
    if not BUILD_ID.fullmatch(record.build_id):
        raise RecordError(f"{record.build_id!r} is not a build id")
    if len(record.targets) != len(record.spec.targets):
        raise RecordError("the record has a result for a different number of targets")
    return record


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class RecordStore:
    """The records directory. Methods block on disk I/O: call them from a worker thread.

    Writes to one build's record must not overlap (the runner serialises them
    per build); writes to different builds may.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, build_id: str) -> Path:
        if not BUILD_ID.fullmatch(build_id):
            raise ValueError(f"{build_id!r} is not a build id")
        return self.directory / f"{build_id}{_SUFFIX}"

    def save(self, record: BuildRecord) -> None:
        """Replace the build's record atomically and durably."""
        path = self._path(record.build_id)
        temporary = path.with_name(path.name + _TEMPORARY)
        data = json.dumps(_encode(record), sort_keys=True).encode()
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise
        _fsync_directory(self.directory)

    def remove(self, build_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(build_id).unlink()
        _fsync_directory(self.directory)

    def load(self) -> list[BuildRecord]:
        """Every readable record; half-written temporary files are removed."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        records: list[BuildRecord] = []
        for path in sorted(self.directory.iterdir()):
            if path.name.endswith(_TEMPORARY):
                path.unlink()
                continue
            if not path.name.endswith(_SUFFIX):
                continue
            try:
                record = _decode(json.loads(path.read_bytes()))
                if path.name != f"{record.build_id}{_SUFFIX}":
                    raise RecordError(f"it names build {record.build_id}")
            except (OSError, ValueError, KeyError, TypeError, RecordError) as exc:
                _log.error("ignoring build record %s: %s", path, exc)
                continue
            records.append(record)
        return records
