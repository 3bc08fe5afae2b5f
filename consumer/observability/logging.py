"""Structured logging: configured once in main, JSON for machines, colour for humans, no secrets.

Every line carries the event context the consumer binds with
`structlog.contextvars.bound_contextvars(event_id=..., user_id=..., topic=..., partition=...,
offset=...)`. Lines from the standard library (aiokafka, httpx, aiohttp, uvicorn) go through
the same processors, so they are rendered and redacted the same way.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
import threading
from collections.abc import Mapping
from typing import Any, TextIO

import structlog
from pydantic import SecretStr
from structlog.typing import EventDict, Processor, WrappedLogger

REDACTED = "[REDACTED]"

# Matched against a key lower-cased with dashes as underscores, whole or as its `_` suffix:
# `client_secret`, `kafka_sasl_password`, `x-api-key` and `refresh_token` are all caught.
SECRET_KEYS = frozenset(
    {
        "password",
        "passwd",
        "secret",
        "token",
        "authorization",
        "access_token",
        "refresh_token",
        "id_token",
        "client_secret",
        "api_key",
        "apikey",
        "cookie",
        "set_cookie",
        "private_key",
    }
)
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9\-._~+/]+=*")
_URL_PASSWORD = re.compile(r"(://[^/\s:@]+:)[^/\s@]+@")

# Shorter strings are no secret worth the name, and scrubbing them would garble every line.
MIN_SECRET_LENGTH = 4

NOISY_LOGGERS = (
    "aiokafka",
    "kafka",
    "httpx",
    "httpcore",
    "aiohttp",
    "uvicorn",
    "asyncio",
)


class _SecretRegistry:
    """Known secret values, scrubbed from every string that is logged."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self.pattern: re.Pattern[str] | None = None

    def add(self, value: str) -> None:
        with self._lock:
            self._values.add(value)
            # Longest first, so a secret that contains another is scrubbed whole.
            ordered = sorted(self._values, key=len, reverse=True)
            self.pattern = re.compile("|".join(re.escape(item) for item in ordered))

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self.pattern = None


_SECRETS = _SecretRegistry()


def register_secret(value: str | SecretStr | None) -> None:
    """Scrub this value from every log line from now on (the consumer registers its secrets)."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value is None or len(value) < MIN_SECRET_LENGTH:
        return
    _SECRETS.add(value)


def clear_secrets() -> None:
    """Forget every registered secret value (for tests)."""
    _SECRETS.clear()


_SECRET_SUFFIXES = tuple(f"_{secret}" for secret in SECRET_KEYS)


def is_secret_key(key: object) -> bool:
    """Whether a field of this name holds a secret, whatever its value."""
    return isinstance(key, str) and _is_secret_name(key)


# Every field of every line is looked up here; the names are the code's own, so few and
# repeated, and the cache spares re-deciding each one on every line.
@functools.lru_cache(maxsize=4096)
def _is_secret_name(key: str) -> bool:
    name = key.lower().replace("-", "_")
    return name in SECRET_KEYS or name.endswith(_SECRET_SUFFIXES)


def scrub_text(text: str) -> str:
    """The text with bearer tokens, URL passwords and registered secret values replaced."""
    pattern = _SECRETS.pattern
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    # Replacements as functions: a template with a group reference would be expanded in
    # Python on every call, match or not; a function runs only for a match.
    text = _BEARER.sub(_redact_bearer, text)
    return _URL_PASSWORD.sub(_redact_url_password, text)


def _redact_bearer(match: re.Match[str]) -> str:
    return f"{match[1]} {REDACTED}"


def _redact_url_password(match: re.Match[str]) -> str:
    return f"{match[1]}{REDACTED}@"


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return scrub_text(value)
    if value is None or isinstance(value, bool | int | float):
        # Most fields: nothing to scrub, and no abstract-class check to pay for.
        return value
    if isinstance(value, Mapping):
        return {
            key: (REDACTED if is_secret_key(key) and item is not None else _scrub(item))
            for key, item in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(item) for item in value]
    return value


def redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """A structlog processor: secret fields become `[REDACTED]`, secrets in text are scrubbed."""
    scrubbed: EventDict = _scrub(event_dict)
    return scrubbed


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]


def _renderer(fmt: str, stream: TextIO) -> Processor:
    if fmt == "console":
        return structlog.dev.ConsoleRenderer(colors=stream.isatty())
    return structlog.processors.JSONRenderer()


_handler: logging.Handler | None = None


def configure_logging(
    level: str = "INFO", fmt: str = "json", *, stream: TextIO | None = None
) -> None:
    """Set up structlog and the standard library's logging once, from LOG_LEVEL and LOG_FORMAT."""
    global _handler
    level_name = str(level).upper()
    numeric_level = logging.getLevelName(level_name)
    if not isinstance(numeric_level, int):
        raise ValueError(f"unknown log level: {level}")
    output = stream if stream is not None else sys.stderr
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # Tracebacks become text before redaction, so secrets inside them are scrubbed too.
            structlog.processors.format_exc_info,
            redact_secrets,
            _renderer(str(fmt), output),
        ],
    )
    handler = logging.StreamHandler(output)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    root.addHandler(handler)
    root.setLevel(numeric_level)
    _handler = handler
    quiet = numeric_level > logging.DEBUG
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING if quiet else logging.NOTSET)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Cached loggers would keep their processors and escape `capture_logs` in tests.
        cache_logger_on_first_use=False,
    )
