"""Serve any ``SourceControl`` implementation as ``stovepipe.ext.v1.SourceControlService``.

This is the server-side half of the error mapping: a ``SourceControlError``
becomes its status code, an ``AioRpcError`` (what the fake raises) keeps its
own, and anything else is an INTERNAL error whose details stay in the server
log (they may hold paths or output nobody vetted for a client).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import TypeVar

import grpc

from stovepipe.ext.v1 import source_control_pb2 as pb
from stovepipe.ext.v1 import source_control_pb2_grpc as pb_grpc
from stovepipe.extensions.sourcecontrol.codec import (
    decode_source,
    encode_ancestry,
    encode_commit,
)
from stovepipe.extensions.sourcecontrol.contract import SourceControl
from stovepipe.extensions.sourcecontrol.errors import SourceControlError

SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["SourceControlService"].full_name

Context = grpc.aio.ServicerContext[object, object]
_T = TypeVar("_T")
_log = logging.getLogger(__name__)


async def _answer(context: Context, method: str, queue: str, call: Awaitable[_T]) -> _T:
    try:
        return await call
    except SourceControlError as exc:
        _log.warning("%s for queue %r: %s: %s", method, queue, exc.code.name, exc)
        code, details = exc.code, str(exc)
    except grpc.aio.AioRpcError as exc:
        code, details = exc.code(), exc.details() or ""
    except Exception:
        _log.exception("%s for queue %r failed unexpectedly", method, queue)
        code, details = grpc.StatusCode.INTERNAL, f"{method} failed unexpectedly; see the log"
    await context.abort(code, details)
    raise AssertionError("unreachable: abort raises")


def _remaining(context: Context) -> float | None:
    return context.time_remaining()


class SourceControlServicer(pb_grpc.SourceControlServiceServicer):
    """Adapts a ``SourceControl`` to the generated servicer interface.

    The caller's deadline becomes the implementation's ``timeout_s``, so work
    nobody waits for any more is abandoned rather than finished.
    """

    def __init__(self, backend: SourceControl) -> None:
        self._backend = backend

    def register(self, server: grpc.aio.Server) -> None:
        """A ``grpcutil`` registrar."""
        pb_grpc.add_SourceControlServiceServicer_to_server(self, server)

    async def ResolveHead(
        self, request: pb.ResolveHeadRequest, context: Context
    ) -> pb.ResolveHeadResponse:
        source = decode_source(request.source)
        uri = await _answer(
            context,
            "ResolveHead",
            source.queue,
            self._backend.resolve_head(source, timeout_s=_remaining(context)),
        )
        return pb.ResolveHeadResponse(uri=uri)

    async def IsAncestor(
        self, request: pb.IsAncestorRequest, context: Context
    ) -> pb.IsAncestorResponse:
        source = decode_source(request.source)
        ancestry = await _answer(
            context,
            "IsAncestor",
            source.queue,
            self._backend.is_ancestor(
                source,
                request.ancestor_uri,
                request.descendant_uri,
                timeout_s=_remaining(context),
            ),
        )
        return pb.IsAncestorResponse(ancestry=encode_ancestry(ancestry))

    async def ListCommits(
        self, request: pb.ListCommitsRequest, context: Context
    ) -> pb.ListCommitsResponse:
        source = decode_source(request.source)
        uris = await _answer(
            context,
            "ListCommits",
            source.queue,
            self._backend.list_commits(
                source,
                request.base_uri,
                request.head_uri,
                request.limit,
                timeout_s=_remaining(context),
            ),
        )
        return pb.ListCommitsResponse(uris=uris)

    async def ChangedFiles(
        self, request: pb.ChangedFilesRequest, context: Context
    ) -> pb.ChangedFilesResponse:
        source = decode_source(request.source)
        paths = await _answer(
            context,
            "ChangedFiles",
            source.queue,
            self._backend.changed_files(
                source, request.base_uri, request.head_uri, timeout_s=_remaining(context)
            ),
        )
        return pb.ChangedFilesResponse(paths=paths)

    async def DescribeCommit(
        self, request: pb.DescribeCommitRequest, context: Context
    ) -> pb.DescribeCommitResponse:
        source = decode_source(request.source)
        info = await _answer(
            context,
            "DescribeCommit",
            source.queue,
            self._backend.describe_commit(source, request.uri, timeout_s=_remaining(context)),
        )
        return encode_commit(info)

    async def Promote(self, request: pb.PromoteRequest, context: Context) -> pb.PromoteResponse:
        source = decode_source(request.source)
        result = await _answer(
            context,
            "Promote",
            source.queue,
            self._backend.promote(
                source, request.uri, request.promotion_ref, timeout_s=_remaining(context)
            ),
        )
        return pb.PromoteResponse(previous_uri=result.previous_uri, moved=result.moved)
