"""Bearer-token authorisation with roles: ingest, read, admin.

With no tokens configured (the embedded default on loopback) every call is
allowed. With tokens, each method needs a role; ``admin`` has every role.
Tokens are compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc

SERVICE = "/stovepipe.v1.StovepipeService/"
METHOD_ROLES: Mapping[str, str] = {
    "Ping": "read",
    "Ingest": "ingest",
    "GetRequest": "read",
    "GetLastGreen": "read",
    "GetGreenness": "read",
    "ListFacts": "read",
    "WatchEvents": "read",
    "Revalidate": "admin",
    "GetBuildLog": "read",
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
        needed = METHOD_ROLES.get(method.removeprefix(SERVICE), "admin")
        metadata = dict(handler_call_details.invocation_metadata or ())
        header = str(metadata.get("authorization", ""))
        role = self._role_of(header.removeprefix("Bearer ").strip()) if header else None
        if role is None:
            return _deny(grpc.StatusCode.UNAUTHENTICATED, "missing or unknown bearer token")
        if role != "admin" and role != needed:
            return _deny(grpc.StatusCode.PERMISSION_DENIED, f"this call needs the {needed!r} role")
        return await continuation(handler_call_details)


def _deny(code: grpc.StatusCode, details: str) -> grpc.RpcMethodHandler[Any, Any]:
    async def abort(_request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(code, details)

    return grpc.unary_unary_rpc_method_handler(abort)
