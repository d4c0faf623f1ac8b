"""compression: gzip or brotli response bodies for clients that accept them, with Vary; ETags left as they are.

The plain part is Falcon-free: :func:`choose_encoding` negotiates
``Accept-Encoding`` (RFC 9110 section 12.5.3: q-values, ``*``,
``identity``), :func:`encode` compresses, and :class:`Compressor` holds
the settings and says which media types are worth compressing.  The
middleware decides per response and swaps the body; its
``process_response`` runs after every other shaping plugin's (stage ``shape``, first in it), so it
compresses the final body, error documents included.  ``brotli`` is
optional: without it only gzip is offered.  See docs/compression.md.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import importlib
import re
from collections.abc import Sequence
from typing import Any

import attrs
from attrs import validators as v

from taskman import hookimpl, setting, settings_section, staged, with_vary


def _load_brotli() -> Any:
    try:
        return importlib.import_module("brotli")
    except ImportError:
        return None


#: The ``brotli`` module, or None when it is not installed (then only gzip is offered).
brotli: Any = _load_brotli()


BROTLI = "br"
GZIP = "gzip"
#: Codings this plugin can produce, in the order it prefers them when the client likes them equally.
SUPPORTED = (BROTLI, GZIP)
#: ``x-gzip`` is gzip (RFC 9110 section 8.4.1.3).
_ALIASES = {"x-gzip": GZIP}

#: Under ASGI, bodies above this are compressed in a worker thread, so the event loop keeps serving.
THREAD_THRESHOLD = 64 * 1024

#: Media types whose bodies are already compressed (or are streams of events): never worth it.
DEFAULT_EXCLUDED_TYPES = (
    "image/*",
    "video/*",
    "audio/*",
    "font/woff",
    "font/woff2",
    "application/zip",
    "application/gzip",
    "application/x-gzip",
    "application/x-bzip2",
    "application/x-xz",
    "application/zstd",
    "application/x-7z-compressed",
    "application/vnd.rar",
    "text/event-stream",
)

_MEDIA_TYPE = re.compile(r"[a-z0-9!#$&^_.+-]+/(\*|[a-z0-9!#$&^_.+-]+)")
# RFC 9110 qvalue: 0, 0.x, 0.xxx, 1, 1.000.
_QVALUE = re.compile(r"0(\.\d{0,3})?|1(\.0{0,3})?")


def _check_encodings(instance: object, attribute: attrs.Attribute, value: Sequence[str]) -> None:  # type: ignore[type-arg]
    if not value or len(set(value)) != len(value) or not set(value) <= set(SUPPORTED):
        raise ValueError(f"'{attribute.name}' must list br and/or gzip, each once, preferred first: {list(value)!r}")


def _check_types(instance: object, attribute: attrs.Attribute, value: Sequence[str]) -> None:  # type: ignore[type-arg]
    for media_type in value:
        if not (isinstance(media_type, str) and _MEDIA_TYPE.fullmatch(media_type)):
            raise ValueError(f"'{attribute.name}' entries must be lower-case media types or type/*: {media_type!r}")


@settings_section("compression")
@attrs.frozen
class CompressionSettings:
    """When a response body is compressed, and how hard."""

    min_size: int = setting(
        1024, "bodies smaller than this (bytes) are sent as they are", [v.instance_of(int), v.ge(0), v.le(2**30)]
    )
    gzip_level: int = setting(
        6, "gzip compression level (1 fastest - 9 smallest)", [v.instance_of(int), v.ge(1), v.le(9)]
    )
    brotli_quality: int = setting(
        4, "brotli quality (0 fastest - 11 smallest)", [v.instance_of(int), v.ge(0), v.le(11)]
    )
    encodings: tuple[str, ...] = setting(
        SUPPORTED,
        "codings offered, preferred first when the client accepts several equally (br, gzip)",
        _check_encodings,
    )
    excluded_types: tuple[str, ...] = setting(
        DEFAULT_EXCLUDED_TYPES,
        "media types never compressed (already compressed); type/* for a whole type",
        _check_types,
    )


# -- plain logic ------------------------------------------------------------------


def parse_accept_encoding(header: str) -> dict[str, float]:
    """``{coding: q}`` from an ``Accept-Encoding`` value; codings lower-cased, a malformed q counts as 0."""
    weights: dict[str, float] = {}
    for item in header.split(","):
        coding, *params = (part.strip() for part in item.split(";"))
        coding = _ALIASES.get(coding.lower(), coding.lower())
        if not coding or coding in weights:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                value = value.strip()
                q = float(value) if _QVALUE.fullmatch(value) else 0.0
        weights[coding] = q
    return weights


@functools.lru_cache(maxsize=512)
def choose_encoding(accept_encoding: str | None, offered: tuple[str, ...]) -> str | None:
    """The coding of ``offered`` to answer with, or None for the body as it is (identity).

    No header: identity (RFC 9110 allows any coding, but a client that says
    nothing may not decode one).  A coding is acceptable when its q (or the
    q of ``*``) is above 0; the highest q wins and ``offered``'s order breaks
    ties.  Identity, always acceptable, competes only when the client gives
    it a q (itself or through ``*``), and wins only when it is liked more.
    """
    if accept_encoding is None:
        return None
    weights = parse_accept_encoding(accept_encoding)
    star = weights.get("*")
    best, best_q = None, 0.0
    for coding in offered:
        q = weights.get(coding, star if star is not None else 0.0)
        if q > best_q:
            best, best_q = coding, q
    identity_q = weights.get("identity", star if star is not None else 0.0)
    return best if best is not None and best_q >= identity_q else None


def available_encodings(wanted: Sequence[str]) -> tuple[str, ...]:
    """``wanted`` without brotli when the ``brotli`` module is not installed."""
    return tuple(coding for coding in wanted if coding != BROTLI or brotli is not None)


def encode(body: bytes, coding: str, *, gzip_level: int = 6, brotli_quality: int = 4) -> bytes:
    """``body`` compressed with ``coding`` (``br`` or ``gzip``; gzip without a timestamp, so it is reproducible)."""
    if coding == GZIP:
        return gzip.compress(body, compresslevel=gzip_level, mtime=0)
    if coding == BROTLI:
        if brotli is None:
            raise RuntimeError("brotli is not installed: pip install brotli (or taskman[brotli])")
        return bytes(brotli.compress(body, quality=brotli_quality))
    raise ValueError(f"unsupported content coding {coding!r}")


class Compressor:
    """The settings, turned into the questions the middleware asks per response."""

    def __init__(self, settings: CompressionSettings) -> None:
        self.min_size = settings.min_size
        self.gzip_level = settings.gzip_level
        self.brotli_quality = settings.brotli_quality
        self.offered = available_encodings(settings.encodings)
        self._excluded = frozenset(t for t in settings.excluded_types if not t.endswith("/*"))
        self._excluded_kinds = frozenset(t[:-1] for t in settings.excluded_types if t.endswith("/*"))

    def compressible(self, content_type: str | None) -> bool:
        """Whether bodies of ``content_type`` (``application/json; charset=utf-8``) are worth compressing."""
        if not content_type:
            return False
        media_type = content_type.partition(";")[0].strip().lower()
        kind = media_type.partition("/")[0] + "/"
        return media_type not in self._excluded and kind not in self._excluded_kinds

    def negotiate(self, accept_encoding: str | None) -> str | None:
        """The coding to use for a client sending ``accept_encoding``, or None."""
        return choose_encoding(accept_encoding, self.offered) if self.offered else None

    def compress(self, body: bytes, coding: str) -> bytes | None:
        """``body`` compressed, or None when it is too small or would not get smaller."""
        if len(body) < self.min_size:
            return None
        compressed = encode(body, coding, gzip_level=self.gzip_level, brotli_quality=self.brotli_quality)
        return compressed if len(compressed) < len(body) else None


# -- Falcon glue --------------------------------------------------------------------

_NO_CONTENT = 204
_NOT_MODIFIED = 304


class CompressionMiddleware:
    """Compress the final body when the client accepts a coding; sync for WSGI, native async for ASGI.

    A responder opts out (a body carrying a secret next to reflected input,
    say) with ``resp.context.skip_compression = True``.
    """

    def __init__(self, compressor: Compressor) -> None:
        self.compressor = compressor

    def _coding_for(self, req: Any, resp: Any) -> str | None:
        """The coding to compress this response with; adds ``Vary`` whenever the answer depends on it."""
        status = resp.status_code
        if status < 200 or status == _NO_CONTENT or resp.get_header("Content-Encoding") is not None:
            return None
        if not self.compressor.compressible(resp.content_type or resp.options.default_media_type):
            return None
        if resp.stream is not None or getattr(resp, "sse", None) is not None:
            return None  # never compressed: a stream's chunks would have to be re-framed as they go
        # A 304 must carry the Vary its 200 would have (RFC 9110 section 15.4.5).
        resp.set_header("Vary", with_vary(resp.get_header("Vary"), "Accept-Encoding"))
        if (
            status == _NOT_MODIFIED
            or req.method == "HEAD"
            or resp.get_header("Content-Range") is not None
            or getattr(resp.context, "skip_compression", False)
        ):
            return None
        return self.compressor.negotiate(req.get_header("Accept-Encoding"))

    def _use(self, resp: Any, compressed: bytes | None, coding: str) -> None:
        if compressed is None:
            return
        resp.text = None
        resp.data = compressed  # Falcon sets Content-Length from it
        resp.set_header("Content-Encoding", coding)
        # The responder's ETag stays as it is, strong or weak: clients send it back in If-Match, which compares
        # strongly, and in If-None-Match, and the responder knows only its own tags (docs/compression.md, ETags).

    def process_response(self, req: Any, resp: Any, resource: Any, req_succeeded: bool) -> None:
        coding = self._coding_for(req, resp)
        if coding is None:
            return
        body = resp.render_body()
        if body:
            self._use(resp, self.compressor.compress(body, coding), coding)

    async def process_response_async(self, req: Any, resp: Any, resource: Any, req_succeeded: bool) -> None:
        coding = self._coding_for(req, resp)
        if coding is None:
            return
        body = await resp.render_body()
        if not body:
            return
        if len(body) > THREAD_THRESHOLD:
            compressed = await asyncio.to_thread(self.compressor.compress, body, coding)
        else:
            compressed = self.compressor.compress(body, coding)
        self._use(resp, compressed, coding)


def settings_of(config: Any) -> CompressionSettings:
    return config.settings(CompressionSettings)  # type: ignore[no-any-return]


@hookimpl
def taskman_settings() -> type:
    return CompressionSettings


@hookimpl
def taskman_middleware(config: Any) -> list[object]:
    # First of the shaping stage, so its process_response runs after the other shapers': the body it
    # compresses is final.
    return [staged(CompressionMiddleware(Compressor(settings_of(config))), "shape", before=("*",))]
