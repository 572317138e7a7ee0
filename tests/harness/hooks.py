"""What the hooks tests share: receivers with fresh keys, subscriptions, waiting on rows."""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path
from typing import Any

from harness.live import Live
from harness.webhook_receiver import WebhookReceiver
from stovepipe.runtime.sample_repo import STEPS, Step
from stovepipe.storage import HookDelivery, HookDeliveryStatus
from stovepipe.testing import until

# green -> green -> broken -> broken -> green (a README-only change after green skips the
# target on an incremental build; the second broken commit still has the broken add()).
LINEAR: tuple[Step, ...] = (
    STEPS[0],
    Step("docs", {"README.md": "# calc\n\nAdds numbers.\n"}, True),
    STEPS[1],
    Step("docs while broken", {"README.md": "# calc\n\nAdds numbers, mostly.\n"}, False),
    STEPS[2],
)


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def secret_file(tmp: Path, name: str, value: str) -> Path:
    path = tmp / f"{name}.whsec"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(value)
    return path


def webhook(tmp: Path, name: str, receiver: WebhookReceiver, **settings: Any) -> dict[str, Any]:
    """A webhook subscription for ``receiver``, its key in a 0600 file."""
    return {
        "name": name,
        "kind": "webhook",
        "url": receiver.url,
        "secret_file": str(secret_file(tmp, name, receiver.secret)),
        "backoff_initial_seconds": 0.2,
        "backoff_max_seconds": 2.0,
        **settings,
    }


async def step(live: Live, change: Step) -> str:
    """Commit ``change``, ingest it, wait for its verdict; the commit URI."""
    live.repo.commit(change.files, change.title)
    ingest = await live.ingest()
    request = await live.wait_terminal(ingest.request_id, timeout_s=150)
    return str(request.uri)


async def deliveries(live: Live, hook: str) -> list[HookDelivery]:
    found, _ = await live.store.list_hook_deliveries(queue="e2e/main", page_size=500)
    return [d for d in found if d.hook == hook]


async def settled(live: Live, hook: str, count: int, timeout_s: float = 120) -> list[HookDelivery]:
    """Wait until ``hook`` has ``count`` deliveries, none pending."""

    async def check() -> list[HookDelivery] | None:
        rows = await deliveries(live, hook)
        if len(rows) >= count and all(r.status.terminal for r in rows):
            return rows
        return None

    rows: list[HookDelivery] = await until(
        check, timeout_s=timeout_s, what=f"{count} settled deliveries to {hook}"
    )
    return rows


def all_delivered(rows: list[HookDelivery]) -> bool:
    return all(r.status is HookDeliveryStatus.DELIVERED for r in rows)
