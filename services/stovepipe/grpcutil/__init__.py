"""Shared gRPC plumbing: one way to start a server, one way to open a channel."""

from stovepipe.grpcutil.channel import open_channel, wait_for_ready
from stovepipe.grpcutil.server import BindError, GrpcServer, start_server

__all__ = ["BindError", "GrpcServer", "open_channel", "start_server", "wait_for_ready"]
