"""The HooksService contract: its typed client and the reference server (webhook, kafka, log)."""

from stovepipe.extensions.hooks.client import DeliverResult, HooksClient, Outcome

__all__ = ["DeliverResult", "HooksClient", "Outcome"]
