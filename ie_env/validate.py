"""The one set of validation helpers every config dataclass uses.

Each helper checks one field and raises :class:`ValueError` whose message names the field as
``Owner.field``, the rule and the bad value, e.g. ``EnvConfig.budget must be an integer >= 1, got 0``.
A config's ``__post_init__`` is then a short list of calls::

    @dataclass(frozen=True)
    class SplitConfig:
        train: float = 0.4

        def __post_init__(self) -> None:
            check_number(self, "train", 0.0, 1.0, low_open=True, high_open=True)
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any


def _name(owner: object, field: str) -> str:
    cls = owner if isinstance(owner, type) else type(owner)
    return f"{cls.__name__}.{field}"


def _value(owner: object, field: str, value: Any) -> Any:
    return getattr(owner, field) if value is _MISSING else value


_MISSING = object()


def fail(owner: object, field: str, rule: str, value: Any = _MISSING) -> None:
    """Raise the standard error: ``Owner.field must <rule>, got <value!r>``."""
    value = _value(owner, field, value)
    raise ValueError(f"{_name(owner, field)} must {rule}, got {value!r}")


def is_int(value: object) -> bool:
    """Return whether ``value`` is an ``int`` and not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """Return whether ``value`` is a finite real number (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_int(
    owner: object,
    field: str,
    minimum: int | None = None,
    maximum: int | None = None,
    *,
    optional: bool = False,
    value: Any = _MISSING,
) -> None:
    """Check that ``owner.field`` is an int within ``[minimum, maximum]`` (``None`` allowed if optional)."""
    value = _value(owner, field, value)
    if optional and value is None:
        return
    if (
        not is_int(value)
        or (minimum is not None and value < minimum)
        or (maximum is not None and value > maximum)
    ):
        fail(owner, field, _bounds_rule("an integer", minimum, maximum, optional), value)


def check_ints(owner: object, fields: Collection[str], minimum: int | None = None, **kwargs: Any) -> None:
    """:func:`check_int` for several fields with the same rule."""
    for field in fields:
        check_int(owner, field, minimum, **kwargs)


def check_number(
    owner: object,
    field: str,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    optional: bool = False,
    value: Any = _MISSING,
) -> None:
    """Check that ``owner.field`` is a finite number in the interval (open ends where asked)."""
    value = _value(owner, field, value)
    if optional and value is None:
        return
    ok = is_number(value)
    if ok and minimum is not None:
        ok = value > minimum if low_open else value >= minimum
    if ok and maximum is not None:
        ok = value < maximum if high_open else value <= maximum
    if not ok:
        rule = _interval_rule(minimum, maximum, low_open, high_open)
        fail(owner, field, f"be a finite number {rule}" + (" or None" if optional else ""), value)


def check_numbers(
    owner: object, fields: Collection[str], minimum: float | None = None, **kwargs: Any
) -> None:
    """:func:`check_number` for several fields with the same rule."""
    for field in fields:
        check_number(owner, field, minimum, **kwargs)


def check_choice(
    owner: object, field: str, choices: Collection[Any], *, optional: bool = False, value: Any = _MISSING
) -> None:
    """Check that ``owner.field`` is one of ``choices``."""
    value = _value(owner, field, value)
    if optional and value is None:
        return
    if value not in choices:
        fail(owner, field, f"be one of {tuple(choices)!r}", value)


def check_bool(owner: object, field: str, *, value: Any = _MISSING) -> None:
    """Check that ``owner.field`` is a bool."""
    value = _value(owner, field, value)
    if not isinstance(value, bool):
        fail(owner, field, "be True or False", value)


def check_text(owner: object, field: str, *, single_line: bool = True, value: Any = _MISSING) -> None:
    """Check that ``owner.field`` is a non-empty string (one line unless ``single_line=False``)."""
    value = _value(owner, field, value)
    if not isinstance(value, str) or not value.strip() or (single_line and any(c in value for c in "\r\n")):
        fail(
            owner,
            field,
            "be a non-empty single-line string" if single_line else "be a non-empty string",
            value,
        )


def _bounds_rule(kind: str, minimum: float | None, maximum: float | None, optional: bool) -> str:
    if minimum is not None and maximum is not None:
        rule = f"be {kind} in [{minimum}, {maximum}]"
    elif minimum is not None:
        rule = f"be {kind} >= {minimum}"
    elif maximum is not None:
        rule = f"be {kind} <= {maximum}"
    else:
        rule = f"be {kind}"
    return rule + (" or None" if optional else "")


def _interval_rule(minimum: float | None, maximum: float | None, low_open: bool, high_open: bool) -> str:
    if minimum is not None and maximum is not None:
        return f"in {'(' if low_open else '['}{minimum}, {maximum}{')' if high_open else ']'}"
    if minimum is not None:
        return f"{'>' if low_open else '>='} {minimum}"
    if maximum is not None:
        return f"{'<' if high_open else '<='} {maximum}"
    return ""
