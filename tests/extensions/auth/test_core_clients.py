"""Core's side: ``extensions.<kind>.<name>`` says how to authenticate, and the extension
registry (the one place that opens extension channels) does it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from harness.auth import GIT_TOKEN, QUEUE, WRONG_TOKEN, rpc_error
from harness.auth_pki import Pki
from stovepipe.config import ConfigError, SecretUnavailable, config_from_mapping
from stovepipe.extensions.sourcecontrol import QueueSource
from stovepipe.extensions.sourcecontrol.git import GitServer, ServedRepositories
from stovepipe.extensions.sourcecontrol.git import serve as serve_git
from stovepipe.grpcutil import ServerSecurity, ServerTls
from stovepipe.runtime.extension_registry import ExtensionRegistry

TOKEN_ENV = "STOVEPIPE_TEST_GIT_TOKEN"


def _source(queue: Any) -> QueueSource:
    return QueueSource(queue.name, queue.source.repository, queue.source.ref)


def config_for(repository: Path, git: dict[str, Any]) -> Any:
    return config_from_mapping(
        {
            "extensions": {
                "sourcecontrol": {"git": git},
                "buildrunner": {"local": {"address": "127.0.0.1:1"}},
            },
            "queues": [
                {
                    "name": QUEUE,
                    "source": {"repository": str(repository)},
                    "build": {"targets": [{"name": "t", "command": "true"}]},
                }
            ],
        }
    )


@pytest.fixture
async def registry_for() -> AsyncIterator[Any]:
    """Builds registries and closes them after the test."""
    built: list[ExtensionRegistry] = []

    def build(config: Any, env: dict[str, str]) -> ExtensionRegistry:
        built.append(ExtensionRegistry(config, env))
        return built[-1]

    yield build
    for registry in built:
        await registry.close()


async def test_the_registry_presents_the_token_its_endpoint_names(
    git_server: GitServer, repository: Path, registry_for: Any, tmp_path: Path
) -> None:
    token_file = tmp_path / "git.token"
    token_file.write_text(GIT_TOKEN)
    by_env = config_for(repository, {"address": git_server.address, "token_env": TOKEN_ENV})
    by_file = config_for(repository, {"address": git_server.address, "token_file": str(token_file)})
    wrong = config_for(repository, {"address": git_server.address, "token_env": TOKEN_ENV})
    anonymous = config_for(repository, {"address": git_server.address})

    def head(config: Any, env: dict[str, str]) -> Any:
        queue = config.queues[0]
        return registry_for(config, env).source_control(queue).resolve_head(_source(queue))

    heads = [await head(by_env, {TOKEN_ENV: GIT_TOKEN}), await head(by_file, {})]
    refused = [
        await rpc_error(head(wrong, {TOKEN_ENV: WRONG_TOKEN})),
        await rpc_error(head(anonymous, {})),
    ]

    assert heads[0] == heads[1]
    assert [e.code() for e in refused] == [grpc.StatusCode.UNAUTHENTICATED] * 2


def test_a_token_that_cannot_be_read_stops_the_registry_at_start(tmp_path: Path) -> None:
    config = config_from_mapping(
        {
            "extensions": {
                "sourcecontrol": {"git": {"address": "127.0.0.1:1", "token_env": TOKEN_ENV}},
                "buildrunner": {
                    "local": {"address": "127.0.0.1:2", "token_file": str(tmp_path / "none")}
                },
            }
        }
    )

    with pytest.raises(SecretUnavailable) as raised:
        ExtensionRegistry(config, {})

    message = str(raised.value)
    assert f"extensions.sourcecontrol.git: environment variable {TOKEN_ENV}" in message
    assert "extensions.buildrunner.local: secret file" in message


@pytest.fixture
async def mtls_git_server(
    tmp_path: Path, served: ServedRepositories, pki: Pki
) -> AsyncIterator[GitServer]:
    server = await serve_git(
        "127.0.0.1:0",
        served=served,
        cache_dir=tmp_path / "cache",
        security=ServerSecurity(
            token=GIT_TOKEN, tls=ServerTls(pki.server_cert, pki.server_key, pki.ca)
        ),
    )
    yield server
    await server.stop(0)


async def test_the_registry_speaks_mutual_tls_with_a_token_when_configured(
    mtls_git_server: GitServer, repository: Path, pki: Pki, registry_for: Any
) -> None:
    tls = {
        "ca_file": str(pki.ca),
        "cert_file": str(pki.client_cert),
        "key_file": str(pki.client_key),
    }
    with_everything = config_for(
        repository, {"address": mtls_git_server.address, "token_env": TOKEN_ENV, **tls}
    )
    without_certificate = config_for(
        repository,
        {"address": mtls_git_server.address, "token_env": TOKEN_ENV, "ca_file": str(pki.ca)},
    )
    without_token = config_for(repository, {"address": mtls_git_server.address, **tls})

    def head(config: Any) -> Any:
        queue = config.queues[0]
        registry = registry_for(config, {TOKEN_ENV: GIT_TOKEN})
        return registry.source_control(queue).resolve_head(_source(queue), timeout_s=10.0)

    uri = await head(with_everything)
    no_certificate = await rpc_error(head(without_certificate))
    no_token = await rpc_error(head(without_token))

    assert uri
    assert no_certificate.code() is grpc.StatusCode.UNAVAILABLE
    assert no_token.code() is grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(
    ("endpoint", "problem"),
    [
        ({"token": GIT_TOKEN}, "a literal token is not allowed"),
        ({"token_env": "A", "token_file": "/t"}, "at most one of token_env or token_file"),
        ({"cert_file": "/c.pem"}, "cert_file and key_file go together"),
        ({"token_file": "relative/token"}, "must be an absolute path"),
        ({"token_env": GIT_TOKEN.replace("-", " ")}, "not the secret itself"),
    ],
)
def test_unusable_extension_credentials_are_configuration_errors(
    endpoint: dict[str, str], problem: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        config_from_mapping(
            {"extensions": {"sourcecontrol": {"git": {"address": "127.0.0.1:1", **endpoint}}}}
        )

    assert problem in str(raised.value)
    assert GIT_TOKEN not in str(raised.value)
