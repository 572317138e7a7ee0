"""Shared gRPC plumbing: one way to start a server, one way to open a channel, one way
for an extension server to authenticate its callers (``stovepipe.grpcutil.auth``)."""

from stovepipe.grpcutil.auth import ChannelSecurity, InsecureListen, ServerSecurity, ServerTls
from stovepipe.grpcutil.channel import open_channel, wait_for_ready
from stovepipe.grpcutil.server import BindError, GrpcServer, start_server

__all__ = [
    "BindError",
    "ChannelSecurity",
    "GrpcServer",
    "InsecureListen",
    "ServerSecurity",
    "ServerTls",
    "open_channel",
    "start_server",
    "wait_for_ready",
]
