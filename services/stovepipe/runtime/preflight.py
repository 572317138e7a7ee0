"""``stovepipe preflight``: is this configuration ready to run, and if not, what to do.

Each check answers ``pass``, ``warn`` or ``fail`` with one line of detail and,
unless it passed, one line saying how to fix it. Checks never raise: whatever
goes wrong while checking is that check's failure. Nothing is created or
changed (topics are listed, never described into existence; the schema is
read, never upgraded), so preflight is safe to run against production.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import subprocess
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alembic.script import ScriptDirectory
from cryptography import x509

from stovepipe.api.transport import is_loopback
from stovepipe.config import StovepipeConfig, resolve_secret
from stovepipe.config.errors import SecretUnavailable
from stovepipe.config.secrets import SecretRef
from stovepipe.failures import short_reason
from stovepipe.messaging import topic_partitions
from stovepipe.redaction import redact_url
from stovepipe.runtime.extension_registry import ExtensionRegistry
from stovepipe.runtime.health import check_health, tls_credentials
from stovepipe.runtime.registry import all_topics
from stovepipe.runtime.wiring import kafka_settings
from stovepipe.stages.ports import queue_source
from stovepipe.storage.migrate import alembic_config, current_revision_async

EXPIRY_WARNING = timedelta(days=14)
TIMEOUT_S = 10.0


class Status(enum.StrEnum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Result:
    """One check's answer. ``fix`` is empty for a pass."""

    check: str
    status: Status
    detail: str
    fix: str = ""


def passed(check: str, detail: str) -> Result:
    return Result(check, Status.PASS, detail)


def warned(check: str, detail: str, fix: str) -> Result:
    return Result(check, Status.WARN, detail, fix)


def failed(check: str, detail: str, fix: str) -> Result:
    return Result(check, Status.FAIL, detail, fix)


def exit_code(results: Iterable[Result], *, strict: bool) -> int:
    """0 when nothing failed (nor warned, under ``strict``), 1 otherwise."""
    bad = {Status.FAIL, Status.WARN} if strict else {Status.FAIL}
    return 1 if any(r.status in bad for r in results) else 0


# -- secrets -------------------------------------------------------------------------------


def _secret_refs(config: StovepipeConfig) -> list[tuple[str, SecretRef]]:
    refs: list[tuple[str, SecretRef]] = [
        (f"api token {t.name!r}", t.secret_ref()) for t in config.api.tokens
    ]
    for kind in ("sourcecontrol", "buildrunner"):
        for name, endpoint in getattr(config.extensions, kind).items():
            if (ref := endpoint.secret_ref()) is not None:
                refs.append((f"extensions.{kind}.{name} token", ref))
    if (ref := config.kafka.secret_ref()) is not None:
        refs.append(("kafka SASL password", ref))
    return refs


def check_secrets(config: StovepipeConfig, env: Mapping[str, str] | None = None) -> list[Result]:
    """Every secret reference resolves (the values are read, never shown)."""
    results = []
    for owner, ref in _secret_refs(config):
        check = f"secret: {owner}"
        try:
            resolve_secret(dataclasses.replace(ref, owner=owner), env)
        except SecretUnavailable as exc:
            where = f"export {ref.env}" if ref.env else f"write the secret to {ref.file} (0600)"
            results.append(failed(check, "; ".join(p.message for p in exc.problems), where))
            continue
        results.append(passed(check, f"readable from {'$' + ref.env if ref.env else ref.file}"))
    if not results:
        results.append(passed("secrets", "no secret references configured"))
    return results


# -- API listener --------------------------------------------------------------------------


def check_api_listener(config: StovepipeConfig) -> Result:
    api = config.api
    check = "api: listener"
    if is_loopback(api.listen):
        return passed(check, f"{api.listen} is loopback only")
    if not api.tokens:
        return failed(
            check,
            f"{api.listen} is reachable from the network and api.tokens is empty: every "
            "caller may ingest and re-validate",
            "add api.tokens (a role per caller), or listen on 127.0.0.1",
        )
    if api.tls is None and not api.allow_insecure:
        return failed(
            check,
            f"tokens would cross the network in plaintext on {api.listen}",
            "configure api.tls, or set api.allow_insecure: true behind a TLS-terminating proxy",
        )
    scheme = "TLS" if api.tls is not None else "plaintext behind an encrypting proxy"
    return passed(check, f"{api.listen} with {len(api.tokens)} token(s), {scheme}")


# -- TLS files -----------------------------------------------------------------------------


def _tls_files(config: StovepipeConfig) -> list[tuple[str, str, bool]]:
    """``(setting, path, is_certificate)`` for every TLS file configured."""
    files: list[tuple[str, str, bool]] = []
    if (tls := config.api.tls) is not None:
        files += [
            ("api.tls.cert_file", tls.cert_file, True),
            ("api.tls.key_file", tls.key_file, False),
        ]
        if tls.client_ca_file:
            files.append(("api.tls.client_ca_file", tls.client_ca_file, True))
    kafka = config.kafka
    for key, is_cert in (("ssl_ca_file", True), ("ssl_cert_file", True), ("ssl_key_file", False)):
        if (path := getattr(kafka, key)) is not None:
            files.append((f"kafka.{key}", str(path), is_cert))
    for kind in ("sourcecontrol", "buildrunner"):
        for name, endpoint in getattr(config.extensions, kind).items():
            for key, is_cert in (("ca_file", True), ("cert_file", True), ("key_file", False)):
                if (path := getattr(endpoint, key)) is not None:
                    files.append((f"extensions.{kind}.{name}.{key}", path, is_cert))
    return files


def check_tls_files(config: StovepipeConfig, now: datetime | None = None) -> list[Result]:
    """Every TLS file is readable; every certificate in one is valid for 14 more days."""
    now = now or datetime.now(UTC)
    results = []
    for setting, path, is_certificate in _tls_files(config):
        check = f"tls: {setting}"
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            results.append(
                failed(
                    check, f"cannot read {path}: {exc.strerror}", f"fix the path or mode of {path}"
                )
            )
            continue
        if not is_certificate:
            results.append(passed(check, f"{path} readable"))
            continue
        try:
            certificates = x509.load_pem_x509_certificates(data)
        except ValueError:
            results.append(
                failed(check, f"{path} holds no PEM certificate", f"point {setting} at a PEM file")
            )
            continue
        ends = min(c.not_valid_after_utc for c in certificates)
        left = ends - now
        if left <= timedelta(0):
            results.append(
                failed(
                    check, f"{path} expired on {ends:%Y-%m-%d}", f"renew the certificate in {path}"
                )
            )
        elif left < EXPIRY_WARNING:
            results.append(
                warned(
                    check,
                    f"{path} expires on {ends:%Y-%m-%d} ({left.days} days)",
                    f"renew the certificate in {path} before it expires",
                )
            )
        else:
            results.append(passed(check, f"{path} valid until {ends:%Y-%m-%d}"))
    return results


# -- broker --------------------------------------------------------------------------------


async def check_broker(config: StovepipeConfig) -> list[Result]:
    """The cluster answers and every topic exists with ``kafka.partitions`` partitions."""
    kafka = config.kafka
    if not kafka.bootstrap_servers:
        return [
            warned(
                "broker",
                "kafka.bootstrap_servers is empty: only `stovepipe up` can run this "
                "(it starts an embedded, memory-only broker)",
                "name your Kafka cluster in kafka.bootstrap_servers for production",
            )
        ]
    try:
        settings = kafka_settings(config, "stovepipe-preflight")
        wanted = [settings.topic(t) for t in all_topics()]
        found = await asyncio.wait_for(topic_partitions(settings, all_topics()), TIMEOUT_S)
    except Exception as exc:
        return [
            failed(
                "broker",
                f"cannot reach {kafka.bootstrap_servers}: {short_reason(exc)}",
                "start the cluster, or correct kafka.bootstrap_servers and its security settings",
            )
        ]
    results = [passed("broker", f"{kafka.bootstrap_servers} answers")]
    missing = [t for t in wanted if t not in found]
    if missing:
        results.append(
            failed(
                "broker: topics",
                f"{len(missing)} of {len(wanted)} topics missing: {', '.join(missing[:4])}"
                + (" ..." if len(missing) > 4 else ""),
                f"start any worker once (it creates them), or create them with "
                f"{kafka.partitions} partitions",
            )
        )
    else:
        results.append(passed("broker: topics", f"all {len(wanted)} topics present"))
    wrong = {t: n for t, n in found.items() if n != kafka.partitions}
    if wrong:
        sample = ", ".join(f"{t} has {n}" for t, n in list(wrong.items())[:3])
        results.append(
            warned(
                "broker: partitions",
                f"{len(wrong)} topics differ from kafka.partitions={kafka.partitions}: {sample}",
                "set kafka.partitions to the topics' count, or add partitions to the topics",
            )
        )
    elif found:
        results.append(
            passed("broker: partitions", f"every topic has {kafka.partitions} partitions")
        )
    return results


# -- database ------------------------------------------------------------------------------


async def check_database(config: StovepipeConfig) -> Result:
    url = config.storage.url
    shown = redact_url(url)
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if (path := _sqlite_path(url)) is not None and not path.exists():
        return failed(
            "database",
            f"{shown}: the database file does not exist",
            "run `stovepipe db upgrade` (it creates the file and the schema)",
        )
    try:
        current = await asyncio.wait_for(current_revision_async(url), TIMEOUT_S)
    except Exception as exc:
        return failed(
            "database",
            f"cannot reach {shown}: {short_reason(exc)}",
            "start the database, or correct storage.url / STOVEPIPE_DATABASE_URL",
        )
    if current != head:
        return failed(
            "database",
            f"{shown} is at revision {current or 'none (empty)'}, the code needs {head}",
            "run `stovepipe db upgrade`",
        )
    return passed("database", f"{shown} migrated to {head}")


def _sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL: checked before connecting, which would create it."""
    if url.startswith("sqlite") and ":///" in url:
        return Path(url.split(":///", 1)[1].split("?", 1)[0])
    return None


# -- extensions and repositories -----------------------------------------------------------


async def check_extensions(config: StovepipeConfig) -> list[Result]:
    """Every extension a Queue uses answers gRPC health SERVING."""
    used = {
        "sourcecontrol": {q.source.extension for q in config.queues},
        "buildrunner": {q.build.runner for q in config.queues},
    }
    results = []
    for kind, names in used.items():
        for name in sorted(names):
            check = f"extension: {kind}.{name}"
            endpoint = getattr(config.extensions, kind).get(name)
            if endpoint is None or not endpoint.address:
                results.append(
                    warned(
                        check,
                        "no address: only `stovepipe up` starts this extension",
                        f"set extensions.{kind}.{name}.address to the server's host:port",
                    )
                )
                continue
            try:
                credentials = None
                if endpoint.ca_file or endpoint.cert_file:
                    credentials = tls_credentials(
                        Path(endpoint.ca_file) if endpoint.ca_file else None,
                        Path(endpoint.cert_file) if endpoint.cert_file else None,
                        Path(endpoint.key_file) if endpoint.key_file else None,
                    )
                answer = await check_health(
                    endpoint.address, timeout_s=TIMEOUT_S / 2, credentials=credentials
                )
            except OSError as exc:
                answer_text, serving = f"cannot read its TLS files: {exc.strerror}", False
            else:
                answer_text, serving = answer.said, answer.serving
            if serving:
                results.append(passed(check, f"{endpoint.address} SERVING"))
            else:
                results.append(
                    failed(
                        check,
                        f"{endpoint.address}: {answer_text}",
                        f"start the {kind} server at {endpoint.address}, or correct its address",
                    )
                )
    return results


async def check_repositories(
    config: StovepipeConfig, env: Mapping[str, str] | None = None
) -> list[Result]:
    """Every Queue's repository answers and its ref exists: through its SourceControl
    extension when that has an address, else (the built-in git) with ``git ls-remote``."""
    results = []
    registry: ExtensionRegistry | None = None
    try:
        registry = ExtensionRegistry(config, env)
    except SecretUnavailable:
        registry = None  # reported by the secrets check
    try:
        for queue in config.queues:
            check = f"repository: {queue.name}"
            source = queue_source(queue)
            endpoint = config.extensions.sourcecontrol.get(queue.source.extension)
            try:
                if endpoint is not None and endpoint.address and registry is not None:
                    head = await asyncio.wait_for(
                        registry.source_control(queue).resolve_head(source), TIMEOUT_S
                    )
                    detail = f"{queue.source.ref} at {head}"
                else:
                    detail = await asyncio.to_thread(_ls_remote, source.repository, source.ref)
            except Exception as exc:
                results.append(
                    failed(
                        check,
                        f"{queue.source.repository} ref {queue.source.ref}: {short_reason(exc)}",
                        "check the repository is reachable with this host's credentials and "
                        "the branch exists",
                    )
                )
                continue
            results.append(passed(check, detail))
    finally:
        if registry is not None:
            await registry.close()
    return results


def _ls_remote(repository: str, ref: str) -> str:
    branch = ref if ref.startswith("refs/") else f"refs/heads/{ref}"
    done = subprocess.run(
        ["git", "ls-remote", "--exit-code", repository, branch],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
        env={"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin:/usr/local/bin"},
    )
    if done.returncode == 2:
        raise LookupError(f"no branch {branch}")
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["git ls-remote failed"]
        raise RuntimeError(next((x for x in lines if x.startswith("fatal:")), lines[0]))
    return f"{branch} at {done.stdout.split()[0][:12]}"


# -- all of them ---------------------------------------------------------------------------


async def run_checks(config: StovepipeConfig) -> list[Result]:
    """Every check, in the order an operator fixes things."""
    results = check_secrets(config)
    results.append(check_api_listener(config))
    results += check_tls_files(config)
    network: list[Callable[[], Awaitable[list[Result]]]] = [
        lambda: check_broker(config),
        lambda: _one(check_database(config)),
        lambda: check_extensions(config),
        lambda: check_repositories(config),
    ]
    for found in await asyncio.gather(*(check() for check in network)):
        results += found
    return results


async def _one(result: Awaitable[Result]) -> list[Result]:
    return [await result]
