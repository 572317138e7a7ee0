from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from stovepipe.domain import (
    TERMINAL_STATES,
    BuildStrategy,
    IllegalTransition,
    InvalidInput,
    Request,
    RequestId,
    RequestState,
    can_transition,
    is_newer,
    settled_state,
    start_new_attempt,
    start_project_attempt,
    transition,
    with_build,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _request(state: RequestState = RequestState.ACCEPTED) -> Request:
    return Request(
        id="request/mono/main/3",
        queue="mono/main",
        uri="u3",
        state=state,
        version=1,
        created_at=NOW,
        updated_at=NOW,
    )


def test_request_ids_round_trip_and_order_by_ingest_number() -> None:
    rid = RequestId.parse("request/mono/main/12")
    assert rid == RequestId("mono/main", 12)
    assert str(rid) == "request/mono/main/12"
    assert RequestId("mono/main", 9) < rid  # numeric, not lexicographic
    assert is_newer("request/mono/main/10", "request/mono/main/9")
    assert not is_newer("request/mono/main/9", "request/mono/main/10")
    assert is_newer("request/mono/main/1", None)


@pytest.mark.parametrize(
    "text",
    ["", "request/x", "request/mono/main/0", "req/a/1", "request//1", "request/mono/main/1\n"],
)
def test_malformed_request_ids_are_rejected(text: str) -> None:
    with pytest.raises(InvalidInput):
        RequestId.parse(text)


def test_ids_of_different_queues_do_not_compare() -> None:
    with pytest.raises(InvalidInput, match="different queues"):
        _ = RequestId("a", 1) < RequestId("b", 2)


def test_legal_transitions_are_exactly_the_lifecycle() -> None:
    legal = {
        (src, dst)
        for src, dst in itertools.product(RequestState, RequestState)
        if can_transition(src, dst)
    }
    assert legal == {
        (RequestState.ACCEPTED, RequestState.PROCESSING),
        (RequestState.ACCEPTED, RequestState.SUPERSEDED),
        (RequestState.ACCEPTED, RequestState.FAILED),
        (RequestState.ACCEPTED, RequestState.CANCELLED),
        (RequestState.PROCESSING, RequestState.SUCCEEDED),
        (RequestState.PROCESSING, RequestState.FAILED),
        (RequestState.PROCESSING, RequestState.CANCELLED),
        # Phase 2: the build ended, projects still wait for their facts
        (RequestState.ACCEPTED, RequestState.ANALYZING),
        (RequestState.PROCESSING, RequestState.ANALYZING),
        (RequestState.ANALYZING, RequestState.SUCCEEDED),
        (RequestState.ANALYZING, RequestState.FAILED),
    }
    assert not RequestState.ANALYZING.terminal
    assert all(not can_transition(t, d) for t in TERMINAL_STATES for d in RequestState)


def test_admission_sets_strategy_once_and_bumps_version() -> None:
    admitted = transition(
        _request(),
        RequestState.PROCESSING,
        now=NOW,
        build_strategy=BuildStrategy.INCREMENTAL,
        base_uri="u1",
    )
    assert (admitted.state, admitted.version) == (RequestState.PROCESSING, 2)
    assert (admitted.build_strategy, admitted.base_uri) == (BuildStrategy.INCREMENTAL, "u1")
    with pytest.raises(IllegalTransition, match="only at admission"):
        transition(admitted, RequestState.SUCCEEDED, now=NOW, build_strategy=BuildStrategy.FULL)
    done = transition(with_build(admitted, "b1", now=NOW), RequestState.SUCCEEDED, now=NOW)
    assert (done.build_id, done.build_strategy, done.version) == (
        "b1",
        BuildStrategy.INCREMENTAL,
        4,
    )


def test_admission_without_strategy_or_incremental_without_base_is_refused() -> None:
    with pytest.raises(IllegalTransition, match="needs a build strategy"):
        transition(_request(), RequestState.PROCESSING, now=NOW)
    with pytest.raises(IllegalTransition, match="needs a base URI"):
        transition(
            _request(), RequestState.PROCESSING, now=NOW, build_strategy=BuildStrategy.INCREMENTAL
        )


def test_terminal_states_have_no_way_out() -> None:
    for state in TERMINAL_STATES:
        with pytest.raises(IllegalTransition, match="not a legal transition"):
            transition(_request(state), RequestState.PROCESSING, now=NOW)


def test_a_new_attempt_reopens_only_a_failed_request_and_clears_the_build() -> None:
    import dataclasses

    failed = dataclasses.replace(
        _request(RequestState.FAILED),
        build_strategy=BuildStrategy.INCREMENTAL,
        base_uri="u1",
        build_id="b-7",
        version=4,
    )
    later = datetime(2026, 1, 2, tzinfo=UTC)
    again = start_new_attempt(failed, now=later, reason="re-validation")
    assert (again.state, again.attempt, again.version) == (RequestState.ACCEPTED, 2, 5)
    assert (again.build_strategy, again.base_uri, again.build_id) == (None, None, None)
    assert (again.id, again.uri, again.created_at, again.updated_at) == (
        failed.id,
        failed.uri,
        failed.created_at,
        later,
    )
    assert again.reason == "re-validation"
    for state in set(RequestState) - {RequestState.FAILED}:
        with pytest.raises(IllegalTransition, match="only a failed request"):
            start_new_attempt(_request(state), now=later, reason="x")


def test_a_project_attempt_skips_admission_and_detaches_the_questioned_build() -> None:
    import dataclasses

    failed = dataclasses.replace(
        _request(RequestState.FAILED),
        build_strategy=BuildStrategy.INCREMENTAL,
        base_uri="u1",
        build_id="b-7",
        version=4,
    )
    again = start_project_attempt(failed, now=NOW, reason="re-validation of project web")
    assert (again.state, again.attempt, again.version) == (RequestState.ANALYZING, 2, 5)
    assert again.build_id is None  # analyze must not answer from the build in question
    assert (again.build_strategy, again.base_uri) == (BuildStrategy.INCREMENTAL, "u1")
    for state in set(RequestState) - {RequestState.FAILED}:
        with pytest.raises(IllegalTransition, match="only a failed request"):
            start_project_attempt(_request(state), now=NOW, reason="x")


def test_with_projects_an_ended_build_leaves_the_request_analyzing() -> None:
    for outcome in (RequestState.SUCCEEDED, RequestState.FAILED):
        assert settled_state(outcome, has_projects=True) is RequestState.ANALYZING
        assert settled_state(outcome, has_projects=False) is outcome
    cancelled = RequestState.CANCELLED
    assert settled_state(cancelled, has_projects=True) is cancelled
