"""What a command says when it cannot start: one line naming the problem and the fix.

A new user who forgot a token variable or has no broker running should read
what to do, not a forty-line traceback. ``report`` prints one line on stderr
and keeps the traceback (redacted) in a private file whose path the line
names, so nothing is lost for a bug report and nothing secret reaches a shared
terminal. Failures it does not recognise are still one line, marked as
unexpected.
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from pathlib import Path

from stovepipe.config import ConfigError
from stovepipe.config.errors import SecretUnavailable
from stovepipe.redaction import redact
from stovepipe.storage.errors import StorageUnavailable

EXIT_MISCONFIGURED = 2
EXIT_FAILED = 1


def explain(exc: BaseException) -> tuple[str, str, int]:
    """``(problem, fix, exit code)`` for a failure at start-up."""
    text = redact(" ".join(str(exc).split()))[:400]
    name = type(exc).__name__
    if isinstance(exc, SecretUnavailable):
        return text, "set the variable (or file) the configuration names, then start again", 2
    if isinstance(exc, ConfigError):
        return text, "fix the configuration file, then start again", EXIT_MISCONFIGURED
    if isinstance(exc, StorageUnavailable) or name in ("OperationalError", "InterfaceError"):
        return (
            f"cannot reach the database: {text}",
            "start it, or point storage.url (STOVEPIPE_DATABASE_URL) at one that runs",
            EXIT_FAILED,
        )
    if name in ("KafkaConnectionError", "NoBrokersAvailable") or "bootstrap" in text.lower():
        return (
            f"cannot reach the Kafka broker: {text}",
            "start it, or point kafka.bootstrap_servers (KAFKA_BOOTSTRAP_SERVERS) at one "
            "that runs; `stovepipe up` starts an embedded one when none is configured",
            EXIT_FAILED,
        )
    if isinstance(exc, PermissionError | FileNotFoundError):
        return text, "check the path and its permissions", EXIT_FAILED
    return f"unexpected {name}: {text}", "this is a bug; please report it with the details", 1


def report(command: str, exc: BaseException) -> int:
    """Print the one-line explanation, keep the traceback; the exit code."""
    problem, fix, code = explain(exc)
    details = _keep_traceback(command, exc)
    where = f" (details: {details})" if details else ""
    sys.stderr.write(f"stovepipe {command}: {problem} -- {fix}{where}\n")
    return code


def _keep_traceback(command: str, exc: BaseException) -> Path | None:
    text = redact("".join(traceback.format_exception(exc)))
    slug = "".join(c if c.isalnum() else "-" for c in command)[:40] or "command"
    try:
        fd, name = tempfile.mkstemp(prefix=f"stovepipe-{slug}-", suffix=".log")
        with os.fdopen(fd, "w") as file:  # mkstemp makes it 0600
            file.write(text)
    except OSError:
        return None
    return Path(name)
