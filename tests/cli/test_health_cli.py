"""``stovepipe health ADDRESS``: the container probe, run as a process against real servers.

Exit 0 only for SERVING; 1 for anything else (NOT_SERVING, an unknown service,
nobody listening, a peer that never answers, a TLS mismatch). 1 and not 2:
Docker reserves 2 in a HEALTHCHECK.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from harness.tls import Pki, PkiUnavailable, make_pki
from stovepipe.grpcutil import ServerTls, start_server
from stovepipe.runtime.health import WorkerHealth
from stovepipe.runtime.processes import free_port

CLI = [sys.executable, "-m", "stovepipe.cli.main"]
TOKEN = "health-test-token-0123456789abcdef"


async def _health(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run ``stovepipe health`` with ``args``; its exit code and its output."""
    process = await asyncio.create_subprocess_exec(
        *CLI,
        "health",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, output.decode()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    try:
        return make_pki(tmp_path_factory.mktemp("pki"))
    except PkiUnavailable as exc:
        pytest.fail(str(exc))


async def test_exit_0_only_while_a_worker_health_port_says_serving() -> None:
    address = f"127.0.0.1:{free_port()}"
    health = await WorkerHealth.open(address)
    try:
        code, output = await _health(address)
        assert (code, output.strip()) == (1, f"{address}: NOT_SERVING")
        await health.serving()
        code, output = await _health(address)
        assert (code, output.strip()) == (0, f"{address}: SERVING")
        await health.draining()
        code, output = await _health(address)
        assert (code, output.strip()) == (1, f"{address}: NOT_SERVING")
    finally:
        await health.close()
    code, output = await _health(address, "--timeout", "1")
    assert code == 1
    assert "no answer: UNAVAILABLE" in output or "no answer: DEADLINE_EXCEEDED" in output


async def test_the_address_can_come_from_the_environment_as_in_the_image() -> None:
    address = f"127.0.0.1:{free_port()}"
    health = await WorkerHealth.open(address)
    try:
        await health.serving()
        code, output = await _health(env={"STOVEPIPE_HEALTH_ADDRESS": address})
        assert (code, output.strip()) == (0, f"{address}: SERVING")
    finally:
        await health.close()


async def test_an_unknown_service_is_not_serving() -> None:
    address = f"127.0.0.1:{free_port()}"
    health = await WorkerHealth.open(address)
    try:
        await health.serving()
        code, output = await _health(address, "--service", "no.such.Service")
        assert code == 1
        assert "NOT_FOUND" in output
    finally:
        await health.close()


async def test_a_peer_that_never_answers_fails_within_the_timeout() -> None:
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # accept the connection, never speak HTTP/2

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        code, output = await _health(f"127.0.0.1:{port}", "--timeout", "1")
        assert code == 1
        assert "no answer: DEADLINE_EXCEEDED" in output
        assert loop.time() - started < 30
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def _tls_server(pki: Pki, *, mutual: bool) -> AsyncIterator[str]:
    tls = ServerTls(pki.server_cert_file, pki.server_key_file, pki.ca_file if mutual else None)
    server = await start_server("127.0.0.1:0", [], [], credentials=tls.credentials())
    try:
        yield f"127.0.0.1:{server.port}"
    finally:
        await server.stop(grace=0.5)


async def test_tls_needs_the_servers_ca(pki: Pki) -> None:
    async with _tls_server(pki, mutual=False) as address:
        assert (await _health(address, "--ca-file", str(pki.ca_file)))[0] == 0
        assert (await _health(address, "--timeout", "1"))[0] == 1  # plaintext
        assert (await _health(address, "--ca-file", str(pki.other_ca_file), "--timeout", "1"))[
            0
        ] == 1


async def test_mutual_tls_needs_a_client_certificate(pki: Pki) -> None:
    async with _tls_server(pki, mutual=True) as address:
        with_cert = ["--cert", str(pki.client_cert_file), "--key", str(pki.client_key_file)]
        assert (await _health(address, "--ca-file", str(pki.ca_file), *with_cert))[0] == 0
        without = await _health(address, "--ca-file", str(pki.ca_file), "--timeout", "1")
        assert without[0] == 1
        half = await _health(address, "--ca-file", str(pki.ca_file), "--cert", with_cert[1])
        assert half[0] == 4  # a usage error (exit 4), not a verdict on the server
        assert "--cert and --key go together" in half[1]


async def test_a_token_protected_extension_process_answers_health_without_the_token(
    tmp_path: Path,
) -> None:
    """The image's HEALTHCHECK on `stovepipe ext git`: health stays open behind the token."""
    config = tmp_path / "stovepipe.yaml"
    config.write_text("queues: []\n")
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        *CLI,
        "ext",
        "git",
        "--config",
        str(config),
        "--listen",
        f"127.0.0.1:{port}",
        "--token-env",
        "HEALTH_TEST_TOKEN",
        "--cache-dir",
        str(tmp_path / "cache"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "HEALTH_TEST_TOKEN": TOKEN},
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 60)
        assert line.decode().startswith("listening on"), line
        code, output = await _health(f"127.0.0.1:{port}")
        assert (code, output.strip()) == (0, f"127.0.0.1:{port}: SERVING")
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
