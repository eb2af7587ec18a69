"""API credentials that never leak: read from environment variables only, redacted everywhere.

A :class:`Secret` hides its value from ``str``/``repr``/f-strings/pickling; only ``reveal()`` gives it,
and only the HTTP layer calls that. Every secret read through :func:`secret_from_env` is registered,
and :func:`redact` replaces registered values in any text (error messages are passed through it).
A wrapped log-record factory redacts every log record too,
because httpx logs full request URLs (with e.g. Flickr's ``api_key`` query parameter) at INFO level.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping

REDACTED = "***"
_MIN_SECRET_LEN = 4

_lock = threading.Lock()
_registered: set[str] = set()
_filter_installed = False


class Secret:
    """A credential value that prints as ``***``.

    Args:
        value: the secret text.
        name: what it is (e.g. the environment variable), shown in ``repr``.
    """

    __slots__ = ("_value", "name")

    def __init__(self, value: str, name: str = "secret") -> None:
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name}: a secret must be a non-empty string")
        self._value = value
        self.name = name
        register_secret(value)

    def reveal(self) -> str:
        """The real value; call only where it is sent to the provider."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self.name}={REDACTED})"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __reduce__(self):
        raise TypeError("Secret values cannot be pickled")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))


def register_secret(value: str) -> None:
    """Remember a value so that :func:`redact` and the log filter hide it."""
    if value and len(value) >= _MIN_SECRET_LEN:
        with _lock:
            _registered.add(value)
    install_log_redaction()


def redact(text: str) -> str:
    """Replace every registered secret in ``text`` with ``***``."""
    if not text:
        return text
    with _lock:
        values = sorted(_registered, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def secret_from_env(var: str, env: Mapping[str, str] | None = None) -> Secret | None:
    """Read a credential from an environment variable (``env`` defaults to ``os.environ``).

    Returns:
        The secret, or None when the variable is unset or blank.
    """
    source = os.environ if env is None else env
    value = (source.get(var) or "").strip()
    return Secret(value, var) if value else None


def _redacting_factory(previous):
    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if not _registered:
            return record
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is left to the handler
            return record
        clean = redact(message)
        if clean != message:
            record.msg = clean
            record.args = None
        return record

    factory._ie_env_redacting = True  # type: ignore[attr-defined]
    return factory


def install_log_redaction() -> None:
    """Make every log record from now on redact registered secrets (idempotent).

    This wraps the logging record factory, so it covers httpx's and httpcore's child loggers and
    any handler (including pytest's caplog), not only loggers that we know by name.
    """
    global _filter_installed
    with _lock:
        if _filter_installed:
            return
        _filter_installed = True
    current = logging.getLogRecordFactory()
    if not getattr(current, "_ie_env_redacting", False):
        logging.setLogRecordFactory(_redacting_factory(current))
