"""Make the shared stage harness importable from every test directory."""

from __future__ import annotations

import sys
from pathlib import Path

_STAGES = str(Path(__file__).resolve().parents[1] / "stages")
if _STAGES not in sys.path:
    sys.path.insert(0, _STAGES)
