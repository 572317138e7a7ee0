"""Redaction: what is masked, and that a cut never uncovers part of a secret.

That it runs in linear time is measured by ``benchmarks/redaction_linearity.py``
(``make bench``), not asserted here: timings do not belong in tests."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stovepipe.redaction import redact, redact_line

SECRET = st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ23456789", min_size=8, max_size=40)
"""Characters that no template or filler below puts three in a row, so any three of them
in a row in the output come from the secret."""
FILLER = st.text(alphabet="abcdefghijklmnopqrstuvwxyz .,;()\n\t", max_size=300)
TEMPLATES = (
    "https://bot:{}@git.example/r.git",
    "postgresql+asyncpg://app:{}@db/x",
    "https://{}@github.com/org/r.git",
    "Authorization: Bearer {}",
    "bearer {}",
    "token={}",
    "access_token: {}",
    '"token": "{}"',
    "Password = {}",
    "passwd={}",
    "Api-Key={}",
    "client_secret={}",
    "whsec_{}",
)


def _fragments(secret: str) -> list[str]:
    return [secret[i : i + 3] for i in range(len(secret) - 2)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "fetch https://bot:hunter2@git.example/repo password=hunter2",
            "fetch https://***@git.example/repo password=***",
        ),
        ("Authorization: Bearer abc.def", "Authorization: Bearer ***"),
        ("sent bearer abc.def", "sent bearer ***"),
        ("signing with whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw=", "signing with whsec_***"),
        ('{"api_key": "k", "TOKEN": "t"}', '{"api_key": *** "TOKEN": ***'),
        ("1https://u:p@h/x", "1https://***@h/x"),
        ("https://h/x?token=abc&b=1", "https://h/x?token=***"),
        ("nothing to hide at https://h/x or git@github.com:o/r", None),
    ],
)
def test_what_is_masked(text: str, expected: str | None) -> None:
    assert redact(text) == (text if expected is None else expected)


@given(before=FILLER, template=st.sampled_from(TEMPLATES), secret=SECRET, after=FILLER)
def test_known_secrets_are_masked_wherever_they_stand(
    before: str, template: str, secret: str, after: str
) -> None:
    assert secret not in redact(f"{before} {template.format(secret)} {after}")


@given(before=FILLER, template=st.sampled_from(TEMPLATES), secret=SECRET, after=FILLER)
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_a_cut_never_leaves_part_of_a_secret_visible(
    before: str, template: str, secret: str, after: str
) -> None:
    text = f"{before} {template.format(secret)} {after}"
    for limit in range(8, len(text) + 2):
        line = redact_line(text, limit)
        assert len(line) <= limit
        assert "\n" not in line and "\t" not in line
        assert not [f for f in _fragments(secret) if f in line], (limit, line)


def test_a_line_is_marked_where_it_was_cut() -> None:
    assert redact_line("short  and\nsweet", 100) == "short and sweet"
    assert redact_line("x" * 1_000, 300) == "x" * 297 + "..."
    assert redact_line("see https://bot:hunter2@git.example/repo " * 50, 40) == (
        "see https://***@git.example/repo see ..."
    )
