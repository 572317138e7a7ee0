"""Bearer-token authorisation with roles: ingest, read, admin.

With no tokens configured (the embedded default on loopback) every call is
allowed. With tokens, each method needs one of its roles; ``admin`` has every
role. ``GetRequest`` also admits ``ingest``: a poller or CI job that ingests a
head must be able to follow the Request it created (``ingest --wait``); a
Request carries nothing an ingest token could not learn by ingesting.
Tokens are compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc

SERVICE = "/stovepipe.v1.StovepipeService/"
METHOD_ROLES: Mapping[str, frozenset[str]] = {
    "Ping": frozenset({"read"}),
    "Ingest": frozenset({"ingest"}),
    "GetRequest": frozenset({"read", "ingest"}),
    "GetLastGreen": frozenset({"read"}),
    "GetGreenness": frozenset({"read"}),
    "GetProjectGreenness": frozenset({"read"}),
    "ListFacts": frozenset({"read"}),
    "WatchEvents": frozenset({"read"}),
    "WaitForGreenness": frozenset({"read"}),
    "ListRequests": frozenset({"read"}),
    "ListQueues": frozenset({"read"}),
    "Revalidate": frozenset({"admin"}),
    "ListHookDeliveries": frozenset({"read"}),
    "GetHookDelivery": frozenset({"read"}),
    "RedeliverHook": frozenset({"admin"}),
    "GetBuildLog": frozenset({"read"}),
}


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Rejects calls to StovepipeService without a token that carries the method's role."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        """``tokens`` maps each secret token to its role."""
        self._tokens = dict(tokens)

    def _role_of(self, presented: str) -> str | None:
        found = None
        for token, role in self._tokens.items():
            if hmac.compare_digest(token.encode(), presented.encode()):
                found = role
        return found

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        method = handler_call_details.method
        if not self._tokens or not method.startswith(SERVICE):
            return await continuation(handler_call_details)
        needed = METHOD_ROLES.get(method.removeprefix(SERVICE), frozenset({"admin"}))
        metadata = dict(handler_call_details.invocation_metadata or ())
        header = str(metadata.get("authorization", ""))
        role = self._role_of(header.removeprefix("Bearer ").strip()) if header else None
        if role is None:
            return _deny(grpc.StatusCode.UNAUTHENTICATED, "missing or unknown bearer token")
        if role != "admin" and role not in needed:
            wanted = " or ".join(repr(r) for r in sorted(needed))
            return _deny(grpc.StatusCode.PERMISSION_DENIED, f"this call needs the {wanted} role")
        return await continuation(handler_call_details)


def _deny(code: grpc.StatusCode, details: str) -> grpc.RpcMethodHandler[Any, Any]:
    async def abort(_request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(code, details)

    return grpc.unary_unary_rpc_method_handler(abort)
