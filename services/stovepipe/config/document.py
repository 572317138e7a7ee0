"""Read ``stovepipe.yaml`` into plain data plus the line of every key.

The loader is PyYAML's safe loader with one addition: a key written twice in
one mapping is an error (PyYAML keeps the last one silently, which hides the
very typos validation is meant to catch). Line numbers let every validation
problem point at the line to fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from stovepipe.config.base import Loc, nearest
from stovepipe.config.errors import ConfigError

EXAMPLE_FILE = "stovepipe.example.yaml"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _StrictLoader(yaml.SafeLoader):
    """Safe loading that refuses duplicate keys."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[str, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            if key_node.value in first:
                raise ConstructorError(
                    None,
                    None,
                    f"duplicate key {key_node.value!r} (first written at line "
                    f"{first[key_node.value]})",
                    key_node.start_mark,
                )
            first[key_node.value] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


@dataclass(frozen=True)
class Document:
    """The parsed file: ``data`` as plain dicts and lists, ``lines`` by field location."""

    data: Any
    lines: Mapping[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Loc) -> int | None:
        """The line of ``loc``, or of its nearest written ancestor (for a missing key)."""
        return nearest(self.lines, loc)


def _record_lines(node: Node, loc: Loc, lines: dict[Loc, int], active: set[int]) -> None:
    if id(node) in active:
        return
    active.add(id(node))
    if isinstance(node, MappingNode):
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            child = (*loc, key_node.value)
            _record_lines(value_node, child, lines, active)
            lines[child] = key_node.start_mark.line + 1
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            child = (*loc, index)
            _record_lines(item, child, lines, active)
            lines[child] = item.start_mark.line + 1
    active.discard(id(node))


def _syntax_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    message = f"{where}YAML syntax error: {problem}"
    if context:
        message += f" ({context})"
    if context and "alias" in context:
        message += "; quote values that start with '*', e.g. paths: [\"**/*.py\"]"
    elif "'\\t'" in problem:
        message += "; indent with spaces, not tabs"
    return message


def parse_yaml(text: str, source: str) -> Document:
    """Parse ``text``; a syntax error becomes a ``ConfigError`` with its line and column."""
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        raise ConfigError(source, [_syntax_problem(exc)]) from None
    finally:
        loader.dispose()
    lines: dict[Loc, int] = {}
    if node is not None:
        _record_lines(node, (), lines, set())
    return Document(data, lines)


def read_document(path: Path) -> Document:
    """Read and parse the file at ``path``, insisting on a non-empty top-level mapping."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            source,
            [f"file not found; copy {EXAMPLE_FILE} (in the Stovepipe repository) to start one"],
        ) from None
    except IsADirectoryError:
        raise ConfigError(source, ["is a directory; expected a YAML file"]) from None
    except UnicodeDecodeError:
        raise ConfigError(source, ["is not UTF-8 text"]) from None
    except OSError as exc:
        raise ConfigError(source, [f"cannot be read: {exc.strerror}"]) from None
    document = parse_yaml(text, source)
    if document.data is None:
        raise ConfigError(
            source,
            [
                "the file is empty; expected a mapping with at least a 'queues' list "
                f"(see {EXAMPLE_FILE})"
            ],
        )
    if not isinstance(document.data, dict):
        raise ConfigError(
            source,
            [
                "expected a mapping at the top level (storage:, kafka:, api:, extensions:, "
                f"workers:, queues:), found a {type(document.data).__name__}"
            ],
        )
    return document
