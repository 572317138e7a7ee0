"""Each consumer-group member says which partitions it holds, in a shape one can parse back."""

from __future__ import annotations

import logging

import pytest
from aiokafka import TopicPartition

from harness.consumer_groups import held_in, stage_groups, stage_of
from stovepipe.messaging import KafkaSettings
from stovepipe.messaging.assignment import ASSIGNMENT_LINE, AssignmentLog, parse_held
from stovepipe.runtime.registry import STAGE_NAMES


async def test_an_assignment_is_logged_and_reads_back(caplog: pytest.LogCaptureFixture) -> None:
    listener = AssignmentLog("t.stovepipe-process")
    held = [TopicPartition("t.stovepipe.process", p) for p in (3, 0)]
    held.append(TopicPartition("t.stovepipe.build", 5))

    with caplog.at_level(logging.INFO, logger="stovepipe.messaging.assignment"):
        await listener.on_partitions_assigned(held)
        await listener.on_partitions_assigned([])

    first, second = (ASSIGNMENT_LINE.search(r.getMessage()) for r in caplog.records)
    assert first is not None and second is not None
    assert first["group"] == "t.stovepipe-process"
    assert first["held"] == "t.stovepipe.build[5] t.stovepipe.process[0,3]"
    assert parse_held(first["held"]) == {
        ("t.stovepipe.process", 0),
        ("t.stovepipe.process", 3),
        ("t.stovepipe.build", 5),
    }
    assert parse_held(second["held"]) == frozenset()


def test_the_latest_line_per_group_counts() -> None:
    log = (
        "2026 worker-build INFO x: consumer group g-build holds t.build[0,1,2,3,4,5]\n"
        "2026 worker-build INFO x: something else\n"
        "2026 worker-build INFO x: consumer group g-build holds t.build[1,4]\n"
        "2026 worker-reconcile INFO x: consumer group g-r holds nothing\n"
    )
    assert held_in(log) == {"g-build": {("t.build", 1), ("t.build", 4)}, "g-r": frozenset()}


def test_every_consuming_stage_has_groups_and_only_sweeper_and_buildwatch_have_none() -> None:
    groups = stage_groups(KafkaSettings(bootstrap_servers="x:9092", topic_prefix="t."))
    assert set(groups) == set(STAGE_NAMES) - {"sweeper", "buildwatch"}
    # one group reads every retrying stage's dead letters: process, build, buildsignal,
    # record, analyze
    (reconcile,) = groups["reconcile"].values()
    assert len(reconcile) == 5
    assert stage_of("worker-buildsignal.2") == "buildsignal"
    assert stage_of("worker-delay") == "delay"


def test_an_assignment_line_is_read_inside_a_json_log_line() -> None:
    """Workers log JSON lines: ``held`` must stop at the last ``topic[...]``, not at the
    end of the line (a closing quote once made the scale-out test fail to parse it)."""
    line = (
        '{"event": "consumer group p.stovepipe-hooks holds p.stovepipe.hook[0,3] p.x[1]", '
        '"level": "info"}\n'
    )
    assert held_in(line) == {
        "p.stovepipe-hooks": frozenset(
            {("p.stovepipe.hook", 0), ("p.stovepipe.hook", 3), ("p.x", 1)}
        )
    }
