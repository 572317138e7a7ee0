"""Who may look at the console, and the guard on its one write action.

Three modes, from the ``console`` section:

- open (no ``login_tokens``, no ``proxy_user_header``): anyone who reaches the
  listener reads; keep it on loopback or behind something that authenticates;
- login tokens: a person signs in once with a token; the console then sets a
  cookie holding the token's *name* and an HMAC of it under a key made fresh
  for each process (a restart signs everyone out, and the token itself never
  travels again);
- reverse-proxy header: the proxy that authenticated the user names them in
  ``proxy_user_header``; a request without it is refused.

Re-validation posts a form whose ``confirm`` token is an HMAC of the Queue and
the commit under the same process key, so a page elsewhere cannot make a
signed-in browser post it (a cross-site request has no way to read the token).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping

COOKIE = "stovepipe_console"


class Access:
    def __init__(self, login_tokens: Mapping[str, str], proxy_header: str | None) -> None:
        """``login_tokens`` maps each name to its secret token."""
        self._tokens = dict(login_tokens)
        self.proxy_header = proxy_header.lower() if proxy_header else None
        self._key = secrets.token_bytes(32)

    @property
    def open(self) -> bool:
        return not self._tokens and self.proxy_header is None

    @property
    def uses_login(self) -> bool:
        return bool(self._tokens)

    def _sign(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    def login(self, presented: str) -> str | None:
        """The cookie value for a correct token, else None (constant-time compare)."""
        found = None
        for name, token in self._tokens.items():
            if hmac.compare_digest(token.encode(), presented.encode()):
                found = name
        return f"{found}.{self._sign(found)}" if found is not None else None

    def user(self, headers: Mapping[str, str], cookies: Mapping[str, str]) -> str | None:
        """Who is asking, or None when they must sign in / be refused."""
        if self.open:
            return "anyone"
        if self.proxy_header is not None:
            named = headers.get(self.proxy_header, "").strip()
            if named:
                return named
        cookie = cookies.get(COOKIE, "")
        name, _, signature = cookie.rpartition(".")
        if name in self._tokens and hmac.compare_digest(signature, self._sign(name)):
            return name
        return None

    def confirm_token(self, queue: str, uri: str) -> str:
        return self._sign(f"revalidate\n{queue}\n{uri}")

    def check_confirm(self, queue: str, uri: str, presented: str) -> bool:
        return hmac.compare_digest(self.confirm_token(queue, uri), presented)
