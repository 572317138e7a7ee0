"""`stovepipe preflight`: every check passes on a ready installation, and each one fails
(or warns) with a fix when its part is broken — real broker, PostgreSQL, git, gRPC."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from stovepipe.config import StovepipeConfig, config_from_mapping
from stovepipe.extensions.sourcecontrol.git import serve as serve_git
from stovepipe.extensions.sourcecontrol.git import served_from_config
from stovepipe.grpcutil import ServerSecurity
from stovepipe.messaging import ensure_topics
from stovepipe.runtime.health import WorkerHealth
from stovepipe.runtime.preflight import Result, Status, run_checks
from stovepipe.runtime.processes import free_port
from stovepipe.runtime.registry import all_topics
from stovepipe.runtime.sample_repo import STEPS, SampleRepo
from stovepipe.runtime.wiring import kafka_settings

pytestmark = [pytest.mark.broker, pytest.mark.postgres]

CLI = [sys.executable, "-m", "stovepipe.cli.main"]
TOKEN_ENV = "PREFLIGHT_TEST_TOKEN"
GIT_TOKEN_ENV = "PREFLIGHT_GIT_TOKEN"


@dataclass
class Ready:
    """A configuration whose every part exists and answers."""

    data: dict[str, Any]
    env: dict[str, str]
    tmp: Path

    def config(self, **changes: Any) -> StovepipeConfig:
        data = yaml.safe_load(yaml.safe_dump(self.data))  # a deep copy
        for dotted, value in changes.items():
            *path, key = dotted.split("__")
            node = data
            for part in path:
                node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
            node[key] = value
        return config_from_mapping(data, "preflight.yaml", env=self.env)


@pytest.fixture
async def ready(
    tmp_path: Path, kafka_bootstrap: str, migrated_pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Ready]:
    repo = SampleRepo(tmp_path / "repo").init()
    repo.commit(STEPS[0])
    env = {TOKEN_ENV: "preflight-token-1", GIT_TOKEN_ENV: "preflight-git-token"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    queue = {
        "name": "pre/main",
        "source": {"repository": str(repo.path)},
        "build": {"targets": [{"name": "unit", "command": "true"}]},
    }
    runner = await WorkerHealth.open(f"127.0.0.1:{free_port()}")
    await runner.serving()
    git = await serve_git(
        "127.0.0.1:0",
        served=served_from_config(config_from_mapping({"queues": [queue]}, "q.yaml")),
        cache_dir=tmp_path / "git-cache",
        security=ServerSecurity(token=env[GIT_TOKEN_ENV]),
    )
    data = {
        "storage": {"url": migrated_pg_url},
        "kafka": {
            "bootstrap_servers": kafka_bootstrap,
            "topic_prefix": f"pf{free_port()}.",
            "partitions": 2,
        },
        "api": {
            "listen": "127.0.0.1:0",
            "tokens": [{"name": "ops", "role": "admin", "token_env": TOKEN_ENV}],
        },
        "extensions": {
            "sourcecontrol": {"git": {"address": git.address, "token_env": GIT_TOKEN_ENV}},
            "buildrunner": {"local": {"address": runner.address}},
        },
        "queues": [queue],
    }
    fixture = Ready(data, env, tmp_path)
    config = fixture.config()
    await ensure_topics(kafka_settings(config, "preflight-test"), all_topics())
    try:
        yield fixture
    finally:
        await git.stop()
        await runner.close()


def _by_check(results: list[Result]) -> dict[str, Result]:
    return {r.check: r for r in results}


def _bad(results: list[Result]) -> dict[str, Result]:
    return {r.check: r for r in results if r.status is not Status.PASS}


def _cert(path: Path, not_after: datetime) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "preflight")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_after - timedelta(days=400))
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path = path.with_suffix(".key")
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


async def test_a_ready_installation_passes_every_check(ready: Ready) -> None:
    results = await run_checks(ready.config())
    assert _bad(results) == {}
    checks = set(_by_check(results))
    assert {
        "broker",
        "broker: topics",
        "broker: partitions",
        "database",
        "api: listener",
        "extension: sourcecontrol.git",
        "extension: buildrunner.local",
        "repository: pre/main",
        "secret: api token 'ops'",
        "secret: extensions.sourcecontrol.git token",
    } <= checks


async def test_an_unreachable_broker_fails(ready: Ready) -> None:
    results = await run_checks(ready.config(kafka__bootstrap_servers=f"127.0.0.1:{free_port()}"))
    broker = _bad(results)["broker"]
    assert broker.status is Status.FAIL and "cannot reach" in broker.detail and broker.fix


async def test_missing_topics_fail_and_other_partition_counts_warn(ready: Ready) -> None:
    missing = _bad(await run_checks(ready.config(kafka__topic_prefix="never-created.")))
    assert missing["broker: topics"].status is Status.FAIL
    assert "missing" in missing["broker: topics"].detail
    other = _bad(await run_checks(ready.config(kafka__partitions=3)))
    assert set(other) == {"broker: partitions"}
    assert other["broker: partitions"].status is Status.WARN
    assert "kafka.partitions=3" in other["broker: partitions"].detail


async def test_an_unmigrated_or_unreachable_database_fails(ready: Ready, tmp_path: Path) -> None:
    empty = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    (tmp_path / "empty.db").touch()
    unmigrated = _bad(await run_checks(ready.config(storage__url=empty)))["database"]
    assert unmigrated.status is Status.FAIL and "stovepipe db upgrade" in unmigrated.fix
    missing_file = f"sqlite+aiosqlite:///{tmp_path / 'none.db'}"
    absent = _bad(await run_checks(ready.config(storage__url=missing_file)))["database"]
    assert absent.status is Status.FAIL and not (tmp_path / "none.db").exists()
    down = f"postgresql+asyncpg://app:secret-pw@127.0.0.1:{free_port()}/x"
    unreachable = _bad(await run_checks(ready.config(storage__url=down)))["database"]
    assert unreachable.status is Status.FAIL and "cannot reach" in unreachable.detail
    assert "secret-pw" not in unreachable.detail


async def test_an_extension_that_does_not_answer_fails(ready: Ready) -> None:
    address = f"127.0.0.1:{free_port()}"
    bad = _bad(await run_checks(ready.config(extensions__buildrunner__local__address=address)))
    assert bad["extension: buildrunner.local"].status is Status.FAIL
    assert address in bad["extension: buildrunner.local"].detail


async def test_an_unresolvable_secret_fails_without_showing_any_value(
    ready: Ready, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKEN_ENV)
    bad = _bad(await run_checks(ready.config()))
    assert bad["secret: api token 'ops'"].status is Status.FAIL
    assert bad["secret: api token 'ops'"].fix == f"export {TOKEN_ENV}"


async def test_an_api_on_the_network_without_tokens_fails(ready: Ready) -> None:
    bad = _bad(await run_checks(ready.config(api__listen="0.0.0.0:50051", api__tokens=[])))
    assert bad["api: listener"].status is Status.FAIL and "api.tokens" in bad["api: listener"].fix
    plaintext = _bad(await run_checks(ready.config(api__listen="0.0.0.0:50051")))
    assert "plaintext" in plaintext["api: listener"].detail


async def test_tls_files_expiring_soon_warn_and_expired_or_unreadable_fail(
    ready: Ready, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    soon = _cert(tmp_path / "soon.pem", now + timedelta(days=5))
    later = _cert(tmp_path / "later.pem", now + timedelta(days=90))
    expired = _cert(tmp_path / "expired.pem", now - timedelta(days=1))

    def tls(cert: Path, ca: str) -> dict[str, str]:
        return {
            "cert_file": str(cert),
            "key_file": str(cert.with_suffix(".key")),
            "client_ca_file": ca,
        }

    results = _by_check(await run_checks(ready.config(api__tls=tls(soon, str(later)))))
    assert results["tls: api.tls.cert_file"].status is Status.WARN
    assert (
        "5 days" in results["tls: api.tls.cert_file"].detail
        or "4 days" in results["tls: api.tls.cert_file"].detail
    )
    assert results["tls: api.tls.client_ca_file"].status is Status.PASS
    results = _by_check(
        await run_checks(ready.config(api__tls=tls(expired, str(tmp_path / "nope.pem"))))
    )
    assert results["tls: api.tls.cert_file"].status is Status.FAIL
    assert "expired" in results["tls: api.tls.cert_file"].detail
    assert results["tls: api.tls.client_ca_file"].status is Status.FAIL
    assert "cannot read" in results["tls: api.tls.client_ca_file"].detail


async def test_an_unreachable_repository_or_a_missing_branch_fails(
    ready: Ready, tmp_path: Path
) -> None:
    branch = _bad(await run_checks(ready.config(queues__0__source__ref="no-such-branch")))
    assert branch["repository: pre/main"].status is Status.FAIL
    gone = str(tmp_path / "gone.git")
    data = ready.config().model_dump(mode="json", exclude_none=True)
    data["queues"][0]["source"]["repository"] = gone
    data["extensions"]["sourcecontrol"]["git"].pop("address")  # the built-in git, via ls-remote
    data["extensions"]["sourcecontrol"]["git"].pop("token_env")
    config = config_from_mapping(data, "preflight.yaml", env=ready.env)
    repository = _bad(await run_checks(config))["repository: pre/main"]
    assert repository.status is Status.FAIL and gone in repository.detail


def _preflight(config: StovepipeConfig, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    path = tmp / "preflight.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True)))
    return subprocess.run(
        [*CLI, "preflight", "--config", str(path), *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=120,
        check=False,
    )


async def test_the_command_exit_codes_strict_and_json(ready: Ready, tmp_path: Path) -> None:
    ok = await asyncio.to_thread(_preflight, ready.config(), tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "PASS" in ok.stdout and "ready" in ok.stdout.splitlines()[-1]
    warned = ready.config(kafka__partitions=3)
    lenient = await asyncio.to_thread(_preflight, warned, tmp_path)
    assert lenient.returncode == 0 and "WARN" in lenient.stdout
    strict = await asyncio.to_thread(_preflight, warned, tmp_path, "--strict", "--json")
    assert strict.returncode == 1
    document = json.loads(strict.stdout)
    assert document["ok"] is False and document["strict"] is True
    statuses = {c["check"]: c["status"] for c in document["checks"]}
    assert statuses["broker: partitions"] == "warn"
    broken = tmp_path / "broken.yaml"
    broken.write_text("queues: [{name: 'BAD NAME'}]\n")
    bad = await asyncio.to_thread(
        subprocess.run,
        [*CLI, "preflight", "--config", str(broken)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2 and "configuration error" in bad.stderr
