"""Hypothesis without its per-example deadline.

A deadline is a timing assertion: on a loaded machine one example of
``test_redaction`` took 1.2 s against the default 200 ms and failed a test whose
property held. The tests check properties, never speed, so no example has one.
"""

from __future__ import annotations

from hypothesis import settings

settings.register_profile("stovepipe-tests", deadline=None)
settings.load_profile("stovepipe-tests")
