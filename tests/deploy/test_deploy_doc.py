"""doc/deploy.md stays true to the code it describes."""

from __future__ import annotations

import re
from pathlib import Path

from harness.stovepipe_argv import verbs_serving_metrics
from stovepipe.runtime.registry import all_topics

DOC = Path(__file__).resolve().parents[2] / "doc" / "deploy.md"


def test_the_topic_table_lists_exactly_the_topics_stovepipe_creates() -> None:
    rows = re.findall(r"^\| `([a-z0-9.]+)` \|", DOC.read_text(), re.MULTILINE)
    listed = [row for row in rows if row.startswith("stovepipe.")]
    assert listed == all_topics()


def test_the_metrics_paragraph_names_exactly_the_processes_that_serve_metrics() -> None:
    """The CLI says which verbs take --metrics-port; the guide names the same ones."""
    paragraph = DOC.read_text().split("**Metrics.**", 1)[1].split("\n\n", 1)[0]
    named = set(re.findall(r"`stovepipe ([a-z -]+)`", paragraph))
    assert named == set(verbs_serving_metrics()), paragraph
