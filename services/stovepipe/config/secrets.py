"""Read the secrets the configuration names; never echo their values.

The file only says *where* a secret lives (an environment variable or a file);
the value is read when a component needs it, so a config dump, a log line or
an error can never contain it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from stovepipe.config.errors import SecretUnavailable


@dataclass(frozen=True)
class SecretRef:
    """Where one secret lives: exactly one of ``env`` or ``file``; ``owner`` names its user."""

    owner: str
    env: str | None = None
    file: str | None = None


class HasSecret(Protocol):
    def secret_ref(self) -> SecretRef: ...


def resolve_secret(holder: HasSecret | SecretRef, env: Mapping[str, str] | None = None) -> str:
    """The secret ``holder`` names, from ``env`` (default: the process environment) or a file.

    Raises ``SecretUnavailable`` naming the variable or file, never a value.
    """
    ref = holder if isinstance(holder, SecretRef) else holder.secret_ref()
    if ref.env is not None:
        value = (os.environ if env is None else env).get(ref.env, "")
        if not value:
            raise SecretUnavailable(
                ref.owner, [f"environment variable {ref.env} is not set or is empty"]
            )
        return value
    if ref.file is None:
        raise SecretUnavailable(ref.owner, ["names neither an environment variable nor a file"])
    path = Path(ref.file)
    try:
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise SecretUnavailable(ref.owner, [f"secret file {path} does not exist"]) from None
    except UnicodeDecodeError:
        raise SecretUnavailable(ref.owner, [f"secret file {path} is not UTF-8 text"]) from None
    except OSError as exc:
        raise SecretUnavailable(
            ref.owner, [f"cannot read secret file {path}: {exc.strerror}"]
        ) from None
    if not value:
        raise SecretUnavailable(ref.owner, [f"secret file {path} is empty"])
    return value
