"""Process-wide logging: one line per event, component name first, secrets redacted."""

from __future__ import annotations

import logging
import os
import sys

from stovepipe.redaction import redact


class RedactingFormatter(logging.Formatter):
    """Masks anything that looks like a credential, whoever logged it."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging(component: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        RedactingFormatter(f"%(asctime)s {component} %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(os.environ.get("STOVEPIPE_LOG_LEVEL", "INFO").upper())
    for noisy in ("aiokafka", "faststream"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
