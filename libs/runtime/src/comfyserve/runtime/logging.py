"""structlog set-up shared by every service: JSON lines when stdout is not a
terminal, readable lines otherwise, each with the current span's `trace_id`
and `span_id`, and no secret in any line."""

from __future__ import annotations

import logging
import re
import sys
import traceback
from collections.abc import MutableMapping
from typing import Any

import structlog
from opentelemetry import trace

__all__ = [
    "configure_logging",
    "describe_error",
    "format_exception",
    "parse_level",
    "redact",
]

# Libraries that log request URLs (presigned, with their signature) at INFO.
_CHATTY_LIBRARIES = ("httpx", "httpcore", "urllib3")

# Where a secret's value ends: query and header delimiters, quotes, and the
# backslash of an escape, so a masked line that was JSON stays JSON.
_END = r"\s&;,\"'\\#)\x1b"
_SECRETS = (
    # Presigned S3 URLs: the signature and credential let anyone fetch the
    # object; also percent-encoded, as inside another URL's query.
    (
        re.compile(
            rf"(?i)(X-Amz-(?:Signature|Credential|Security-Token)(?:=|%3D))[^{_END}]+"
        ),
        r"\1***",
    ),
    (re.compile(rf"((?:Signature|AWSAccessKeyId)=)[^{_END}]+"), r"\1***"),
    # Credentials in a query, as native clients send `/ws?token=...`.
    (re.compile(rf"(?i)(\b(?:access_|refresh_|id_)?token=)[^{_END}]+"), r"\1***"),
    # An Authorization header in any form a library logs it: `Authorization:
    # Basic ...`, a dict's `'authorization': 'Basic ...'`, a raw header tuple.
    (
        re.compile(
            r"(?i)(authorization[^A-Za-z0-9]{1,6}(?:b['\"])?(?:basic|bearer|digest)\s+)"
            rf"[^{_END}]+"
        ),
        r"\1***",
    ),
    (re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1***"),
    # A password in a URL (`http://user:KEY@host`, a database URL).
    (
        re.compile(rf"(?i)(\b[a-z][a-z0-9+.-]*://[^{_END}/:@]*:)[^{_END}/@]+@"),
        r"\1***@",
    ),
    # JWTs: our access and refresh tokens, and the services' own.
    (re.compile(r"\beyJ[A-Za-z0-9_-]*\.eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"), "eyJ***"),
    # API keys keep their recognisable prefix only.
    (re.compile(r"\b(csk_)[A-Za-z0-9_-]+"), r"\1***"),
)


# Every pattern above needs one of these, lower-cased, in the lower-cased
# text: a line without any (most lines) is searched for nine substrings rather
# than eight expressions, about 50 µs less a line.
_SECRET_MARKS = (
    "x-amz-",
    "signature=",
    "awsaccesskeyid=",
    "token=",
    "authorization",
    "bearer",
    "://",
    "eyj",
    "csk_",
)


def redact(text: str) -> str:
    """`text` with presigned signatures, tokens, passwords and API keys masked."""
    lowered = text.lower()
    if not any(mark in lowered for mark in _SECRET_MARKS):
        return text
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def _redacting(renderer: structlog.typing.Processor) -> structlog.typing.Processor:
    """`renderer` whose every line is redacted as written: a value's repr (a
    headers object, bytes) only exists once rendered, so redacting the event's
    strings before would miss it."""

    def render(logger: Any, method: str, event: MutableMapping[str, Any]) -> Any:
        line = renderer(logger, method, event)
        return redact(line) if isinstance(line, str) else line

    return render


_DATABASE_MODULES = ("sqlalchemy", "asyncpg", "psycopg")


def _is_database_error(error: BaseException) -> bool:
    return type(error).__module__.startswith(_DATABASE_MODULES)


def describe_error(error: BaseException) -> str:
    """What to log of an error. A database error is named by its type and
    SQLSTATE only: drivers and Postgres quote the offending values (a prompt's
    text, say) in their messages."""
    if not _is_database_error(error):
        return repr(error)
    cause = getattr(error, "orig", None) or error.__cause__ or error
    sqlstate = getattr(cause, "sqlstate", None) or getattr(
        getattr(cause, "__cause__", None), "sqlstate", None
    )
    described = f"{type(error).__name__}({type(cause).__name__}"
    return described + (f", sqlstate={sqlstate})" if sqlstate else ")")


def _chain(error: BaseException) -> list[BaseException]:
    """`error` and its causes, the first cause first, as Python prints them."""
    chain: list[BaseException] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    return chain[::-1]


def format_exception(error: BaseException) -> str:
    """A traceback whose database errors show no message (see `describe_error`)."""
    if not any(_is_database_error(e) for e in _chain(error)):
        return "".join(traceback.format_exception(error))
    parts = []
    for link in _chain(error):
        stack = traceback.StackSummary.extract(traceback.walk_tb(link.__traceback__))
        parts.append("Traceback (most recent call last):\n" + "".join(stack.format()))
        parts.append(describe_error(link) + "\n")
    return "\n".join(parts)


def _exceptions(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    exc_info = event.pop("exc_info", None)
    if exc_info is True:
        exc_info = sys.exc_info()
    error = exc_info if isinstance(exc_info, BaseException) else None
    if isinstance(exc_info, tuple):
        error = exc_info[1]
    if error is not None:
        event["exception"] = format_exception(error)
    return event


def _trace_ids(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """The current OpenTelemetry span's ids, so a line leads to its trace."""
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        event.setdefault("trace_id", trace.format_trace_id(span_context.trace_id))
        event.setdefault("span_id", trace.format_span_id(span_context.span_id))
    return event


def parse_level(level: str | int) -> int:
    """A logging level from a name such as "info" or a number; INFO if unknown."""
    if isinstance(level, int):
        return level
    numeric = logging.getLevelNamesMapping().get(level.strip().upper())
    return logging.INFO if numeric is None else numeric


def configure_logging(level: str | int = "info") -> None:
    """Every line JSON (console on a TTY), from structlog and from the standard
    library's loggers (uvicorn, aiokafka, grpc) alike, redacted the same way."""
    numeric = parse_level(level)
    renderer = _redacting(
        structlog.dev.ConsoleRenderer()
        if sys.stdout.isatty()
        else structlog.processors.JSONRenderer()
    )
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _trace_ids,
            structlog.processors.add_log_level,
            timestamper,
            _exceptions,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.contextvars.merge_contextvars,
                _trace_ids,
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                timestamper,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _exceptions,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    for name in _CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
