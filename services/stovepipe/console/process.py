"""``stovepipe console``: the console as a process (uvicorn serving :mod:`.app`).

Refuses to start, with exit code 2 and one line saying why, when a setting
cannot work: an unreadable TLS file or secret, or login tokens that would
cross a network in plaintext (the same rule as the API's bearer tokens).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import urllib.request
from pathlib import Path
from typing import NoReturn

import grpc
import uvicorn

from stovepipe.api.transport import is_loopback
from stovepipe.config import StovepipeConfig
from stovepipe.config.errors import SecretUnavailable
from stovepipe.config.secrets import resolve_secret
from stovepipe.config.sections import TlsConfig
from stovepipe.console.access import Access
from stovepipe.console.app import QueueInfo, create_app
from stovepipe.console.client import ConsoleClient
from stovepipe.grpcutil import ChannelSecurity
from stovepipe.telemetry.process import process_telemetry

log = logging.getLogger(__name__)

EXIT_MISCONFIGURED = 2


class ConsoleMisconfigured(Exception):
    """The console cannot run as configured; the message says what to change."""


def console_tls(config: StovepipeConfig) -> TlsConfig | None:
    """The console's own TLS: ``console.tls``, else the API's."""
    return config.console.tls or config.api.tls


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def build_client(config: StovepipeConfig) -> ConsoleClient:
    """A client of the configured API with the console's read token (and admin token)."""
    endpoint = config.console.api
    address = endpoint.address or config.api.listen
    if config.api.tokens and endpoint.secret_ref() is None and not endpoint.address:
        raise ConsoleMisconfigured(
            "api.tokens is set, so the console needs a read token of its own: name it "
            "in console.api.token_env or console.api.token_file"
        )
    try:
        token = resolve_secret(ref) if (ref := endpoint.secret_ref()) is not None else None
        admin_ref = config.console.admin_secret_ref()
        admin = resolve_secret(admin_ref) if admin_ref is not None else None
    except SecretUnavailable as exc:
        raise ConsoleMisconfigured(str(exc)) from None
    credentials: grpc.ChannelCredentials | None = None
    try:
        security = ChannelSecurity(
            ca_file=_path(endpoint.ca_file),
            cert_file=_path(endpoint.cert_file),
            key_file=_path(endpoint.key_file),
        )
        credentials = security.channel_credentials()
    except OSError as exc:
        raise ConsoleMisconfigured(f"console.api: cannot read {exc.filename}") from None
    if credentials is None and config.api.tls is not None:
        credentials = grpc.ssl_channel_credentials()  # the system's CAs
    return ConsoleClient(address, token=token, credentials=credentials, admin_token=admin)


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def build_access(config: StovepipeConfig) -> Access:
    try:
        tokens = {t.name: resolve_secret(t) for t in config.console.login_tokens}
    except SecretUnavailable as exc:
        raise ConsoleMisconfigured(str(exc)) from None
    tls = console_tls(config)
    plaintext = tls is None and not config.console.allow_insecure
    if tokens and plaintext and not is_loopback(config.console.listen):
        raise ConsoleMisconfigured(
            f"refusing to accept console login tokens in plaintext on {config.console.listen}: "
            "configure console.tls (or api.tls), listen on loopback, or set "
            "console.allow_insecure: true when a TLS-terminating proxy is in front"
        )
    return Access(tokens, config.console.proxy_user_header)


def uvicorn_config(config: StovepipeConfig, listen: str | None = None) -> uvicorn.Config:
    """The uvicorn settings for the console of ``config`` (``ConsoleMisconfigured``)."""
    access = build_access(config)
    client = build_client(config)
    queues = [
        QueueInfo(
            q.name,
            tuple(q.project_names),
            q.promotion_ref.removeprefix("refs/heads/") if q.promotion_ref else None,
            tuple(h.name for h in q.hooks),
        )
        for q in config.queues
    ]
    app = create_app(client, queues, access, page_size=config.console.page_size)
    host, port = _split(listen or config.console.listen)
    tls = console_tls(config)
    options: dict[str, object] = {}
    if tls is not None:
        for setting, path in (("cert_file", tls.cert_file), ("key_file", tls.key_file)):
            try:
                with open(path, "rb"):
                    pass
            except OSError as exc:
                raise ConsoleMisconfigured(
                    f"console tls {setting}: cannot read {path}: {exc.strerror}"
                ) from None
        options = {"ssl_certfile": tls.cert_file, "ssl_keyfile": tls.key_file}
        if tls.client_ca_file:
            options |= {"ssl_ca_certs": tls.client_ca_file, "ssl_cert_reqs": ssl.CERT_REQUIRED}
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="info",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
        **options,  # type: ignore[arg-type]
    )


async def run_console(
    config: StovepipeConfig,
    listen: str | None = None,
    *,
    metrics_port: int | None = None,
    metrics_host: str | None = None,
) -> None:
    """Serve until SIGTERM / Ctrl-C; with a metrics port (argument or
    ``telemetry.metrics_port``), serve ``/metrics`` on it (a port of its own, so a
    scrape never needs a console login)."""
    with process_telemetry(config, "console", metrics_port=metrics_port, metrics_host=metrics_host):
        try:
            settings = uvicorn_config(config, listen)
        except ConsoleMisconfigured as exc:
            _fail(str(exc))
        server = uvicorn.Server(settings)
        scheme = "https" if settings.is_ssl else "http"
        print(f"console on {scheme}://{listen or config.console.listen}", flush=True)
        await server.serve()


def _fail(message: str) -> NoReturn:
    log.error("cannot start: %s", message)
    print(f"stovepipe console: {message}", flush=True)
    raise SystemExit(EXIT_MISCONFIGURED)


async def console_ready(url: str) -> bool:
    """True when ``url``/healthz answers 200 (a loopback probe: the certificate is not
    checked, only that the console and the API behind it answer)."""

    def probe() -> bool:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with urllib.request.urlopen(f"{url}/healthz", timeout=3, context=context) as answer:  # noqa: S310
            return int(answer.status) == 200

    return await asyncio.to_thread(probe)
