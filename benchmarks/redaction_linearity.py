"""Redaction stays linear on adversarial text: time for 8 times the text, as a ratio.

Every log line, status message and event passes through ``stovepipe.redaction``, so
a pattern that rescans the text from every position (quadratic) would let one long
hostile input stall a process. For each family of inputs built from the pieces the
patterns react to, the benchmark redacts a text and one eight times as long and
prints the ratio of their times: about 8 is linear, about 64 quadratic. Best of
five timings each, so a busy machine inflates both sides alike.
"""

from __future__ import annotations

import sys
import timeit

from stovepipe.redaction import redact

PIECES = (
    "R",
    "a",
    ":",
    "/",
    "@",
    " ",
    "=",
    '"',
    "://",
    "a://",
    "https://",
    "u:p",
    "token",
    "password=",
    "Authorization: ",
    "bearer ",
    "whsec_",
)
SMALL = 1_000_000
"""Large enough that fixed costs, caches and the allocator's switch to fresh pages (seen
between 400 kB and 800 kB here) do not dominate the small side."""
LINEAR_LIMIT = 24.0
"""Three times the linear ratio: above it, the family is reported as not linear."""


def _family(first: str, separator: str, second: str, size: int) -> str:
    half = size // 2
    return first * (half // len(first)) + separator + second * (half // len(second))


def _seconds(text: str) -> float:
    return min(timeit.repeat(lambda: redact(text), number=1, repeat=3))


def main() -> int:
    worst = (0.0, "")
    families = [(p, p) for p in PIECES] + [("a", "://"), ("a://", "/"), ("token=", " ")]
    for first, second in families:
        small = _seconds(_family(first, "", second, SMALL))
        large = _seconds(_family(first, "", second, 8 * SMALL))
        ratio = large / max(small, 1e-9)
        if ratio > worst[0]:
            worst = (ratio, f"{first!r}…{second!r}")
    verdict = "linear" if worst[0] < LINEAR_LIMIT else "NOT LINEAR (or a very noisy machine)"
    print(
        f"redaction, 8x text: worst time ratio {worst[0]:.1f} ({worst[1]}); "
        f"8 = linear, 64 = quadratic: {verdict}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
