"""Settings checked by pydantic (strictly: YAML's ``"yes"`` is no bool, ``true`` no integer), and its
first error worded as our one-line message: the key as a dotted path, the value, and what the key
allows, worded from the declared type so that no bound is written twice.
"""

from __future__ import annotations

import difflib
import functools
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt, MinLen
from pydantic import ConfigDict, Field, ValidationError, WrapValidator
from pydantic.fields import FieldInfo

from .errors import ConfigError

STRICT = ConfigDict(strict=True, extra="forbid")


def _keep_int(value: Any, handler: Any) -> Any:
    """Check a number as a float but keep an int an int, so a setting hashes and prints as written."""
    number = handler(value)
    return value if type(value) is int else number


Number = Annotated[float, Field(allow_inf_nan=False), WrapValidator(_keep_int)]
PositiveNumber = Annotated[Number, Field(gt=0)]
NonNegativeNumber = Annotated[Number, Field(ge=0)]
Fraction = Annotated[Number, Field(ge=0, lt=1)]
Probability = Annotated[Number, Field(ge=0, le=1)]


def pair(item: Any, what: str) -> Any:
    """A [low, high] list of two ``item`` values."""
    return Annotated[
        tuple[item, ...], Field(min_length=2, max_length=2, strict=False, description=f"[low, high] ({what})")
    ]


@dataclass(frozen=True)
class Problem:
    """Pydantic's first error. ``kind``: ``unknown`` (a key; ``allowed`` lists the keys), ``choice`` (a
    value not among ``allowed``), ``value`` (one that is not ``allowed``) or ``custom`` (``allowed`` is
    the message of a cross-field check)."""

    loc: tuple[str | int, ...]
    kind: str
    value: Any
    allowed: str
    hint: str = ""

    @property
    def key(self) -> str:
        return dotted(self.loc)


def problem(error: ValidationError, root: Any) -> Problem:
    """The first error of validating ``root`` (a settings class or type), in our terms."""
    first = error.errors()[0]
    loc, kind = tuple(first["loc"]), first["type"]
    if kind == "value_error":
        return Problem(loc, "custom", None, str(first["ctx"]["error"]))
    if kind in ("extra_forbidden", "unexpected_keyword_argument") or loc[-1:] == ("[key]",):
        loc = loc[:-1] if loc[-1:] == ("[key]",) else loc
        keys = _keys(_type_at(root, loc[:-1]))
        close = difflib.get_close_matches(str(loc[-1]), keys, n=3)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        return Problem(loc, "unknown", loc[-1], ", ".join(keys), hint)
    expected = _type_at(root, loc)
    value = None if kind == "missing" else first["input"]
    choice = get_origin(_base(expected)) is Literal
    return Problem(loc, "choice" if choice else "value", value, _allowed(expected))


def _setting_message(found: Problem) -> str:
    """A settings object's message: ``rank=0 must be an integer >= 1``."""
    if found.kind == "unknown":
        return f"unknown setting {found.key}{found.hint}; known: {found.allowed}"
    if found.kind == "custom":
        return found.allowed
    if found.kind == "choice":
        return f"{found.key}={found.value!r} is unknown; choose {found.allowed}"
    return f"{found.key}={found.value!r} must be {found.allowed}"


def config_errors(context: str = "") -> Callable[[type], type]:
    """Make a pydantic dataclass raise ConfigError, ``context`` then a message like ``rank=0 must be an
    integer >= 1``, instead of pydantic's ValidationError."""

    def wrap(cls: type) -> type:
        validated_init = cls.__init__

        @functools.wraps(validated_init)
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            try:
                validated_init(self, *args, **kwargs)
            except ValidationError as exc:
                raise ConfigError(context + _setting_message(problem(exc, cls))) from None

        cls.__init__ = __init__
        return cls

    return wrap


def dotted(loc: tuple[str | int, ...]) -> str:
    """``("seeds", 1)`` -> ``seeds[1]``, ``("search", "seed")`` -> ``search.seed``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "text"}


def _allowed(expected: Any) -> str:
    """What a type allows, in words: ``an integer >= 1``, ``a number in [0, 1) or null``, ``one of a, b``;
    a ``Field(description=...)`` says it instead."""
    base, meta = _peel(expected)
    described = [m.description for m in meta if isinstance(m, FieldInfo) and m.description]
    if described:
        return described[0]
    if get_origin(base) in (Union, types.UnionType):
        options = get_args(base)
        words = " or ".join(_allowed(option) for option in options if option is not type(None))
        return words + (" or null" if type(None) in options else "")
    if get_origin(base) is Literal:
        return "one of " + ", ".join(str(value) for value in get_args(base))
    words = _WORDS.get(get_origin(base) or base, "a mapping")
    if base is str and any(isinstance(m, MinLen) and m.min_length > 0 for m in meta):
        words = "non-empty text"
    return words + _bounds(meta, integer=base is int)


_OPERATORS = {"[": ">=", "(": ">", "]": "<=", ")": "<"}


def _bounds(meta: list[Any], integer: bool) -> str:
    """`` >= 1``, `` in [0, 1)``: the bounds in ``meta``; an integer's ``> 0`` reads ``>= 1``."""
    low = high = None
    for m in meta:
        if isinstance(m, (Ge, Gt)):
            low = ("[", m.ge) if isinstance(m, Ge) else ("[", m.gt + 1) if integer else ("(", m.gt)
        elif isinstance(m, (Le, Lt)):
            high = ("]", m.le) if isinstance(m, Le) else ("]", m.lt - 1) if integer else (")", m.lt)
    if low and high:
        return f" in {low[0]}{low[1]}, {high[1]}{high[0]}"
    bracket, value = low or high or ("", "")
    return f" {_OPERATORS[bracket]} {value}" if bracket else ""


def _peel(expected: Any) -> tuple[Any, list[Any]]:
    """The type inside ``Annotated`` layers, and their metadata (a FieldInfo's constraints included)."""
    meta: list[Any] = []
    while get_origin(expected) is Annotated:
        expected, *extra = get_args(expected)
        meta += extra
    return expected, meta + [m for info in meta if isinstance(info, FieldInfo) for m in info.metadata]


def _type_at(expected: Any, loc: tuple[str | int, ...]) -> Any:
    """The declared type at ``loc`` inside ``expected``: a field, a mapping's value, a list's item, the
    member of a union that a tag names."""
    for part in loc:
        base = _base(expected)
        fields = getattr(base, "__pydantic_fields__", None)
        if fields is not None:
            expected = Annotated[fields[part].annotation, fields[part]]
        elif get_origin(base) in (dict, list, tuple):
            expected = get_args(base)[-1 if get_origin(base) is dict else 0]
        else:
            expected = next(
                o for o in get_args(base) if any(getattr(m, "tag", None) == part for m in _peel(o)[1])
            )
    return expected


def _base(expected: Any) -> Any:
    """The type inside ``Annotated`` layers and ``| None``."""
    base = _peel(expected)[0]
    options = [option for option in get_args(base) if option is not type(None)]
    if get_origin(base) in (Union, types.UnionType) and len(options) == 1:
        return _peel(options[0])[0]
    return base


def _keys(parent: Any) -> list[str]:
    """The keys a mapping type allows: its fields, or the Literal its keys are."""
    base = _base(parent)
    if get_origin(base) is dict:
        return [str(key) for key in get_args(_base(get_args(base)[0]))]
    return list(getattr(base, "__pydantic_fields__", {}))
