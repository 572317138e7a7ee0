"""Processes: the composition root, worker and API processes, and the embedded stack."""
