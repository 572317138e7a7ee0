"""``telemetry:`` and a Queue's ``staleness:``: defaults, durations, refusals, environment."""

from __future__ import annotations

import pytest

from stovepipe.config import ConfigError, config_from_mapping

QUEUE = {
    "name": "mono/main",
    "source": {"repository": "/srv/git/mono.git"},
    "build": {"targets": [{"name": "unit", "command": "make test"}]},
}


def test_telemetry_is_off_by_default_and_set_from_the_environment() -> None:
    default = config_from_mapping({"queues": [QUEUE]}, "t.yaml")
    assert not default.telemetry.tracing and default.telemetry.metrics_port is None
    assert default.queues[0].staleness is None
    env = {
        "STOVEPIPE__TELEMETRY__OTLP_ENDPOINT": "collector:4317",
        "STOVEPIPE__TELEMETRY__METRICS_PORT": "9464",
    }
    configured = config_from_mapping({"queues": [QUEUE]}, "t.yaml", env=env)
    assert configured.telemetry.tracing and configured.telemetry.metrics_port == 9464


@pytest.mark.parametrize(
    ("written", "seconds"), [("6h", 21600.0), ("90m", 5400.0), ("1d", 86400.0), (120, 120.0)]
)
def test_staleness_max_age_takes_durations(written: object, seconds: float) -> None:
    queue = {**QUEUE, "staleness": {"max_age": written, "max_commits": 3}}
    staleness = config_from_mapping({"queues": [queue]}, "t.yaml").queues[0].staleness
    assert staleness is not None and staleness.max_age == seconds and staleness.max_commits == 3


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"telemetry": {"sampling_ratio": 1.5}}, "sampling_ratio"),
        ({"telemetry": {"log_format": "xml"}}, "log_format"),
        ({"telemetry": {"metrics_port": 0}}, "metrics_port"),
        ({"queues": [{**QUEUE, "staleness": {"max_age": "soon"}}]}, "not a duration"),
        ({"queues": [{**QUEUE, "staleness": {"max_commits": -1}}]}, "max_commits"),
    ],
)
def test_bad_telemetry_and_staleness_settings_are_refused(
    section: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_mapping({"queues": [QUEUE], **section}, "t.yaml")
