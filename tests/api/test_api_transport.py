"""How the API listens: TLS and mutual TLS, the plaintext-token rule, and the CLI's TLS
options (issue 10, task 2).

Certificates come from a throwaway CA made with the ``openssl`` CLI for this module.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from harness.api import Q
from harness.stages import Pipeline, queue_config
from stovepipe.api.server import StovepipeApi
from stovepipe.api.transport import TransportError, check_listener, is_loopback
from stovepipe.config import StovepipeConfig, config_from_mapping
from stovepipe.grpcutil import GrpcServer, open_channel
from stovepipe.runtime.api_process import start_api_server
from stovepipe.runtime.health import grpc_serving
from stovepipe.runtime.processes import free_port
from stovepipe.storage import Store, create_engine
from stovepipe.storage.migrate import upgrade_async
from stovepipe.v1 import stovepipe_service_pb2 as pb
from stovepipe.v1 import stovepipe_service_pb2_grpc as pb_grpc

CLI = [sys.executable, "-m", "stovepipe.cli.main"]
REFUSED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    other_client_cert: Path
    other_client_key: Path

    def read(self, path: Path) -> bytes:
        return path.read_bytes()


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def _make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return cert, key


def _issue(directory: Path, name: str, ca: tuple[Path, Path], extensions: str) -> tuple[Path, Path]:
    cert, key, csr = (directory / f"{name}{ext}" for ext in (".pem", ".key", ".csr"))
    ext_file = directory / f"{name}.ext"
    ext_file.write_text(extensions)
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}",
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
        "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext_file),
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA with a server and a client certificate, and a second CA with a client of its own."""
    d = tmp_path_factory.mktemp("pki")
    ca = _make_ca(d, "test-ca")
    other = _make_ca(d, "other-ca")
    server = _issue(
        d,
        "server",
        ca,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    client = _issue(d, "client", ca, "extendedKeyUsage=clientAuth\n")
    stranger = _issue(d, "stranger", other, "extendedKeyUsage=clientAuth\n")
    return Pki(ca[0], *server, *client, other[0], *stranger)


@pytest.fixture
async def sqlite_store(sqlite_url: str) -> AsyncIterator[Store]:
    await upgrade_async(sqlite_url)
    engine = create_engine(sqlite_url)
    try:
        yield Store(engine)
    finally:
        await engine.dispose()


def _config(**api: Any) -> StovepipeConfig:
    return config_from_mapping({"api": api, "queues": [queue_config(Q)]}, source="test")


def _api(store: Store, config: StovepipeConfig) -> StovepipeApi:
    pipe = Pipeline(store, [queue_config(Q)])
    return StovepipeApi(store, config, pipe.ingester, pipe.revalidator)


def _tls(pki: Pki, *, mutual: bool = False) -> dict[str, str]:
    tls = {"cert_file": str(pki.server_cert), "key_file": str(pki.server_key)}
    if mutual:
        tls["client_ca_file"] = str(pki.ca)
    return tls


async def _ping(address: str, credentials: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    channel = open_channel(address, credentials=credentials)
    try:
        await pb_grpc.StovepipeServiceStub(channel).Ping(pb.PingRequest(), timeout=5)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    finally:
        await channel.close(None)
    return grpc.StatusCode.OK


@pytest.fixture
async def tls_server(sqlite_store: Store, pki: Pki) -> AsyncIterator[GrpcServer]:
    config = _config(listen="127.0.0.1:0", tls=_tls(pki))
    server = await start_api_server(config, _api(sqlite_store, config), {})
    yield server
    await server.stop(0)


@pytest.fixture
async def mtls_server(sqlite_store: Store, pki: Pki) -> AsyncIterator[GrpcServer]:
    config = _config(listen="127.0.0.1:0", tls=_tls(pki, mutual=True))
    server = await start_api_server(config, _api(sqlite_store, config), {})
    yield server
    await server.stop(0)


# TLS


async def test_the_configured_tls_is_served_and_plaintext_refused(
    tls_server: GrpcServer, pki: Pki
) -> None:
    trusted = grpc.ssl_channel_credentials(root_certificates=pki.read(pki.ca))
    assert await _ping(tls_server.address, trusted) == grpc.StatusCode.OK
    assert await _ping(tls_server.address, None) in REFUSED


async def test_a_client_trusting_another_ca_is_refused(tls_server: GrpcServer, pki: Pki) -> None:
    wrong = grpc.ssl_channel_credentials(root_certificates=pki.read(pki.other_ca))
    assert await _ping(tls_server.address, wrong) in REFUSED


async def test_mutual_tls_needs_a_client_certificate_from_the_configured_ca(
    mtls_server: GrpcServer, pki: Pki
) -> None:
    ca = pki.read(pki.ca)
    without = grpc.ssl_channel_credentials(root_certificates=ca)
    assert await _ping(mtls_server.address, without) in REFUSED
    stranger = grpc.ssl_channel_credentials(
        root_certificates=ca,
        private_key=pki.read(pki.other_client_key),
        certificate_chain=pki.read(pki.other_client_cert),
    )
    assert await _ping(mtls_server.address, stranger) in REFUSED
    client = grpc.ssl_channel_credentials(
        root_certificates=ca,
        private_key=pki.read(pki.client_key),
        certificate_chain=pki.read(pki.client_cert),
    )
    assert await _ping(mtls_server.address, client) == grpc.StatusCode.OK


async def test_unreadable_tls_files_are_a_clear_error(sqlite_store: Store, tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")
    config = _config(listen="127.0.0.1:0", tls={"cert_file": missing, "key_file": missing})
    with pytest.raises(TransportError, match=r"api\.tls\.cert_file: cannot read .*missing\.pem"):
        await start_api_server(config, _api(sqlite_store, config), {})


# Tokens never cross a network in plaintext


@pytest.mark.parametrize(
    ("listen", "tls", "allow_insecure", "refused"),
    [
        ("0.0.0.0:50051", False, False, True),
        ("[::]:50051", False, False, True),
        ("api.internal:50051", False, False, True),
        ("0.0.0.0:50051", False, True, False),
        ("0.0.0.0:50051", True, False, False),
        ("127.0.0.1:50051", False, False, False),
        ("127.8.9.10:50051", False, False, False),
        ("localhost:50051", False, False, False),
        ("[::1]:50051", False, False, False),
        ("unix:/run/stovepipe.sock", False, False, False),
    ],
)
def test_tokens_on_a_network_listener_need_tls_or_an_explicit_opt_out(
    pki: Pki, listen: str, tls: bool, allow_insecure: bool, refused: bool
) -> None:
    api = _config(
        listen=listen, allow_insecure=allow_insecure, **({"tls": _tls(pki)} if tls else {})
    ).api
    check_listener(api, has_tokens=False)  # no tokens: nothing to leak
    if refused:
        with pytest.raises(TransportError, match="refusing to serve API tokens in plaintext"):
            check_listener(api, has_tokens=True)
    else:
        check_listener(api, has_tokens=True)


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1:1", True),
        ("127.8.9.10:1", True),
        ("localhost:1", True),
        ("[::1]:1", True),
        ("unix:/run/s.sock", True),
        ("0.0.0.0:1", False),
        ("[::]:1", False),
        ("10.0.0.5:1", False),
        ("api.internal:1", False),
        ("localhost.evil.example:1", False),
    ],
)
def test_loopback_addresses(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback


def test_stovepipe_api_refuses_to_start_with_plaintext_tokens_on_the_network(
    tmp_path: Path,
) -> None:
    config = tmp_path / "stovepipe.yaml"
    config.write_text(
        "api:\n"
        "  listen: 0.0.0.0:50999\n"
        "  tokens:\n"
        "    - {name: gate, role: read, token_env: STOVEPIPE_TEST_GATE_TOKEN}\n"
    )
    env = {**os.environ, "STOVEPIPE_TEST_GATE_TOKEN": "s3cret-value"}
    done = subprocess.run(
        [*CLI, "api", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "refusing to serve API tokens in plaintext on 0.0.0.0:50999" in done.stderr
    assert "api.allow_insecure" in done.stderr
    assert "s3cret-value" not in done.stdout + done.stderr


# The CLI


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STOVEPIPE_")}
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        timeout=60,
        check=False,
    )


async def test_the_cli_reaches_a_tls_api_with_ca_file(tls_server: GrpcServer, pki: Pki) -> None:
    api = ["--api", tls_server.address]
    trusted = await asyncio.to_thread(_cli, "last-green", Q, *api, "--ca-file", str(pki.ca))
    assert trusted.returncode == 2, trusted.stdout + trusted.stderr  # reached: nothing green yet
    assert "no green commit recorded yet" in trusted.stderr
    from_env = await asyncio.to_thread(
        _cli, "last-green", Q, *api, env={"STOVEPIPE_CA_FILE": str(pki.ca)}
    )
    assert from_env.returncode == 2, from_env.stdout + from_env.stderr
    plaintext = await asyncio.to_thread(_cli, "last-green", Q, *api)
    assert plaintext.returncode == 3, plaintext.stdout + plaintext.stderr
    assert "--ca-file" in plaintext.stderr


async def test_the_cli_presents_a_client_certificate(mtls_server: GrpcServer, pki: Pki) -> None:
    api = ["--api", mtls_server.address, "--ca-file", str(pki.ca)]
    without = await asyncio.to_thread(_cli, "gate", Q, "git:a", *api)
    assert without.returncode == 3, without.stdout + without.stderr
    cert = ["--cert", str(pki.client_cert), "--key", str(pki.client_key)]
    gated = await asyncio.to_thread(_cli, "gate", Q, "git:a", *api, *cert)
    assert gated.returncode == 2, gated.stdout + gated.stderr  # reached: not recorded
    half = await asyncio.to_thread(_cli, "gate", Q, "git:a", *api, "--cert", str(pki.client_cert))
    assert half.returncode == 4 and "--cert and --key go together" in half.stderr


async def test_a_tls_api_process_reports_readiness_on_its_plaintext_health_port(
    pki: Pki, tmp_path: Path, kafka_bootstrap: str, sqlite_url: str
) -> None:
    """What `stovepipe up` and a Kubernetes probe read: no API credentials needed."""
    api_port, health_port = free_port(), free_port()
    config = tmp_path / "stovepipe.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "storage": {"url": sqlite_url},
                "kafka": {"bootstrap_servers": kafka_bootstrap, "topic_prefix": "tlshealth."},
                "api": {"listen": f"127.0.0.1:{api_port}", "tls": _tls(pki)},
                "queues": [queue_config(Q)],
            }
        )
    )
    await upgrade_async(sqlite_url)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STOVEPIPE_")}
    process = subprocess.Popen(
        [*CLI, "api", "--config", str(config), "--health-port", str(health_port),
         "--health-host", "127.0.0.1"],
        env=clean,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while not await grpc_serving(f"127.0.0.1:{health_port}"):
            assert process.poll() is None, process.communicate()[1]
            assert loop.time() < deadline, "the API never reported ready"
            await asyncio.sleep(0.1)
        trusted = grpc.ssl_channel_credentials(root_certificates=pki.read(pki.ca))
        assert await _ping(f"127.0.0.1:{api_port}", trusted) == grpc.StatusCode.OK
        assert await _ping(f"127.0.0.1:{api_port}", None) in REFUSED
    finally:
        process.terminate()
        process.communicate(timeout=30)
