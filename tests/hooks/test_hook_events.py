"""Events from facts: types, transitions, stable ids, the CloudEvents envelope, matching."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.bindings import kafka as ce_kafka

from stovepipe.domain import FactOrigin, ValidationFact
from stovepipe.hooks.events import (
    BECAME_BROKEN,
    BECAME_GREEN,
    VERDICT_RECORDED,
    data_of,
    matches_types,
    to_cloudevent,
    verdict_events,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def fact(n: int, green: bool, **extra: object) -> ValidationFact:
    values: dict[str, object] = {
        "queue": "mono/main",
        "uri": f"git+r#main@{n:040x}",
        "project": "",
        "degree": 0.0 if green else 1.0,
        "request_id": f"request/mono/main/{n}",
        "origin": FactOrigin.BUILD,
        "created_at": NOW,
        **extra,
    }
    return ValidationFact(**values)  # type: ignore[arg-type]


def events(f: ValidationFact, previous: ValidationFact | None) -> list[str]:
    return [
        e.type
        for e in verdict_events(
            f,
            previous,
            took_bookmark=False,
            last_green_uri="",
            strategy="full",
            build_link="",
            now=NOW,
        )
    ]


def test_green_green_broken_broken_green_gives_three_transitions() -> None:
    history = [fact(1, True), fact(2, True), fact(3, False), fact(4, False), fact(5, True)]
    transitions = []
    for i, f in enumerate(history):
        kinds = events(f, history[i - 1] if i else None)
        assert kinds[0] == VERDICT_RECORDED
        transitions.extend(kinds[1:])
    assert transitions == [BECAME_GREEN, BECAME_BROKEN, BECAME_GREEN]


def test_a_queues_first_verdict_is_a_transition_from_unknown() -> None:
    assert events(fact(1, False), None) == [VERDICT_RECORDED, BECAME_BROKEN]


def test_ids_are_stable_and_distinct_per_commit_attempt_type_and_project() -> None:
    def ids(f: ValidationFact) -> list[str]:
        return [e.id for e in verdict_events(f, None, took_bookmark=True, last_green_uri="",
                                             strategy="", build_link="", now=datetime.now(UTC))]  # fmt: skip

    first = ids(fact(1, True))
    assert ids(fact(1, True)) == first  # published again: same ids whenever it happens
    assert len(set(first)) == 2
    others = ids(fact(1, True, attempt=2)) + ids(fact(1, True, project="web")) + ids(fact(2, True))
    assert not set(first) & set(others) and len(set(others)) == 6


def test_the_envelope_is_cloudevents_1_0_in_both_modes_and_carries_no_secret() -> None:
    reason = "build failed: token=abc123 whsec_c2VjcmV0 " + "x" * 5000
    f = fact(2, False, origin=FactOrigin.FAIL_CLOSED, reason=reason)
    event = verdict_events(f, fact(1, True), took_bookmark=False, last_green_uri=fact(1, True).uri,
                           strategy="incremental", build_link="build-7", now=NOW)[1]  # fmt: skip
    structured = ce_http.to_structured_event(to_cloudevent(event))
    body = json.loads(structured.body)
    assert structured.headers["content-type"].startswith("application/cloudevents+json")
    assert (body["specversion"], body["type"], body["subject"]) == (
        "1.0",
        BECAME_BROKEN,
        "mono/main",
    )
    assert body["source"] == "/stovepipe/queues/mono/main" and body["id"] == event.id
    data = body["data"]
    assert data["previous"] == {"degree": 0.0, "commit": fact(1, True).uri}
    assert data["last_green"] == fact(1, True).uri and data["origin"] == "fail_closed"
    assert data["strategy"] == "incremental" and data["build_link"] == "build-7"
    text = json.dumps(data)
    assert "abc123" not in text and "c2VjcmV0" not in text
    assert len(data["dead_letter_reason"]) <= 1000 and data["dead_letter_reason"] == data["reason"]
    binary = ce_kafka.to_binary_event(to_cloudevent(event))
    assert binary.headers["ce_type"] == BECAME_BROKEN.encode()
    assert json.loads(binary.value) == data_of(event)


@pytest.mark.parametrize(
    ("events_setting", "kind", "green", "wanted"),
    [
        ("all", "dev.stovepipe.queue.stale", False, True),
        ("green", VERDICT_RECORDED, True, True),
        ("green", VERDICT_RECORDED, False, False),
        ("green", BECAME_GREEN, True, False),
        ("not_green", VERDICT_RECORDED, False, True),
        ("not_green", VERDICT_RECORDED, True, False),
        ("transitions", BECAME_GREEN, True, True),
        ("transitions", BECAME_BROKEN, False, True),
        ("transitions", VERDICT_RECORDED, True, False),
    ],
)
def test_a_subscription_gets_exactly_the_events_it_asked_for(
    events_setting: str, kind: str, green: bool, wanted: bool
) -> None:
    assert matches_types(events_setting, kind, green) is wanted
