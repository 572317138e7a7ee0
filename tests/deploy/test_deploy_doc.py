"""doc/deploy.md stays true to the code it describes."""

from __future__ import annotations

import re
from pathlib import Path

from stovepipe.runtime.registry import all_topics

DOC = Path(__file__).resolve().parents[2] / "doc" / "deploy.md"


def test_the_topic_table_lists_exactly_the_topics_stovepipe_creates() -> None:
    rows = re.findall(r"^\| `([a-z0-9.]+)` \|", DOC.read_text(), re.MULTILINE)
    listed = [row for row in rows if row.startswith("stovepipe.")]
    assert listed == all_topics()
