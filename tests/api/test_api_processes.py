"""``stovepipe api --processes N``: N processes on one port, and only one installation per port.

Real processes on both storage backends and the real broker; which process
holds which socket is read from ``/proc``.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import grpc
import pytest
import yaml

from harness.stages import queue_config
from stovepipe.domain import GREEN, FactOrigin, ValidationFact
from stovepipe.messaging import KafkaSettings
from stovepipe.runtime.processes import free_port
from stovepipe.stages import queue_ops
from stovepipe.storage import Store
from stovepipe.testing import until
from stovepipe.v1 import stovepipe_service_pb2 as pb
from stovepipe.v1 import stovepipe_service_pb2_grpc as pb_grpc

CLI = [sys.executable, "-m", "stovepipe.cli.main"]
Q = "mono/main"
URI = "git+file:///repos/mono#main@" + "a" * 40


class Running:
    """A started ``stovepipe api`` whose output is collected as it comes."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [*CLI, "api", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self.readers = [
            threading.Thread(target=_collect, args=(stream, into), daemon=True)
            for stream, into in ((self.process.stdout, self.out), (self.process.stderr, self.err))
        ]
        for reader in self.readers:
            reader.start()

    def said(self, text: str) -> bool:
        return any(text in line for line in self.out)

    def stop_when_exited(self, timeout_s: float) -> int:
        """Wait for it to exit by itself, then :meth:`stop`."""
        self.process.wait(timeout=timeout_s)
        return self.stop()

    def stop(self) -> int:
        """SIGTERM unless it has exited; its exit code, its output read and its pipes closed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        for reader in self.readers:
            reader.join(timeout=30)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        return code


def _collect(stream: IO[str], into: list[str]) -> None:
    into.extend(stream)


@pytest.fixture
def config_file(
    tmp_path: Path, migrated_store_url: str, kafka_settings: KafkaSettings
) -> tuple[Path, int]:
    port = free_port()
    config = {
        "api": {"listen": f"127.0.0.1:{port}"},
        "storage": {"url": migrated_store_url},
        "kafka": {
            "bootstrap_servers": kafka_settings.bootstrap_servers,
            "topic_prefix": kafka_settings.topic_prefix,
        },
        "queues": [queue_config(Q)],
        # nobody answers there: the reachability of an answer is UNKNOWN
        "extensions": {"sourcecontrol": {"git": {"address": f"127.0.0.1:{free_port()}"}}},
    }
    path = tmp_path / "stovepipe.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, port


async def _green_bookmark(store: Store) -> None:
    await store.ensure_queue(Q)
    await store.create_fact(
        ValidationFact(
            queue=Q,
            uri=URI,
            project="",
            degree=GREEN,
            request_id=f"request/{Q}/1",
            origin=FactOrigin.BUILD,
            created_at=datetime.now(UTC),
        )
    )
    await queue_ops.advance_bookmark(store, Q, f"request/{Q}/1", URI, lambda: datetime.now(UTC))


def _children(pid: int) -> list[int]:
    found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(p) for p in found]


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        match = re.fullmatch(r"socket:\[(\d+)\]", target)
        if match:
            inodes.add(match[1])
    return inodes


def _tcp_sockets(port: int) -> list[tuple[str, str]]:
    """``(state, inode)`` of every TCP socket whose local port is ``port`` (grpc may bind an
    IPv4 address on an IPv6 socket)."""
    rows = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                rows.append((fields[3], fields[9]))
    return rows


LISTEN, ESTABLISHED = "0A", "01"


@pytest.mark.timeout(600)  # three API starts on a loaded 2-core machine
async def test_two_processes_share_the_port_and_a_second_installation_is_refused(
    config_file: tuple[Path, int], store: Store
) -> None:
    path, port = config_file
    await _green_bookmark(store)
    group = Running("--config", str(path), "--processes", "2")
    try:
        await until(
            lambda: group.said("(2 processes)") or group.process.poll() is not None,
            what="the group listening",
            timeout_s=240,
        )
        assert group.process.poll() is None, "".join(group.err)
        members = _children(group.process.pid)
        assert len(members) == 2
        listening = {inode for state, inode in _tcp_sockets(port) if state == LISTEN}
        assert len(listening) == 2
        for member in members:  # each member holds one of the two listeners
            assert len(_socket_inodes(member) & listening) == 1

        channels = [  # a connection each: channels otherwise share one subchannel
            grpc.aio.insecure_channel(
                f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
            )
            for _ in range(24)
        ]
        try:
            answers = await asyncio.gather(
                *(
                    pb_grpc.StovepipeServiceStub(c).GetLastGreen(
                        pb.GetLastGreenRequest(queue=Q), timeout=60
                    )
                    for c in channels
                )
            )
            assert all(a.found and a.uri == URI for a in answers)
            established = {inode for state, inode in _tcp_sockets(port) if state == ESTABLISHED}
            served_by = [m for m in members if _socket_inodes(m) & established]
            assert sorted(served_by) == sorted(members)  # the kernel spread the connections

            for extra in (["--processes", "2"], []):
                second = Running("--config", str(path), *extra)
                code = await asyncio.to_thread(second.stop_when_exited, 120)
                assert code == 1, "".join(second.err)
                message = "".join(second.err)
                assert f"already serves port {port}" in message
                assert f"pid {group.process.pid}" in message
                assert "Traceback" not in message
            again = await pb_grpc.StovepipeServiceStub(channels[0]).GetLastGreen(
                pb.GetLastGreenRequest(queue=Q), timeout=60
            )
            assert again.found
        finally:
            for channel in channels:
                await channel.close(None)
    finally:
        assert group.stop() == 0, "".join(group.err)
    for member in members:
        assert _gone(member)


@pytest.mark.timeout(600)
async def test_a_member_that_dies_stops_the_group(
    config_file: tuple[Path, int], store: Store
) -> None:
    path, _ = config_file
    group = Running("--config", str(path), "--processes", "2")
    try:
        await until(
            lambda: group.said("(2 processes)") or group.process.poll() is not None,
            what="the group listening",
            timeout_s=240,
        )
        members = _children(group.process.pid)
        os.kill(members[1], signal.SIGKILL)
        code = await asyncio.to_thread(group.stop_when_exited, 120)
        assert code == 1
        assert "stopping the group" in "".join(group.err)
    finally:
        group.stop()


def test_processes_need_a_fixed_port(tmp_path: Path) -> None:
    path = tmp_path / "stovepipe.yaml"
    path.write_text(yaml.safe_dump({"api": {"listen": "127.0.0.1:0"}}))
    done = subprocess.run(
        [*CLI, "api", "--config", str(path), "--processes", "3"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "--processes 3 needs a fixed TCP port" in done.stderr


def _gone(pid: int) -> bool:
    """Exited (a zombie of an exited parent counts)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
