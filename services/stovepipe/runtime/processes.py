"""Process plumbing every Stovepipe process and its launchers share.

* :func:`stop_on_signals` — the event a server or worker waits on: set by
  SIGINT or SIGTERM, after which it drains and exits by itself.
* :func:`terminate` / :func:`kill` — the other side: ask a child to stop,
  and kill it (with its process group) when it does not within its bound.
  Children are started with ``start_new_session=True``, so their pid is their
  process group and whatever they started dies with them.
* :func:`free_port` — a loopback port for a child to listen on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket

LOOPBACK = "127.0.0.1"


def stop_on_signals() -> asyncio.Event:
    """An event the running loop sets when this process gets SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return stop


async def kill(process: asyncio.subprocess.Process) -> None:
    """SIGKILL the process's group (a crash, as far as it can tell) and reap it."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            process.kill()  # not a group leader after all
    await process.wait()


async def terminate(process: asyncio.subprocess.Process, timeout_s: float) -> bool:
    """SIGTERM, and :func:`kill` once ``timeout_s`` has passed; returns once it is reaped.

    True when the process exited by itself (its exit code is ``process.returncode``).
    """
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.shield(process.wait()), timeout_s)
    except TimeoutError:
        await kill(process)
        return False
    return True


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on ``host`` that nobody listened on a moment ago.

    Another process may take it before the caller binds it; callers that start a
    server on it retry with a fresh port when the bind fails.
    """
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
