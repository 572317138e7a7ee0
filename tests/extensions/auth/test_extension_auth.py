"""Extension servers authenticate their callers: real servers, real channels.

Both reference servers refuse a call without the right bearer token with
UNAUTHENTICATED, before it reaches the servicer (a refused Trigger runs
nothing); health checks stay open; the runner presents its own token to the
git server; a mutual-TLS server refuses a client without a certificate its CA
signed; and neither server starts on a non-loopback address without
authentication.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from harness.auth import (
    GIT_TOKEN,
    RUNNER_TOKEN,
    WRONG_TOKEN,
    RunnerFactory,
    finished,
    rpc_error,
    source_of,
    trigger_spec,
)
from harness.auth_pki import Pki
from stovepipe.ext.v1 import source_control_pb2 as sc_pb
from stovepipe.ext.v1 import source_control_pb2_grpc as sc_grpc
from stovepipe.extensions.buildrunner import BuildRunnerClient, BuildState
from stovepipe.extensions.buildrunner.local import LocalRunnerServer
from stovepipe.extensions.buildrunner.local import serve as serve_runner
from stovepipe.extensions.sourcecontrol import SourceControlClient
from stovepipe.extensions.sourcecontrol.git import GitServer, ServedRepositories
from stovepipe.extensions.sourcecontrol.git import serve as serve_git
from stovepipe.grpcutil import (
    ChannelSecurity,
    InsecureListen,
    ServerSecurity,
    ServerTls,
    open_channel,
)

START_DEADLINE_S = 60.0


Channels = Callable[..., grpc.aio.Channel]


@pytest.fixture
async def channels() -> AsyncIterator[Channels]:
    """Opens channels to an address, with a ``security``, and closes them after the test."""
    opened: list[grpc.aio.Channel] = []

    def channel(address: str, security: ChannelSecurity | None = None) -> grpc.aio.Channel:
        opened.append(open_channel(address, security=security))
        return opened[-1]

    yield channel
    for each in opened:
        await each.close(None)


# Bearer tokens


PRESENTED = {
    "no token": None,
    "wrong token": ChannelSecurity(token=WRONG_TOKEN),
}


@pytest.mark.parametrize("presented", list(PRESENTED), ids=list(PRESENTED))
async def test_the_git_server_refuses_a_caller_without_its_token(
    git_server: GitServer,
    repository: Path,
    channels: Channels,
    presented: str,
) -> None:
    client = SourceControlClient(channels(git_server.address, security=PRESENTED[presented]))
    head = await SourceControlClient(
        channels(git_server.address, security=ChannelSecurity(token=GIT_TOKEN))
    ).resolve_head(source_of(repository))

    errors = [
        await rpc_error(client.resolve_head(source_of(repository))),
        await rpc_error(client.promote(source_of(repository), head, "verified-main")),
    ]

    assert [e.code() for e in errors] == [grpc.StatusCode.UNAUTHENTICATED] * 2
    assert all(WRONG_TOKEN not in (e.details() or "") for e in errors)
    assert all(GIT_TOKEN not in (e.details() or "") for e in errors)


@pytest.mark.parametrize("presented", list(PRESENTED), ids=list(PRESENTED))
async def test_the_runner_refuses_a_caller_without_its_token_and_runs_nothing(
    runner_server: LocalRunnerServer,
    git_server: GitServer,
    repository: Path,
    channels: Channels,
    tmp_path: Path,
    presented: str,
) -> None:
    marker = tmp_path / "ran"
    head = await SourceControlClient(
        channels(git_server.address, security=ChannelSecurity(token=GIT_TOKEN))
    ).resolve_head(source_of(repository))
    client = BuildRunnerClient(channels(runner_server.address, security=PRESENTED[presented]))

    error = await rpc_error(client.trigger(trigger_spec(repository, head, f"id > '{marker}'")))

    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert not marker.exists()
    assert (await rpc_error(client.status("build-0"))).code() is grpc.StatusCode.UNAUTHENTICATED


async def test_the_token_must_come_as_a_bearer_credential(
    git_server: GitServer, repository: Path, channels: Channels
) -> None:
    stub = sc_grpc.SourceControlServiceStub(channels(git_server.address))
    request = sc_pb.ResolveHeadRequest(
        source=sc_pb.QueueSource(queue="demo/main", repository=str(repository), ref="main")
    )

    error = await rpc_error(stub.ResolveHead(request, metadata=[("authorization", GIT_TOKEN)]))
    basic = await rpc_error(
        stub.ResolveHead(request, metadata=[("authorization", f"Basic {GIT_TOKEN}")])
    )
    bearer = await stub.ResolveHead(request, metadata=[("authorization", f"bearer {GIT_TOKEN}")])

    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert basic.code() is grpc.StatusCode.UNAUTHENTICATED
    assert bearer.uri


async def test_with_the_right_tokens_a_build_runs_and_the_runner_reaches_git_with_its_own(
    runner_server: LocalRunnerServer,
    git_server: GitServer,
    repository: Path,
    channels: Channels,
    tmp_path: Path,
) -> None:
    marker = tmp_path / "ran"
    head = await SourceControlClient(
        channels(git_server.address, security=ChannelSecurity(token=GIT_TOKEN))
    ).resolve_head(source_of(repository))
    client = BuildRunnerClient(
        channels(runner_server.address, security=ChannelSecurity(token=RUNNER_TOKEN))
    )

    report = await finished(
        client, await client.trigger(trigger_spec(repository, head, f"touch '{marker}'"))
    )

    assert report.state is BuildState.SUCCEEDED, report.message
    assert marker.exists()


async def test_a_runner_with_the_wrong_source_control_token_errors_the_build(
    runners: RunnerFactory,
    git_server: GitServer,
    repository: Path,
    channels: Channels,
    tmp_path: Path,
) -> None:
    runner = await runners.start(source_control_token=WRONG_TOKEN)
    marker = tmp_path / "ran"
    head = await SourceControlClient(
        channels(git_server.address, security=ChannelSecurity(token=GIT_TOKEN))
    ).resolve_head(source_of(repository))
    client = BuildRunnerClient(
        channels(runner.address, security=ChannelSecurity(token=RUNNER_TOKEN))
    )

    report = await finished(
        client, await client.trigger(trigger_spec(repository, head, f"touch '{marker}'"))
    )

    assert report.state is BuildState.ERRORED
    assert "UNAUTHENTICATED" in report.message
    assert not marker.exists()


async def test_health_checks_need_no_token(
    git_server: GitServer,
    runner_server: LocalRunnerServer,
    channels: Channels,
) -> None:
    statuses = [
        await health_pb2_grpc.HealthStub(channels(server.address)).Check(
            health_pb2.HealthCheckRequest(service="")
        )
        for server in (git_server, runner_server)
    ]

    assert [s.status for s in statuses] == [health_pb2.HealthCheckResponse.SERVING] * 2


async def test_reflection_needs_the_token(git_server: GitServer, channels: Channels) -> None:
    request = reflection_pb2.ServerReflectionRequest(list_services="")

    async def services(security: ChannelSecurity | None) -> list[str]:
        stub = reflection_pb2_grpc.ServerReflectionStub(
            channels(git_server.address, security=security)
        )
        names: list[str] = []
        async for response in stub.ServerReflectionInfo(iter([request])):
            names.extend(s.name for s in response.list_services_response.service)
        return names

    async def refused_code() -> grpc.StatusCode:
        # Nothing is written on the refused stream: a request sent while the server is
        # already closing it races the refusal and can surface as INTERNAL instead.
        stub = reflection_pb2_grpc.ServerReflectionStub(channels(git_server.address))
        call = stub.ServerReflectionInfo()
        code: grpc.StatusCode = await call.code()
        return code

    refused = await refused_code()
    listed = await services(ChannelSecurity(token=GIT_TOKEN))

    assert refused is grpc.StatusCode.UNAUTHENTICATED
    assert "stovepipe.ext.v1.SourceControlService" in listed


# Mutual TLS


@pytest.fixture
async def mtls_git_server(
    tmp_path: Path, served: ServedRepositories, pki: Pki
) -> AsyncIterator[GitServer]:
    """The git server requiring a client certificate signed by the test CA (no token)."""
    server = await serve_git(
        "127.0.0.1:0",
        served=served,
        cache_dir=tmp_path / "cache",
        security=ServerSecurity(tls=ServerTls(pki.server_cert, pki.server_key, pki.ca)),
    )
    yield server
    await server.stop(0)


async def test_mutual_tls_refuses_clients_without_a_certificate_the_ca_signed(
    mtls_git_server: GitServer,
    repository: Path,
    channels: Channels,
    pki: Pki,
) -> None:
    def client(security: ChannelSecurity | None) -> SourceControlClient:
        return SourceControlClient(
            channels(mtls_git_server.address, security=security), timeout_s=10.0
        )

    refused = {
        "plaintext": client(None),
        "no client certificate": client(ChannelSecurity(ca_file=pki.ca)),
        "certificate of another CA": client(
            ChannelSecurity(
                ca_file=pki.ca, cert_file=pki.rogue_client_cert, key_file=pki.rogue_client_key
            )
        ),
    }
    accepted = client(
        ChannelSecurity(ca_file=pki.ca, cert_file=pki.client_cert, key_file=pki.client_key)
    )

    codes = {
        name: (await rpc_error(each.resolve_head(source_of(repository)))).code()
        for name, each in refused.items()
    }
    head = await accepted.resolve_head(source_of(repository))

    assert codes == dict.fromkeys(refused, grpc.StatusCode.UNAVAILABLE)
    assert head


# Where a server may listen


@pytest.mark.parametrize("address", ["0.0.0.0:0", "[::]:0", "10.1.2.3:50061", "git.internal:1"])
async def test_neither_server_serves_a_non_loopback_address_without_authentication(
    address: str, served: ServedRepositories, tmp_path: Path
) -> None:
    with pytest.raises(InsecureListen, match="without authentication"):
        await serve_git(address, served=served, cache_dir=tmp_path / "cache")
    with pytest.raises(InsecureListen, match="--token-env"):
        await serve_runner(address, source_control="127.0.0.1:1", work_dir=tmp_path / "w")


@pytest.mark.parametrize(
    ("security", "address", "warning"),
    [
        (ServerSecurity(), "127.0.0.1:1", "without authentication"),
        (ServerSecurity(), "[::1]:1", "without authentication"),
        (ServerSecurity(), "localhost:1", "without authentication"),
        (ServerSecurity(allow_insecure=True), "0.0.0.0:1", "WITHOUT authentication"),
        (ServerSecurity(token=GIT_TOKEN), "0.0.0.0:1", "clear text"),
        (ServerSecurity(token=GIT_TOKEN), "127.0.0.1:1", None),
    ],
)
def test_what_a_server_accepts_to_listen_on_and_what_it_warns_about(
    security: ServerSecurity,
    address: str,
    warning: str | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="stovepipe.grpcutil.auth"):
        security.check_listen(address)

    if warning is None:
        assert not caplog.records
    else:
        assert warning in caplog.text
    assert GIT_TOKEN not in caplog.text


def test_mutual_tls_alone_counts_as_authentication(pki: Pki) -> None:
    tls_only = ServerSecurity(tls=ServerTls(pki.server_cert, pki.server_key))
    mutual = ServerSecurity(tls=ServerTls(pki.server_cert, pki.server_key, pki.ca))

    with pytest.raises(InsecureListen):
        tls_only.check_listen("0.0.0.0:1")
    mutual.check_listen("0.0.0.0:1")


def test_tokens_stay_out_of_reprs() -> None:
    shown = repr((ServerSecurity(token=GIT_TOKEN), ChannelSecurity(token=GIT_TOKEN)))

    assert GIT_TOKEN not in shown


async def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(process.communicate(), START_DEADLINE_S)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def _config(tmp_path: Path, repository: Path) -> Path:
    path = tmp_path / "stovepipe.yaml"
    queue = {
        "name": "demo/main",
        "source": {"repository": str(repository)},
        "build": {"targets": [{"name": "t", "command": "true"}]},
    }
    path.write_text(yaml.safe_dump({"queues": [queue]}))
    return path


ServerCommand = Callable[[Path, Path], list[str]]

COMMANDS: dict[str, ServerCommand] = {
    "git": lambda tmp, repo: [
        "stovepipe.extensions.sourcecontrol.git",
        "--config",
        str(_config(tmp, repo)),
        "--cache-dir",
        str(tmp / "cache"),
    ],
    "local-runner": lambda tmp, repo: [
        "stovepipe.extensions.buildrunner.local",
        "--source-control",
        "127.0.0.1:1",
        "--work-dir",
        str(tmp / "work"),
    ],
}


@pytest.mark.parametrize("server", list(COMMANDS))
async def test_a_server_process_refuses_to_listen_off_loopback_without_authentication(
    server: str, tmp_path: Path, repository: Path
) -> None:
    code, out, err = await _run(*COMMANDS[server](tmp_path, repository), "--listen", "0.0.0.0:0")

    assert code == 2
    assert out == ""
    assert f"stovepipe ext {server}: error: refusing to serve 0.0.0.0:0" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("server", list(COMMANDS))
async def test_a_server_process_names_a_token_variable_it_cannot_read(
    server: str, tmp_path: Path, repository: Path
) -> None:
    code, out, err = await _run(
        *COMMANDS[server](tmp_path, repository), "--token-env", "STOVEPIPE_TEST_UNSET_TOKEN"
    )
    short = await _run(
        *COMMANDS[server](tmp_path, repository),
        "--token-env",
        "STOVEPIPE_TEST_SHORT_TOKEN",
        env={"STOVEPIPE_TEST_SHORT_TOKEN": "hunter2"},
    )

    assert code == 2
    assert out == ""
    assert "STOVEPIPE_TEST_UNSET_TOKEN is not set" in err
    assert short[0] == 2
    assert "shorter than 16 characters" in short[2]
    assert "hunter2" not in short[2]


async def test_a_server_process_with_a_token_file_serves_only_callers_with_that_token(
    tmp_path: Path, repository: Path, channels: Channels
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(f"{GIT_TOKEN}\n")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        *COMMANDS["git"](tmp_path, repository),
        "--listen",
        "127.0.0.1:0",
        "--token-file",
        str(token_file),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), START_DEADLINE_S)
        assert line.startswith(b"listening on "), line
        address = line.decode().split()[-1]
        anonymous = SourceControlClient(channels(address))
        trusted = SourceControlClient(channels(address, security=ChannelSecurity(token=GIT_TOKEN)))

        refused = await rpc_error(anonymous.resolve_head(source_of(repository)))
        head = await trusted.resolve_head(source_of(repository))
    finally:
        process.terminate()
        _, err = await asyncio.wait_for(process.communicate(), START_DEADLINE_S)

    assert refused.code() is grpc.StatusCode.UNAUTHENTICATED
    assert head
    assert process.returncode == 0
    assert b"refused /stovepipe.ext.v1.SourceControlService/ResolveHead" in err
    assert GIT_TOKEN.encode() not in err
