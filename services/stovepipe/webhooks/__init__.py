"""Push webhooks from code hosts: verify, read, map to Queues, ingest with trigger ``push``."""
