"""The base of every configuration model and the helpers that report problems by path.

Every model is frozen (configuration is read once and shared by every stage)
and rejects unknown keys, so a misspelt setting is an error instead of a
silently ignored default. A model may also refuse keys with a message of its
own: a literal secret, or a feature that does not run yet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, NoReturn, Self, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    ModelWrapValidatorHandler,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

Loc = tuple[int | str, ...]
PROBLEM_TYPE = "stovepipe_config"
T = TypeVar("T")


def nearest(found: Mapping[Loc, T], loc: Loc) -> T | None:
    """What ``found`` holds for ``loc`` or, failing that, for its nearest ancestor."""
    for end in range(len(loc), 0, -1):
        value = found.get(loc[:end])
        if value is not None:
            return value
    return None


def combined(
    title: str, error: ValidationError | None, problems: Sequence[tuple[Loc, str]]
) -> ValidationError:
    """One ``ValidationError`` holding ``error``'s line errors plus ``problems``."""
    details: list[InitErrorDetails] = []
    if error is not None:
        for err in error.errors(include_url=False):
            details.append(
                InitErrorDetails(
                    type=PydanticCustomError(err["type"], err["msg"], err.get("ctx")),
                    loc=err["loc"],
                    input=err["input"],
                )
            )
    for loc, message in problems:
        details.append(
            InitErrorDetails(type=PydanticCustomError(PROBLEM_TYPE, message), loc=loc, input=None)
        )
    return ValidationError.from_exception_data(title, details)


def raise_problems(
    title: str, error: ValidationError | None, problems: Sequence[tuple[Loc, str]]
) -> NoReturn:
    """Raise ``combined(...)``: pydantic stops at a validator's first raise, and this lets
    a validator report several problems, each at its own location."""
    raise combined(title, error, problems)


def require_unique_names(title: str, items: Sequence[Any], what: str, list_name: str) -> None:
    """Report each repeated ``name`` at ``[i].name``, pointing at the first use."""
    first: dict[str, int] = {}
    problems: list[tuple[Loc, str]] = [
        ((i, "name"), f"{what} name {item.name!r} is already used by {list_name}[{at}]")
        for i, item in enumerate(items)
        if (at := first.setdefault(item.name, i)) != i
    ]
    if problems:
        raise_problems(title, None, problems)


class ConfigModel(BaseModel):
    """Frozen, strict about keys, and able to refuse a key with a message of its own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    refused_keys: ClassVar[Mapping[str, str]] = {}
    """Keys that are not accepted, each with the message saying why and what to do.
    Reported at the key itself, together with the model's other problems."""

    @model_validator(mode="wrap")
    @classmethod
    def _refuse_keys(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        found = [key for key in cls.refused_keys if isinstance(data, Mapping) and key in data]
        if not found:
            return handler(data)
        problems = [((key,), cls.refused_keys[key]) for key in found]
        try:
            handler({k: v for k, v in data.items() if k not in found})
        except ValidationError as exc:
            raise_problems(cls.__name__, exc, problems)
        raise_problems(cls.__name__, None, problems)

    def redacted(self) -> dict[str, Any]:
        """A JSON-ready dump that is safe to log: credentials inside URLs are masked.

        ``model_dump()`` keeps real values (child processes need them); log this instead.
        """
        return self.model_dump(mode="json", context={"redact": True})
