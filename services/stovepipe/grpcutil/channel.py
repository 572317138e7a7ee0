"""Open client channels to Stovepipe servers and extensions."""

from __future__ import annotations

import asyncio
import logging

import grpc

from stovepipe.grpcutil.auth import ChannelSecurity, bearer_token_interceptors, is_loopback
from stovepipe.grpcutil.server import MAX_MESSAGE_BYTES

_log = logging.getLogger(__name__)


def open_channel(
    address: str,
    *,
    credentials: grpc.ChannelCredentials | None = None,
    security: ChannelSecurity | None = None,
) -> grpc.aio.Channel:
    """An aio channel with the same message-size limits as our servers.

    With ``security`` the channel presents its bearer token on every call and, when
    it asks for TLS, verifies the server (and presents a client certificate);
    ``credentials``, when also given, replaces its TLS settings.
    """
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ]
    token = security.token if security is not None else None
    if credentials is None and security is not None:
        credentials = security.channel_credentials()
    if credentials is None:
        if token is not None and not is_loopback(address):
            _log.warning(
                "sending a bearer token to %s without TLS: it crosses the network in clear "
                "text; configure a CA (ca_file) for this server",
                address,
            )
        interceptors = bearer_token_interceptors(token) if token is not None else None
        return grpc.aio.insecure_channel(
            address,
            options=options,
            interceptors=interceptors,  # type: ignore[arg-type]  # untyped in grpc-stubs
        )
    if token is not None:
        credentials = grpc.composite_channel_credentials(
            credentials, grpc.access_token_call_credentials(token)
        )
    return grpc.aio.secure_channel(address, credentials, options=options)


async def wait_for_ready(channel: grpc.aio.Channel, deadline_s: float) -> None:
    """Wait until ``channel`` connects, raising ``TimeoutError`` with the deadline."""
    try:
        await asyncio.wait_for(channel.channel_ready(), deadline_s)
    except TimeoutError as exc:
        raise TimeoutError(f"gRPC peer not ready after {deadline_s:.1f}s") from exc
