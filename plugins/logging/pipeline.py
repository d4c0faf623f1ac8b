"""The process-wide logging set-up: structlog plus the stdlib loggers, one pipeline, one output.

Plain Python (no Falcon).  :func:`configure_logging` is idempotent: called
again with the same arguments it changes nothing; with different ones it
swaps the pipeline in place, so loggers that structlog already cached follow
along (except for the level, which structlog bakes into them).

Processor order, for structlog's own events and stdlib records alike::

    merge_contextvars        request_id and whatever else is bound for the request
    add_log_level            "level": "info"
    add_logger_name          "logger": the structlog logger's or the stdlib record's name
    (stdlib only) extras     the record's ``extra={...}`` fields
    add_static_fields        "app_name", "environment"
    format_exc_info          exc_info -> "exception" (the traceback text)
    contributed processors   ``taskman_log_processors`` results, in plugin order (redaction...)
    TimeStamper              "timestamp": ISO 8601, UTC
    renderer                 JSON: JsonLineRenderer (leading keys first, JSONRenderer's bytes), one object a line;
                             console: escape_controls, then ConsoleRenderer (coloured on a terminal)

Every line of every request goes through it, so the steps before the
contributed processors run as one processor (:class:`Enrich`) and, for JSON,
the timestamp and the rendering as another (:class:`JsonLineRenderer` with
``stamp=True``): the same fields, in the same order, the same bytes, with
a third of the calls.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from contextvars import copy_context
from datetime import UTC, datetime
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any, Literal, TextIO

import attrs
import structlog
from structlog.typing import Processor

Format = Literal["json", "console"]

#: The stdlib loggers of the servers whose own lines go through the pipeline.
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "gunicorn", "gunicorn.error")
#: The servers' access loggers: silenced, the logging plugin writes one line per request itself.
SERVER_ACCESS_LOGGERS = ("uvicorn.access", "gunicorn.access")
#: Keys of the event dict that a stdlib record's ``extra`` may not overwrite.
RESERVED_KEYS = frozenset({"event", "level", "logger", "timestamp", "exception", "app_name", "environment"})

_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
# Keys the servers add for their own formatters; noise in a structured line.
_DROPPED_EXTRAS = frozenset({"color_message"})


class Output:
    """Where rendered lines go: one ``write`` + ``flush`` per line, under one lock.

    ``stream=None`` means ``sys.stderr`` looked up at each write, so a
    redirected or captured stderr is followed.  A failing stream never
    breaks the code that logged.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self.lock = threading.RLock()

    def write(self, line: str) -> None:
        stream = self.stream if self.stream is not None else sys.stderr
        try:
            with self.lock:
                stream.write(line + "\n")
                stream.flush()
        except (OSError, ValueError):  # closed or broken stream: drop the line, keep serving
            pass


class LineLogger:
    """The logger structlog wraps: hands each rendered line to the :class:`Output`."""

    __slots__ = ("name", "output")

    def __init__(self, output: Output, name: str) -> None:
        self.output = output
        self.name = name

    def msg(self, message: str) -> None:
        self.output.write(message)

    log = debug = info = warn = warning = error = err = critical = exception = fatal = failure = msg


class LineLoggerFactory:
    """``structlog.get_logger(name)`` -> a :class:`LineLogger` called ``name`` (default ``taskman``)."""

    def __init__(self, output: Output) -> None:
        self.output = output

    def __call__(self, *args: Any) -> LineLogger:
        name = str(args[0]) if args and args[0] is not None else "taskman"
        return LineLogger(self.output, name)


class StructlogHandler(logging.Handler):
    """The root handler: stdlib records (``taskman.errors``, falcon, uvicorn, gunicorn...) through the same pipeline."""

    taskman_logging = True

    def __init__(self, output: Output, formatter: logging.Formatter) -> None:
        super().__init__()
        self.output = output
        self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.output.write(self.format(record))
        except Exception:
            self.handleError(record)


# -- processors --------------------------------------------------------------


def add_logger_name(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
    """``logger``: the stdlib record's name, or the structlog logger's."""
    record = event_dict.get("_record")
    event_dict["logger"] = record.name if record is not None else getattr(logger, "name", "taskman")
    return event_dict


def add_record_extras(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
    """Copy a stdlib record's ``extra={...}`` fields into the event (explicit values win over the context)."""
    record = event_dict.get("_record")
    if record is not None:
        for key, value in record.__dict__.items():
            if (
                key not in _RECORD_ATTRIBUTES
                and key not in RESERVED_KEYS
                and key not in _DROPPED_EXTRAS
                and not key.startswith("_")
            ):
                event_dict[key] = value
    return event_dict


#: The fields a JSON line starts with, in this order; the others follow as logged.
LEADING_KEYS = ("timestamp", "level", "logger", "event")


def leading_keys_first(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
    """Put ``timestamp``, ``level``, ``logger`` and ``event`` first, for people reading JSON lines."""
    ordered = {key: event_dict.pop(key) for key in LEADING_KEYS if key in event_dict}
    ordered.update(event_dict)
    return ordered


# C0 controls, DEL, C1 controls (0x9b is a terminal's CSI too) and the bidirectional controls that reorder
# what a terminal shows: a request path or header can carry any of them into a line.
_CONTROL_CODES = (
    *range(0x00, 0x20),
    0x7F,
    *range(0x80, 0xA0),
    0x061C,
    0x200E,
    0x200F,
    *range(0x202A, 0x202F),
    *range(0x2066, 0x206A),
)
#: ``str.translate`` tables: each control character becomes its Python escape (``\x1b``, ``\n``, ``\u202e``).
_ESCAPED = {code: repr(chr(code))[1:-1] for code in _CONTROL_CODES}
_ESCAPED_BUT_NEWLINES = {code: text for code, text in _ESCAPED.items() if code != ord("\n")}
#: Fields whose line breaks are their layout (a traceback), kept when the rest is escaped.
MULTILINE_KEYS = frozenset({"exception", "stack"})
_PLAIN = (int, float, bool, type(None))


class _Shown:
    """A value the console prints through ``repr``, with that text already escaped."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def escape_controls(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
    """Escape control characters in every key and value, for a console (JSON lines escape them already).

    A raw ESC or NUL from a request path would reach the terminal, where it
    can recolour, retitle or rewrite what the reader sees; a raw newline
    would start a forged line.  A traceback keeps its line breaks.  Values
    that are not strings are printed by the console as their ``repr``: that
    text is escaped too (a class's own ``__repr__`` may return anything).
    """
    escaped: dict[Any, Any] = {}
    for key, value in event_dict.items():
        name = key.translate(_ESCAPED) if isinstance(key, str) else key
        if isinstance(value, str):
            value = value.translate(_ESCAPED_BUT_NEWLINES if key in MULTILINE_KEYS else _ESCAPED)
        elif not isinstance(value, _PLAIN):
            value = _Shown(repr(value).translate(_ESCAPED))
        escaped[name] = value
    return escaped


@attrs.frozen
class StaticFields:
    """Add fixed fields (``app_name``, ``environment``) to every event."""

    fields: tuple[tuple[str, Any], ...]

    def __call__(self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
        for key, value in self.fields:
            event_dict.setdefault(key, value)
        return event_dict


#: structlog's level names for logger methods whose name is not a level (``structlog.processors.add_log_level``).
_LEVEL_OF_METHOD = {"warn": "warning", "exception": "error"}
_STRUCTLOG_PREFIX = structlog.contextvars.STRUCTLOG_KEY_PREFIX
_STRUCTLOG_PREFIX_LENGTH = len(_STRUCTLOG_PREFIX)
_format_exc_info = structlog.processors.format_exc_info


class Enrich:
    """Steps 1 to 6 of the chain (see the module docstring) in one call, each exactly as its own processor does.

    ``merge_contextvars``, ``add_log_level``, :func:`add_logger_name`,
    :func:`add_record_extras` (``foreign``: for stdlib records),
    :class:`StaticFields` and ``format_exc_info``: run once per line, one
    call instead of six, the event dict filled in the same order.
    """

    __slots__ = ("foreign", "static")

    def __init__(self, static: tuple[tuple[str, Any], ...], *, foreign: bool = False) -> None:
        self.static = static
        self.foreign = foreign

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Enrich) and (self.static, self.foreign) == (other.static, other.foreign)

    def __hash__(self) -> int:
        return hash((self.static, self.foreign))

    def __call__(self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
        context = copy_context()
        for var in context:
            name = var.name
            if name.startswith(_STRUCTLOG_PREFIX):
                value = context[var]
                if value is not Ellipsis:
                    event_dict.setdefault(name[_STRUCTLOG_PREFIX_LENGTH:], value)
        event_dict["level"] = _LEVEL_OF_METHOD.get(method_name, method_name)
        record = event_dict.get("_record")
        event_dict["logger"] = record.name if record is not None else getattr(logger, "name", "taskman")
        if self.foreign:
            add_record_extras(logger, method_name, event_dict)
        for key, value in self.static:
            event_dict.setdefault(key, value)
        if "exc_info" in event_dict:
            return _format_exc_info(logger, method_name, event_dict)
        return event_dict


class UtcClock:
    """``datetime.now(UTC).isoformat()`` with ``Z`` for ``+00:00``, as ``TimeStamper(fmt="iso", utc=True)`` writes it.

    The date and time to the second are formatted once per second; each
    call adds the microseconds (none when they are zero, as ``isoformat``
    does).  One tuple holds the second and its text, so threads never pair
    one second with another's text.
    """

    __slots__ = ("_second",)

    def __init__(self) -> None:
        self._second: tuple[int, str] = (-1, "")

    def __call__(self) -> str:
        seconds, nanoseconds = divmod(time.time_ns(), 1_000_000_000)
        second, text = self._second
        if seconds != second:
            text = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._second = (seconds, text)
        micro = nanoseconds // 1000
        return f"{text}.{micro:06d}Z" if micro else f"{text}Z"


# -- configuration ---------------------------------------------------------------


@attrs.frozen
class LogSetup:
    """Everything :func:`configure_logging` depends on; equal set-ups need no reconfiguration."""

    format: Format
    level: int
    static: tuple[tuple[str, Any], ...]
    processors: tuple[Processor, ...]
    stream: TextIO | None = attrs.field(eq=attrs.cmp_using(eq=lambda a, b: a is b))


_lock = threading.Lock()
_output = Output()


def _after_fork_in_child() -> None:
    # A forked worker (gunicorn) must not inherit a lock another thread held.
    _output.lock = threading.RLock()


os.register_at_fork(after_in_child=_after_fork_in_child)
# structlog keeps a reference to this list: filling it in place updates the
# loggers it has cached as well.
_processors: list[Processor] = []
_current: LogSetup | None = None
_handler: StructlogHandler | None = None
_root_level_before: int | None = None


def level_number(level: str | int) -> int:
    """``"info"`` / ``"INFO"`` / ``20`` -> ``20``."""
    if isinstance(level, int):
        return level
    number = logging.getLevelName(level.upper())
    if not isinstance(number, int):
        raise ValueError(f"unknown log level {level!r}")
    return number


def _wants_colors(stream: TextIO | None) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    target = stream if stream is not None else sys.stderr
    isatty = getattr(target, "isatty", None)
    return bool(isatty and isatty())


class JsonLineRenderer:
    """``leading_keys_first`` and structlog's ``JSONRenderer`` in one step, with the encoder built once.

    Same bytes as ``JSONRenderer()`` (``json.dumps`` defaults, structlog's
    fallback for objects JSON does not know); ``json.dumps`` with a
    ``default`` builds a new encoder for every line, which was a quarter of
    the cost of an access line.  The encoder does not check for cycles (a
    shared marker table would not be thread-safe): a cyclic value fails with
    ``RecursionError`` rather than ``ValueError``, and the redaction plugin
    cuts cycles before they get here.

    ``stamp=True`` sets ``timestamp`` first, as ``TimeStamper(fmt="iso",
    utc=True)`` right before it would (:class:`UtcClock`).
    """

    def __init__(self, *, stamp: bool = False) -> None:
        fallback = structlog.processors._json_fallback_handler
        if c_make_encoder is not None:
            self._encode = c_make_encoder(None, fallback, encode_basestring_ascii, None, ": ", ", ", False, False, True)
        else:  # pragma: no cover - CPython always has the C encoder
            self._encode = json.JSONEncoder(default=fallback).iterencode
        self._clock = UtcClock() if stamp else None

    def __call__(self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> str:
        if self._clock is not None:
            event_dict["timestamp"] = self._clock()
        ordered = {key: event_dict.pop(key) for key in LEADING_KEYS if key in event_dict}
        ordered.update(event_dict)
        return "".join(self._encode(ordered, 0))


def _renderers(format: Format, stream: TextIO | None) -> list[Processor]:
    """What follows the contributed processors: the timestamp and the renderer."""
    if format == "json":
        return [JsonLineRenderer(stamp=True)]
    return [
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        escape_controls,
        structlog.dev.ConsoleRenderer(colors=_wants_colors(stream)),
    ]


def build_processors(setup: LogSetup, *, foreign: bool) -> list[Processor]:
    """The chain before the timestamp and the renderer (see the module docstring); ``foreign``: for stdlib records."""
    return [Enrich(setup.static, foreign=foreign), *setup.processors]


def configure_logging(
    *,
    format: Format,
    level: str | int = "info",
    static: Mapping[str, Any] | None = None,
    processors: Iterable[Processor] = (),
    stream: TextIO | None = None,
) -> bool:
    """Configure structlog and the stdlib root logger for this process; return False if nothing changed.

    ``static`` fields go on every line; ``processors`` run after the
    standard ones and before the timestamp and the renderer; ``stream``
    defaults to the current ``sys.stderr``.  The root logger gets one
    :class:`StructlogHandler` (a previous one is replaced; other handlers
    are left alone), the servers' loggers propagate to it and their access
    loggers are silenced, and warnings are logged.
    """
    global _current, _handler, _root_level_before
    setup = LogSetup(
        format=format,
        level=level_number(level),
        static=tuple((static or {}).items()),
        processors=tuple(processors),
        stream=stream,
    )
    root = logging.getLogger()
    with _lock:
        adopt_server_loggers()
        if setup == _current and _handler is not None and _handler in root.handlers:
            return False
        renderers = _renderers(setup.format, setup.stream)
        _output.stream = setup.stream
        _processors[:] = [*build_processors(setup, foreign=False), *renderers]
        structlog.configure(
            processors=_processors,
            wrapper_class=structlog.make_filtering_bound_logger(setup.level),
            context_class=dict,
            logger_factory=LineLoggerFactory(_output),
            cache_logger_on_first_use=True,
        )
        formatter = structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=build_processors(setup, foreign=True),
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderers],
        )
        handler = StructlogHandler(_output, formatter)
        for old in [h for h in root.handlers if getattr(h, "taskman_logging", False)]:
            root.removeHandler(old)
        root.addHandler(handler)
        if _root_level_before is None:
            _root_level_before = root.level
        root.setLevel(setup.level)
        logging.captureWarnings(True)
        _current, _handler = setup, handler
        return True


_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def event_writer(name: str, method: str = "info") -> Callable[[dict[str, Any]], None]:
    """``structlog.get_logger(name).<method>(**event)`` for an event dict the caller built, once logging is configured.

    The same processors (the list structlog was configured with, followed
    in place as it changes), the same output and ``DropEvent`` handling; the
    level in force is read at each call.  What it saves is the bound
    logger's work around them: two copies of the keyword arguments and one
    of its context per line, a fifth of the cost of an access line.  Before
    :func:`configure_logging` ran, events go to structlog's own logger.
    """
    logger = LineLogger(_output, name)
    level = _LEVELS[method]
    fallback = getattr(structlog.get_logger(name), method)

    def write(event_dict: dict[str, Any]) -> None:
        setup = _current
        if setup is None:
            event = event_dict.pop("event", None)
            fallback(event, **event_dict)
            return
        if level < setup.level:
            return
        result: Any = event_dict
        try:
            for processor in _processors:
                result = processor(logger, method, result)
        except structlog.DropEvent:
            return
        logger.msg(result)

    return write


def adopt_server_loggers() -> None:
    """Send uvicorn's and gunicorn's own lines to the root handler; silence their access loggers."""
    for name in SERVER_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True
    for name in SERVER_ACCESS_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = False


def reset_logging() -> None:
    """Undo :func:`configure_logging`: structlog's defaults, the root handler removed, the root level restored."""
    global _current, _handler, _root_level_before
    root = logging.getLogger()
    with _lock:
        for old in [h for h in root.handlers if getattr(h, "taskman_logging", False)]:
            root.removeHandler(old)
        if _root_level_before is not None:
            root.setLevel(_root_level_before)
        logging.captureWarnings(False)
        structlog.reset_defaults()
        _current = _handler = _root_level_before = None


def current_setup() -> LogSetup | None:
    """The set-up in force in this process, if :func:`configure_logging` ran."""
    return _current


@attrs.frozen
class IsolatedProcessor:
    """A plugin's processor whose failure stays its own: the line goes out, minus what it could not vouch for.

    A processor that raises might have been the one hiding secrets: the
    line is replaced by one that says which plugin failed, with the level,
    logger and request id only.  ``report(plugin, error)`` is told of it
    (the runtime counts it).  ``DropEvent`` is a processor's normal way of
    filtering and passes through.
    """

    KEPT = ("level", "logger", "request_id", "app_name", "environment")

    plugin: str
    processor: Processor
    # Not part of equality: a set-up with the same processors is the same set-up.
    report: Callable[[str, BaseException], None] = attrs.field(eq=False)

    def __call__(self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
        try:
            return self.processor(logger, method_name, event_dict)
        except structlog.DropEvent:
            raise
        except Exception as exc:
            with contextlib.suppress(Exception):
                self.report(self.plugin, exc)
            kept = {key: event_dict[key] for key in self.KEPT if key in event_dict}
            return {**kept, "event": "log_processor_failed", "plugin": self.plugin, "error": type(exc).__name__}


def contributed(
    results: Sequence[tuple[str, Any]],
    fail: Callable[[str, str], Exception],
    report: Callable[[str, BaseException], None] = lambda plugin, error: None,
) -> list[Processor]:
    """Flatten ``(plugin, [processor, ...])`` hook results, each isolated; ``fail(plugin, reason)`` for a bad one."""
    chain: list[Processor] = []
    for plugin, result in results:
        for processor in result or ():
            if not callable(processor):
                raise fail(plugin, f"{processor!r} is not a structlog processor (a callable)")
            chain.append(IsolatedProcessor(plugin, processor, report))
    return chain
