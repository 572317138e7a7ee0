"""The stage registry is the one place a stage exists; everything else derives from it."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from harness import fault_stack
from stovepipe.cli.main import app
from stovepipe.config import config_from_mapping
from stovepipe.config.errors import ConfigError
from stovepipe.failures import OnFailure, RetryPolicy
from stovepipe.messaging import PIPELINE_TOPICS, dlq, poison, spec
from stovepipe.runtime import embedded
from stovepipe.runtime.registry import (
    ALL,
    PIPELINE,
    STAGE_NAMES,
    STAGES,
    all_topics,
    dead_letter_topics,
    failure_rules,
    in_flight_limits,
    retrying_stage_names,
    stage,
    stages_named,
)


def test_stage_names_are_unique_and_every_stage_says_what_it_does() -> None:
    assert len(set(STAGE_NAMES)) == len(STAGES)
    for entry in STAGES:
        assert entry.summary
        assert (entry.handlers is None) != (entry.run is None), entry.name


def test_a_topic_has_one_retrying_consumer_and_any_number_of_readers() -> None:
    """A pipeline topic is advanced by exactly one stage (its retries and dead letters are
    that stage's); an event topic such as ``stovepipe.hook`` may fan out to several stages,
    each in its own consumer group, as long as none of them retries into dead letters."""
    consumers: dict[str, list[str]] = {}
    for entry in STAGES:
        for topic in entry.consumes:
            assert spec(topic.name).name == topic.name
            consumers.setdefault(topic.name, []).append(entry.name)
    for name, stages in consumers.items():
        assert len(stages) == len(set(stages)), name
        if len(stages) > 1:
            assert all(stage(s).on_failure is OnFailure.PARK_UNREADABLE for s in stages), name
    assert sorted(consumers["stovepipe.hook"]) == ["hooks", "upstream"]


def test_the_reconciler_consumes_the_dead_letters_of_every_retrying_stage() -> None:
    reconcile = stage("reconcile")
    expected = {dlq(t.name) for s in PIPELINE for t in s.consumes}
    assert {t.name for t in reconcile.consumes} == expected
    assert {t.name for t in dead_letter_topics()} == expected
    assert reconcile.on_failure is OnFailure.PARK_UNREADABLE


def test_topics_to_create_derive_from_the_registry() -> None:
    topics = all_topics()
    assert len(topics) == len(set(topics))
    for entry in STAGES:
        for topic in entry.consumes:
            assert topic.name in topics
        for name in entry.watched_topics:
            assert name in topics
    for topic in dead_letter_topics():
        assert poison(topic.name.removesuffix(".dlq")) in topics
    assert {t.name for t in PIPELINE_TOPICS} <= set(topics)


def test_up_and_the_fault_stack_start_every_registered_worker() -> None:
    assert fault_stack.WORKERS == STAGE_NAMES
    assert embedded.STAGE_NAMES is STAGE_NAMES  # type: ignore[attr-defined]  # its own import


def test_the_cli_refuses_an_unknown_stage_and_lists_the_registered_ones() -> None:
    result = CliRunner().invoke(app, ["worker", "nope"])
    assert result.exit_code == 2
    for name in STAGE_NAMES:
        assert name in result.output
    assert f"{ALL} " in result.output


def test_worker_all_runs_every_registered_stage_and_one_name_runs_one() -> None:
    assert stages_named(ALL) == STAGES
    assert stages_named("record") == (stage("record"),)


def test_every_consumed_topic_gets_its_stage_s_in_flight_limit() -> None:
    config = config_from_mapping(
        {"workers": {"max_in_flight": 5, "record": {"max_in_flight": 2}}}, source="t"
    )
    limits = in_flight_limits(config)
    consumed = {topic.name for entry in STAGES for topic in entry.consumes}
    assert set(limits) == consumed
    assert limits["stovepipe.record"] == 2
    assert limits["stovepipe.process"] == 5
    assert limits["stovepipe.record.dlq"] == 5  # the reconciler's own default
    assert in_flight_limits(config_from_mapping({}, source="t"))["stovepipe.build"] == 16


@pytest.mark.parametrize("value", [0, 1001, "many"])
def test_a_bad_in_flight_limit_is_refused(value: object) -> None:
    with pytest.raises(ConfigError, match="max_in_flight"):
        config_from_mapping({"workers": {"max_in_flight": value}}, source="t")
    with pytest.raises(ConfigError, match="max_in_flight"):
        config_from_mapping({"workers": {"build": {"max_in_flight": value}}}, source="t")


def test_retry_policies_are_configurable_for_exactly_the_retrying_stages() -> None:
    assert retrying_stage_names() == tuple(s.name for s in PIPELINE)
    config = config_from_mapping(
        {"workers": {"build": {"max_attempts": 3, "backoff_initial_seconds": 2}}}, source="t"
    )
    rules = failure_rules(config)
    assert rules["stovepipe.build"] == (
        OnFailure.RETRY_THEN_DEAD_LETTER,
        RetryPolicy(3, 2.0, 120.0),
    )
    assert rules["stovepipe.process"][1] == RetryPolicy(8, 1.0, 120.0)
    assert rules["stovepipe.build.dlq"] == (OnFailure.PARK_UNREADABLE, None)


def test_an_unknown_stage_in_workers_is_refused_with_a_hint() -> None:
    with pytest.raises(ConfigError, match=r"unknown stage 'biuld'; did you mean 'build'"):
        config_from_mapping({"workers": {"biuld": {"max_attempts": 3}}}, source="t")
    with pytest.raises(ConfigError, match="unknown stage 'sweeper'"):
        config_from_mapping({"workers": {"sweeper": {"max_attempts": 3}}}, source="t")


def test_no_configured_delay_can_exceed_the_longest_tier() -> None:
    """A delay beyond the longest tier would be delivered early; the config refuses it."""
    with pytest.raises(ConfigError, match="at most 120"):
        config_from_mapping({"workers": {"build": {"backoff_max_seconds": 600}}}, source="t")
    with pytest.raises(ConfigError, match="at most 120"):
        config_from_mapping({"workers": {"buildsignal_poll_interval_seconds": 121}}, source="t")


def test_the_poll_period_must_fit_in_the_sweeper_window() -> None:
    """Two thirds of the window are left for one poll period (``stages.liveness``)."""
    config_from_mapping(
        {"workers": {"buildsignal_poll_interval_seconds": 1, "sweeper_stale_after_seconds": 2}},
        source="t",
    )
    with pytest.raises(ConfigError, match=r"sweeper_stale_after_seconds: must exceed 45 s"):
        config_from_mapping(
            {
                "workers": {
                    "buildsignal_poll_interval_seconds": 20,
                    "sweeper_stale_after_seconds": 40,
                }
            },
            source="t",
        )


def test_the_reconciler_reads_every_dead_letter_topic_in_one_group() -> None:
    """One group, so one consumer in the process for all of them (``StageMessaging``
    starts one consumer per group), not one fetch loop and membership per topic."""
    from stovepipe.runtime.registry import RECONCILE_GROUP

    class _Parts:
        def dead_letter_reconciler(self) -> object:
            return object()

    consumptions = stage("reconcile").handlers(_Parts())  # type: ignore[misc, arg-type]
    assert {c.group for c in consumptions} == {RECONCILE_GROUP}
    assert [c.topic for c in consumptions] == list(dead_letter_topics())
