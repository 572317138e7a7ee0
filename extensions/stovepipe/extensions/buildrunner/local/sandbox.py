"""Where a target runs: in a bubblewrap sandbox, or (trusted code only) as a plain process.

A build runs code from the commit under test, and that code must not be able
to change the verdict another way than by its exit code: rewrite Stovepipe's
database, read the admin token from a process's environment, signal the
runner. ``Bubblewrap`` runs each target as::

    prlimit <limits> -- bwrap <namespaces> <mounts> --
        [setpriv <drop to the build user> --] /bin/sh -c <command>

- namespaces: new pid (its own ``/proc``: no other process, no other
  environment is visible), ipc, uts, cgroup, and network unless the target
  asks for it (``TargetSpec.network``; without it only a loopback device
  exists, so neither the internet nor anything listening on the host's
  127.0.0.1 is reachable);
- mounts: the whole filesystem read-only; a fresh ``/dev``, ``/proc`` and
  ``/dev/shm``; an empty ``/run`` (no daemon sockets); ``/tmp`` is the build's
  own directory; the runner's work directory and every hidden path (Stovepipe's
  state directory) covered by an empty tmpfs, so they are not visible at all;
  then, on top, the build's checkout and home read-write and the repository
  mirror read-only (so ``git`` works in the checkout);
- when the runner is root, the target runs as an unprivileged build user
  (``nobody`` by default) with no capabilities and ``no_new_privs``: bwrap
  does the mounts as root, then ``setpriv`` drops. The build's directories
  are handed to that user first. When the runner is not root, bwrap runs in a
  user namespace as the runner's own user, and nested user namespaces are
  disabled;
- limits (``prlimit``): processes, file size, open files, no core dumps; the
  runner's timeout still applies;
- ``--die-with-parent``: when the runner dies, even by SIGKILL, every process
  of its sandboxes is killed with it. bwrap arms that in its pid 1 a moment
  after it starts, so a runner killed in that moment can leave a sandbox
  behind; ``kill_orphaned_sandboxes`` finds those at the next start by the
  checkout path in their arguments and kills them (pid 1 of a sandbox takes
  every process of the sandbox with it).

Before a build's first target the sandbox is started once with ``true`` with
that build's mounts, so a sandbox that cannot start errors the build
(``SandboxError``) instead of failing a target and blaming the code.

``Unsandboxed`` runs ``/bin/sh -c <command>`` directly, as the runner's user;
it exists for code the operator trusts (the demo's sample repository) and is
only used when the runner is started with ``--no-sandbox``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import shutil
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

INSTALL_HINT = "install bubblewrap (apt-get install bubblewrap)"
_SHELL = ("/bin/sh", "-c")
_PROBE_TIMEOUT_S = 30.0
_SHM_BYTES = 256 * 1024 * 1024
_ERROR_LINES = 3


class SandboxError(Exception):
    """The sandbox cannot run this build; the message is safe to show in a report."""


@dataclass(frozen=True, kw_only=True)
class BuildPaths:
    """The directories one build's targets see, at the same paths inside the sandbox
    (absolute, without symlinks)."""

    work_dir: Path
    checkout: Path
    home: Path
    tmp: Path
    mirror: Path


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Per-target resource limits (soft and hard), each capped at the runner's own."""

    processes: int
    file_size_bytes: int
    open_files: int


class Sandbox(Protocol):
    async def enter(self, paths: BuildPaths) -> None:
        """Make the build's directories usable by its targets and check the sandbox
        starts with them; ``SandboxError`` when it cannot."""
        ...

    def argv(self, command: str, paths: BuildPaths, *, network: bool) -> list[str]:
        """The process to start for one target."""
        ...


class Unsandboxed:
    """Targets as plain processes of the runner's user: for trusted code only."""

    async def enter(self, paths: BuildPaths) -> None:
        return None

    def argv(self, command: str, paths: BuildPaths, *, network: bool) -> list[str]:
        return [*_SHELL, command]


def _capped(value: int, limit: int) -> int:
    _, hard = resource.getrlimit(limit)
    return value if hard == resource.RLIM_INFINITY else min(value, hard)


def _git_admin_dir(checkout: Path) -> Path | None:
    """The worktree's own directory inside the mirror (``.git`` of a worktree is a file)."""
    try:
        text = (checkout / ".git").read_text()
    except OSError:
        return None
    if not text.startswith("gitdir:"):
        return None
    return Path(text.removeprefix("gitdir:").strip())


def _give_to(paths: list[Path], uid: int, gid: int) -> None:
    for top in paths:
        os.lchown(top, uid, gid)
        for root, dirs, files in os.walk(top):
            for name in (*dirs, *files):
                os.lchown(os.path.join(root, name), uid, gid)


def kill_orphaned_sandboxes(builds_dir: Path) -> list[int]:
    """SIGKILL the bwrap processes whose sandbox is a checkout under ``builds_dir``;
    their pids. Only call it when no build of this runner is running."""
    prefix = f"{builds_dir.resolve()}/"
    killed = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = [
                a.decode(errors="replace") for a in (entry / "cmdline").read_bytes().split(b"\0")
            ]
        except OSError:
            continue
        if Path(argv[0]).name != "bwrap":
            continue
        chdir = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--chdir"]
        if chdir and chdir[0].startswith(prefix):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
    return killed


def _last_lines(data: bytes) -> str:
    lines = data.decode(errors="replace").strip().splitlines()[-_ERROR_LINES:]
    return "; ".join(lines)


class Bubblewrap:
    """Targets in a bwrap sandbox (see the module docstring for what it allows)."""

    def __init__(
        self,
        *,
        limits: Limits,
        hidden: tuple[Path, ...] = (),
        build_user: tuple[int, int] = (65534, 65534),
        executable: str = "bwrap",
    ) -> None:
        self._limits = limits
        self._hidden = tuple(p.resolve() for p in hidden)
        self._build_user = build_user
        self._executable = executable
        self._as_root = os.geteuid() == 0

    def _tools(self) -> tuple[str, str, str | None]:
        bwrap = shutil.which(self._executable)
        if bwrap is None:
            raise SandboxError(
                f"no sandbox: {self._executable} not found; {INSTALL_HINT}, or start the "
                "runner with --no-sandbox to run builds as plain processes (trusted code only)"
            )
        prlimit = shutil.which("prlimit")
        setpriv = shutil.which("setpriv") if self._as_root else None
        if prlimit is None or (self._as_root and setpriv is None):
            raise SandboxError("no sandbox: prlimit or setpriv not found; install util-linux")
        return bwrap, prlimit, setpriv

    async def enter(self, paths: BuildPaths) -> None:
        self._tools()
        if self._as_root:
            owned = [paths.checkout, paths.home, paths.tmp]
            admin = await asyncio.to_thread(_git_admin_dir, paths.checkout)
            if admin is not None and admin.is_relative_to(paths.mirror):
                owned.append(admin)
            uid, gid = self._build_user
            await asyncio.to_thread(_give_to, owned, uid, gid)
        await self._probe(paths)

    async def _probe(self, paths: BuildPaths) -> None:
        with tempfile.TemporaryFile() as stderr:
            process = await asyncio.create_subprocess_exec(
                *self.argv("true", paths, network=False),
                cwd=paths.checkout,
                env={"PATH": "/usr/bin:/bin"},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
            try:
                await asyncio.wait_for(process.wait(), _PROBE_TIMEOUT_S)
            except BaseException:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
                raise
            if process.returncode != 0:
                stderr.seek(0)
                detail = _last_lines(stderr.read(64 * 1024)) or f"exit {process.returncode}"
                raise SandboxError(f"the sandbox does not start: {detail}")

    def _limit_args(self) -> list[str]:
        limits = (
            ("nproc", self._limits.processes, resource.RLIMIT_NPROC),
            ("fsize", self._limits.file_size_bytes, resource.RLIMIT_FSIZE),
            ("nofile", self._limits.open_files, resource.RLIMIT_NOFILE),
        )
        args = [f"--{name}={_capped(value, which)}" for name, value, which in limits]
        return [*args, "--core=0"]

    def _mounts(self, paths: BuildPaths, *, network: bool) -> list[str]:
        mounts = [
            "--ro-bind", "/", "/",
            "--dev", "/dev",
            "--perms", "1777", "--size", str(_SHM_BYTES), "--tmpfs", "/dev/shm",  # noqa: S108
            "--proc", "/proc",
            "--tmpfs", "/run",
        ]  # fmt: skip
        resolv = Path("/etc/resolv.conf").resolve()
        if network and resolv.is_relative_to("/run"):
            mounts += ["--ro-bind-try", str(resolv), str(resolv)]
        emptied = [Path("/tmp")]  # noqa: S108 - replaced by the build's own directory
        mounts += ["--bind", str(paths.tmp), "/tmp"]  # noqa: S108

        def make_way(destination: Path) -> None:
            """Directories leading to ``destination`` inside an emptied mount: bwrap would
            create them 0700 and root's, which the build user could not traverse."""
            for parent in reversed(destination.parents):
                if any(parent != root and parent.is_relative_to(root) for root in emptied):
                    mounts.extend(["--perms", "0755", "--dir", str(parent)])

        for hidden in (*self._hidden, paths.work_dir):
            if hidden.is_dir():
                make_way(hidden)
                mounts += ["--tmpfs", str(hidden)]
                emptied.append(hidden)
            elif hidden.exists():
                make_way(hidden)
                mounts += ["--ro-bind", "/dev/null", str(hidden)]
        for source, kind in (
            (paths.mirror, "--ro-bind"),
            (paths.checkout, "--bind"),
            (paths.home, "--bind"),
        ):
            make_way(source)
            mounts += [kind, str(source), str(source)]
        return [*mounts, "--chdir", str(paths.checkout)]

    def argv(self, command: str, paths: BuildPaths, *, network: bool) -> list[str]:
        bwrap, prlimit, setpriv = self._tools()
        namespaces = ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
        if not network:
            namespaces.append("--unshare-net")
        if not self._as_root:
            namespaces += ["--unshare-user", "--disable-userns"]
        drop: list[str] = []
        if setpriv is not None:
            uid, gid = self._build_user
            drop = [
                setpriv,
                f"--reuid={uid}",
                f"--regid={gid}",
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
                "--no-new-privs",
                "--",
            ]
        return [
            prlimit,
            *self._limit_args(),
            "--",
            bwrap,
            "--die-with-parent",
            *namespaces,
            *self._mounts(paths, network=network),
            "--",
            *drop,
            *_SHELL,
            command,
        ]
