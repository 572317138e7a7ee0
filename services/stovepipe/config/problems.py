"""Turn pydantic's validation errors into problems an operator can act on.

Three things change on the way: the location is written as the operator
reads the file (``queues[1] (monorepo/main).build.targets[0] (unit).timeout_seconds``
rather than ``queues.1.build.targets.0.timeout_seconds``); the message is
rephrased (``must be greater than 0``) with a spelling suggestion for unknown
keys; and no message repeats the offending input, which could be a secret.
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from stovepipe.config.base import Loc
from stovepipe.config.errors import ConfigProblem

_INTERNAL_LOC = re.compile(r"^(?:function-(?:after|before|wrap|plain)|tagged-union|chain)\[")
_EXAMPLE_HINT = "check the spelling against stovepipe.example.yaml"


def field_path(loc: Loc, data: Any) -> str:
    """``('queues', 1, 'max_concurrent')`` → ``queues[1] (mono/main).max_concurrent``.

    List entries that have a ``name`` in ``data`` show it, so the entry can be found
    without counting.
    """
    out = ""
    node: Any = data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, Sequence) and 0 <= part < len(node) else None
            name = node.get("name") if isinstance(node, Mapping) else None
            if isinstance(name, str) and name:
                out += f" ({name})"
        else:
            out += f".{part}" if out else part
            node = node.get(part) if isinstance(node, Mapping) else None
    return out


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def _keys_at(root: type[BaseModel], loc: Loc) -> list[str]:
    """The keys the model at ``loc`` accepts; empty when ``loc`` is not a model."""
    node: Any = root
    for part in loc:
        node = _unwrap(node)
        origin, args = get_origin(node), get_args(node)
        if isinstance(node, type) and issubclass(node, BaseModel):
            fields = node.model_fields
            node = fields[part].annotation if isinstance(part, str) and part in fields else None
        elif origin in (tuple, list) and args and isinstance(part, int):
            node = args[0]
        elif origin in (dict, Mapping) and len(args) == 2:
            node = args[1]
        else:
            return []
    node = _unwrap(node)
    if isinstance(node, type) and issubclass(node, BaseModel):
        return list(node.model_fields)
    return []


def _number(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _entries(count: object) -> str:
    return "1 entry" if count == 1 else f"{count} entries"


def _message(err: ErrorDetails, root: type[BaseModel]) -> str:
    kind = err["type"]
    ctx: Mapping[str, Any] = err.get("ctx") or {}
    loc = err["loc"]
    if kind == "extra_forbidden":
        key = str(loc[-1]) if loc else ""
        close = difflib.get_close_matches(key, _keys_at(root, loc[:-1]), n=1, cutoff=0.6)
        return (
            f"unknown key; did you mean {close[0]!r}?"
            if close
            else f"unknown key ({_EXAMPLE_HINT})"
        )
    simple = {
        "missing": "is required",
        "greater_than": f"must be greater than {_number(ctx.get('gt'))}",
        "greater_than_equal": f"must be at least {_number(ctx.get('ge'))}",
        "less_than": f"must be less than {_number(ctx.get('lt'))}",
        "less_than_equal": f"must be at most {_number(ctx.get('le'))}",
        "string_too_short": "must not be empty",
        "too_short": f"needs at least {_entries(ctx.get('min_length'))}",
        "string_type": "must be text (quote it in YAML)",
        "int_type": "must be a whole number",
        "int_parsing": "must be a whole number",
        "int_from_float": "must be a whole number",
        "float_type": "must be a number",
        "float_parsing": "must be a number",
        "bool_type": "must be true or false",
        "bool_parsing": "must be true or false",
        "model_type": "must be a mapping of settings (key: value)",
        "model_attributes_type": "must be a mapping of settings (key: value)",
        "dict_type": "must be a mapping (key: value)",
        "tuple_type": "must be a list",
        "list_type": "must be a list",
    }
    if kind in simple:
        return simple[kind]
    text = str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if text.startswith("Input should be "):
        text = "must be " + text.removeprefix("Input should be ")
    return text


def _relevant(errors: list[ErrorDetails]) -> list[ErrorDetails]:
    """Drop pydantic's internal location parts, and the "too short" that pydantic adds
    to a list whose entries were all invalid (the entries' own errors say more)."""
    cleaned: list[ErrorDetails] = []
    for err in errors:
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and _INTERNAL_LOC.match(p)))
        cleaned.append({**err, "loc": loc})
    locs = [err["loc"] for err in cleaned]
    return [
        err
        for err in cleaned
        if not (
            err["type"] == "too_short"
            and any(
                other[: len(err["loc"])] == err["loc"] and other != err["loc"] for other in locs
            )
        )
    ]


def problems_from(
    exc: ValidationError,
    data: Any,
    root: type[BaseModel],
    line_of: Callable[[Loc], int | None] | None = None,
    origin_of: Callable[[Loc], str | None] | None = None,
) -> list[ConfigProblem]:
    """One problem per error, in file order when lines are known, without repeats.

    A value set by an environment variable says so instead of pointing at a line.
    """
    problems: list[ConfigProblem] = []
    for err in _relevant(exc.errors(include_url=False)):
        loc: Loc = err["loc"]
        message = _message(err, root)
        variable = origin_of(loc) if origin_of is not None else None
        if variable is not None:
            message += f" (set by environment variable {variable})"
        line = line_of(loc) if line_of is not None and variable is None else None
        problem = ConfigProblem(field_path(loc, data) or "(top level)", message, line)
        if problem not in problems:
            problems.append(problem)
    problems.sort(key=lambda p: (p.line is None, p.line or 0))
    return problems
