"""Errors a ProjectMapper implementation raises; the servicer maps them to status codes."""

from __future__ import annotations

import grpc


class InvalidMapInput(ValueError):
    """The request cannot be mapped (``INVALID_ARGUMENT``: retrying will not help)."""

    code = grpc.StatusCode.INVALID_ARGUMENT
