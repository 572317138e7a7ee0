"""Errors a BuildRunner implementation raises, and their one mapping to gRPC codes.

Hierarchy::

    BuildRunnerError                    (code: the gRPC status a server answers with)
    ├── BuildNotFound         NOT_FOUND         unknown, forgotten or evicted build id
    ├── TargetNotFound        NOT_FOUND         the build has no target of that name
    └── InvalidTrigger        INVALID_ARGUMENT  a trigger that can never start a build
    MalformedReply                              a server answered outside the contract

Servers turn a ``BuildRunnerError`` into its status code; in-process fakes turn it
into the ``grpc.aio.AioRpcError`` a client would have raised (``as_rpc_error``).
"""

from __future__ import annotations

import grpc


class BuildRunnerError(Exception):
    """Base of the errors a runner raises on purpose."""

    code = grpc.StatusCode.INTERNAL


class BuildNotFound(BuildRunnerError):
    code = grpc.StatusCode.NOT_FOUND

    def __init__(self, build_id: str) -> None:
        super().__init__(
            f"unknown build {build_id!r} (never triggered, evicted, or the runner restarted)"
        )


class TargetNotFound(BuildRunnerError):
    code = grpc.StatusCode.NOT_FOUND

    def __init__(self, build_id: str, target: str) -> None:
        super().__init__(f"build {build_id!r} has no target {target!r}")


class InvalidTrigger(BuildRunnerError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class MalformedReply(Exception):
    """The runner answered with something the contract does not allow (e.g. an
    unspecified state); a client-side defect or a version skew, not a build outcome."""


def as_rpc_error(error: BuildRunnerError) -> grpc.aio.AioRpcError:
    """The error a gRPC client would see had ``error`` been raised behind a server."""
    return rpc_error(error.code, str(error))


def rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    """Build an ``AioRpcError`` by hand, for fakes that stand in for a client."""
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details, None)
