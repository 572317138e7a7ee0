"""Small builders for configuration data shaped like ``stovepipe.yaml``."""

from __future__ import annotations

from typing import Any

import pytest

from stovepipe.config import ConfigError, config_from_mapping


def queue(name: str = "mono/main", **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": name,
        "source": {"repository": "/srv/git/mono.git"},
        "build": {"targets": [{"name": "unit", "command": "make test"}]},
    }
    data.update(overrides)
    return data


def problems_of(data: dict[str, Any], env: dict[str, str] | None = None) -> list[str]:
    """The rendered problem lines ``config_from_mapping`` reports for ``data``."""
    with pytest.raises(ConfigError) as caught:
        config_from_mapping(data, "stovepipe.yaml", env=env)
    return str(caught.value).splitlines()
