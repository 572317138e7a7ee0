from __future__ import annotations

import pytest

from stovepipe.domain import MAX_QUEUE_NAME_LENGTH, InvalidQueueName, validate_queue_name


@pytest.mark.parametrize("name", ["monorepo/main", "a", "web-app/release-1.2", "x_y/z9"])
def test_valid_names_are_returned(name: str) -> None:
    assert validate_queue_name(name) == name


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("", "empty"),
        ("Mono/main", "'M'"),
        ("mono main", "' '"),
        ("/main", "empty segment"),
        ("a//b", "empty segment"),
        ("main/", "empty segment"),
        ("-main", "start and end"),
        ("x" * (MAX_QUEUE_NAME_LENGTH + 1), "limit is 128"),
        ("mono/main\n", "'\\\\n'"),  # `$` would have matched before the newline
    ],
)
def test_invalid_names_say_what_is_wrong(name: str, fragment: str) -> None:
    with pytest.raises(InvalidQueueName, match=fragment.replace("(", r"\(")):
        validate_queue_name(name)
