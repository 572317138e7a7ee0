"""Open client channels to Stovepipe servers and extensions."""

from __future__ import annotations

import asyncio

import grpc

from stovepipe.grpcutil.server import MAX_MESSAGE_BYTES


def open_channel(
    address: str, *, credentials: grpc.ChannelCredentials | None = None
) -> grpc.aio.Channel:
    """An aio channel with the same message-size limits as our servers."""
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ]
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=options)
    return grpc.aio.secure_channel(address, credentials, options=options)


async def wait_for_ready(channel: grpc.aio.Channel, deadline_s: float) -> None:
    """Wait until ``channel`` connects, raising ``TimeoutError`` with the deadline."""
    try:
        await asyncio.wait_for(channel.channel_ready(), deadline_s)
    except TimeoutError as exc:
        raise TimeoutError(f"gRPC peer not ready after {deadline_s:.1f}s") from exc
