"""One Stovepipe API installation per port on a machine.

``stovepipe api --processes N`` binds its N listeners with ``SO_REUSEPORT``,
and with that option any other process of the same user that sets it too
could join the port and take a share of the gates' connections. So before
anything binds, the API takes a lock named for the port: a listening Unix
socket in Linux's abstract namespace. The kernel releases it when the last
process holding it ends (a ``kill -9`` included), there is no file to go
stale, and it lives in the same network namespace as the port it guards.
The API's processes inherit it, so a group whose parent died still holds it.

A second installation finds the name taken, asks the holder who it is
(``SO_PEERCRED``) and fails saying so.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import struct

LOCK_PREFIX = "stovepipe-api-port-"


class ListenerTaken(RuntimeError):
    """Another Stovepipe API already serves this port."""


def lock_name(port: int) -> str:
    return f"{LOCK_PREFIX}{port}"


def take_listener_lock(port: int) -> socket.socket:
    """The lock of ``port``, held while the returned socket (or a copy of it) is open.

    Raises :class:`ListenerTaken` naming the holder's pid when it is taken."""
    lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        lock.bind("\0" + lock_name(port))
    except OSError as exc:
        lock.close()
        if exc.errno != errno.EADDRINUSE:
            raise
        holder = _holder(port)
        who = f" (pid {holder})" if holder else ""
        raise ListenerTaken(
            f"another stovepipe api{who} already serves port {port} on this machine; "
            "stop it or choose another api.listen port"
        ) from None
    lock.listen(1)
    lock.set_inheritable(True)
    return lock


def _holder(port: int) -> int | None:
    """The pid of the process that holds the lock, when it can be asked."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect("\0" + lock_name(port))
        except OSError:
            return None
        with contextlib.suppress(OSError):
            credentials = probe.getsockopt(
                socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")
            )
            pid: int = struct.unpack("3i", credentials)[0]
            return pid
    return None
