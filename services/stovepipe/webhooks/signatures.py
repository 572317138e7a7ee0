"""Is this delivery from the code host that knows our secret? One check per host dialect.

- GitHub signs the raw body with HMAC-SHA256 and sends ``X-Hub-Signature-256:
  sha256=<hex>``.
- Gitea and Forgejo sign the same way but send the bare hex digest in
  ``X-Gitea-Signature`` (Forgejo also in ``X-Forgejo-Signature``).
- GitLab signs nothing: it sends the secret itself in ``X-Gitlab-Token``.

Every comparison is constant-time. A missing header is as bad as a wrong one.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from stovepipe.config.webhooks import CodeHost


def _hmac_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(host: CodeHost, secret: str, headers: Mapping[str, str], body: bytes) -> bool:
    """True only when ``headers`` prove the sender holds ``secret`` (for ``body``)."""
    if host == "github":
        sent = headers.get("X-Hub-Signature-256", "")
        if not sent.startswith("sha256="):
            return False
        return hmac.compare_digest(sent.removeprefix("sha256="), _hmac_hex(secret, body))
    if host == "gitea":
        sent = headers.get("X-Gitea-Signature") or headers.get("X-Forgejo-Signature") or ""
        return bool(sent) and hmac.compare_digest(sent.lower(), _hmac_hex(secret, body))
    sent = headers.get("X-Gitlab-Token", "")
    return bool(sent) and hmac.compare_digest(sent.encode(), secret.encode())


def sign(host: CodeHost, secret: str, body: bytes) -> dict[str, str]:
    """The headers ``host`` would send for ``body``: for tests, benchmarks and the docs."""
    if host == "github":
        return {"X-Hub-Signature-256": "sha256=" + _hmac_hex(secret, body)}
    if host == "gitea":
        return {"X-Gitea-Signature": _hmac_hex(secret, body)}
    return {"X-Gitlab-Token": secret}
