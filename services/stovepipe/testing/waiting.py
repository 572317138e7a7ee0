"""Wait on a condition with a deadline, never on a fixed sleep."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")


@overload
async def until(
    check: Callable[[], Awaitable[T | None]],
    *,
    timeout_s: float = ...,
    what: str = ...,
    interval_s: float = ...,
) -> T: ...


@overload
async def until(
    check: Callable[[], T | None],
    *,
    timeout_s: float = ...,
    what: str = ...,
    interval_s: float = ...,
) -> T: ...


async def until(
    check: Callable[[], Any],
    *,
    timeout_s: float = 60.0,
    what: str = "condition",
    interval_s: float = 0.05,
) -> Any:
    """Call ``check`` (plain or async) until it returns something truthy, and return that.

    ``TimeoutError`` naming ``what`` once ``timeout_s`` has passed; ``check`` is
    always called at least once, and once more at the deadline.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() >= deadline:
            raise TimeoutError(f"{what}: not within {timeout_s:g}s")
        await asyncio.sleep(min(interval_s, max(0.0, deadline - loop.time())))
