"""The compression plugin: Accept-Encoding negotiation, gzip and brotli bodies, Vary, ETags, and what is left alone."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import brotli as brotli_module
import falcon
import falcon.testing
import pytest
from taskman_plugins import compression
from taskman_plugins.compression import (
    THREAD_THRESHOLD,
    CompressionSettings,
    Compressor,
    available_encodings,
    choose_encoding,
    encode,
    parse_accept_encoding,
    with_vary,
)

from taskman import hookimpl
from taskman.config import Config, ConfigError
from taskman.errors import PROBLEM_CONTENT_TYPE

Client = Callable[..., falcon.testing.TestClient]

BOTH = ("br", "gzip")
#: Compressible and comfortably above the default 1024-byte threshold.
TEXT = b"".join(b"task %d: write the compression tests\n" % i for i in range(200))


def decode(body: bytes, coding: str | None) -> bytes:
    if coding == "gzip":
        return gzip.decompress(body)
    if coding == "br":
        return bytes(brotli_module.decompress(body))
    return body


# -- negotiation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "header,offered,expected",
    [
        (None, BOTH, None),  # a client that says nothing gets the body as it is
        ("", BOTH, None),
        ("gzip", BOTH, "gzip"),
        ("br", BOTH, "br"),
        ("gzip, deflate, br", BOTH, "br"),  # equal q: the server's preference
        ("gzip, br", ("gzip", "br"), "gzip"),
        ("br;q=0.5, gzip", BOTH, "gzip"),  # the higher q wins
        ("gzip;q=0.8, br;q=0.9", BOTH, "br"),
        ("gzip;q=0", BOTH, None),  # q=0: not acceptable
        ("gzip;q=0, br;q=0.000", BOTH, None),
        ("br;q=0, gzip", BOTH, "gzip"),
        ("*", BOTH, "br"),
        ("*;q=0", BOTH, None),
        ("*, br;q=0", BOTH, "gzip"),  # a named coding beats the wildcard
        ("identity", BOTH, None),
        ("gzip;q=0.5, identity", BOTH, None),  # identity preferred
        ("gzip;q=0.5, identity;q=0.5", BOTH, "gzip"),
        ("gzip, identity;q=0", BOTH, "gzip"),
        ("deflate, compress", BOTH, None),
        ("x-gzip", BOTH, "gzip"),
        ("GZIP;Q=1", BOTH, "gzip"),
        (" gzip ; q=0.7 ", BOTH, "gzip"),
        ("gzip;q=high", BOTH, None),  # a malformed q counts as 0
        ("gzip;q=1.5", BOTH, None),
        ("gzip;q=-1", BOTH, None),
        ("br, gzip", ("gzip",), "gzip"),
        ("br", ("gzip",), None),
        ("gzip", (), None),
    ],
)
def test_choose_encoding(header: str | None, offered: tuple[str, ...], expected: str | None) -> None:
    assert choose_encoding(header, offered) == expected


def test_parse_accept_encoding_keeps_the_first_entry_of_a_coding() -> None:
    assert parse_accept_encoding("gzip;q=0.2, br, gzip, x-gzip;q=0.9, ,*;q=0.1") == {"gzip": 0.2, "br": 1.0, "*": 0.1}


# -- encoding ----------------------------------------------------------------------


@pytest.mark.parametrize("coding", BOTH)
def test_encode_round_trips(coding: str) -> None:
    compressed = encode(TEXT, coding)
    assert len(compressed) < len(TEXT)
    assert decode(compressed, coding) == TEXT


def test_gzip_output_is_reproducible() -> None:
    assert encode(TEXT, "gzip") == encode(TEXT, "gzip")  # no timestamp in the header


def test_levels_are_used() -> None:
    # gzip's header says how hard it tried (RFC 1952 XFL: 2 slowest, 4 fastest).
    assert encode(TEXT, "gzip", gzip_level=9)[8] == 2
    assert encode(TEXT, "gzip", gzip_level=1)[8] == 4
    assert len(encode(TEXT, "br", brotli_quality=11)) < len(encode(TEXT, "br", brotli_quality=0))


def test_encode_refuses_unknown_codings() -> None:
    with pytest.raises(ValueError, match="deflate"):
        encode(TEXT, "deflate")


def test_without_brotli_only_gzip_is_offered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compression, "brotli", None)
    assert available_encodings(BOTH) == ("gzip",)
    assert Compressor(CompressionSettings()).offered == ("gzip",)
    with pytest.raises(RuntimeError, match="brotli is not installed"):
        encode(TEXT, "br")


@pytest.mark.parametrize(
    "existing,expected",
    [
        (None, "Accept-Encoding"),
        ("Origin", "Origin, Accept-Encoding"),
        ("Origin, accept-encoding", "Origin, accept-encoding"),
        ("*", "*"),
    ],
)
def test_with_vary(existing: str | None, expected: str) -> None:
    assert with_vary(existing, "Accept-Encoding") == expected


@pytest.mark.parametrize(
    "content_type,expected",
    [
        ("application/json", True),
        ("application/problem+json", True),
        ("text/html; charset=utf-8", True),
        ("TEXT/CSV", True),
        ("image/png", False),
        ("image/svg+xml", False),  # image/* covers it; list types one by one to compress SVG
        ("font/woff2", False),
        ("application/zip", False),
        ("application/gzip; foo=bar", False),
        (None, False),
        ("", False),
    ],
)
def test_compressible_media_types(content_type: str | None, expected: bool) -> None:
    assert Compressor(CompressionSettings()).compressible(content_type) is expected


def test_excluded_types_are_configurable() -> None:
    compressor = Compressor(CompressionSettings(excluded_types=("text/csv", "application/*")))
    assert not compressor.compressible("text/csv")
    assert not compressor.compressible("application/json")
    assert compressor.compressible("image/png")


def test_compressor_skips_small_and_incompressible_bodies() -> None:
    compressor = Compressor(CompressionSettings(min_size=100))
    assert compressor.compress(TEXT[:99], "gzip") is None
    assert compressor.compress(TEXT[:100], "gzip") is not None
    assert compressor.compress(os.urandom(4096), "gzip") is None  # it would only grow


@pytest.mark.parametrize(
    "key,value",
    [
        ("min_size", "-1"),
        ("gzip_level", "0"),
        ("gzip_level", "10"),
        ("brotli_quality", "12"),
        ("encodings", "deflate"),
        ("encodings", "gzip,gzip"),
        ("encodings", ""),
        ("excluded_types", "image"),
        ("excluded_types", "Image/PNG"),
    ],
)
def test_bad_settings_fail_with_the_key(make_config: Callable[..., Config], key: str, value: str) -> None:
    var = f"APP_COMPRESSION__{key.upper()}"
    with pytest.raises(ConfigError, match=f"compression.{key} \\(from env {var}\\)"):
        make_config(environ={var: value})


# -- over HTTP, both flavours ------------------------------------------------------------


class PayloadResource:
    """``GET /payload``: a body shaped by the query string, as a resource may answer."""

    def on_get(self, req: Any, resp: Any) -> None:
        size = req.get_param_as_int("size", default=len(TEXT))
        body = (TEXT * (size // len(TEXT) + 1))[:size]
        resp.content_type = req.get_param("type", default="text/plain")
        how = req.get_param("as", default="data")
        if how == "text":
            resp.text = body.decode()
        elif how == "media":
            resp.content_type = falcon.MEDIA_JSON
            resp.media = {"text": body.decode()}
        else:
            resp.data = body
        for name in ("ETag", "Vary", "Content-Encoding", "Content-Range"):
            value = req.get_param(name.lower())
            if value is not None:
                resp.set_header(name, value)
        if req.get_param_as_bool("skip"):
            resp.context.skip_compression = True

    on_head = on_get


class Chunks:
    """A body stream both flavours accept (WSGI iterates it, ASGI iterates it asynchronously)."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.chunks)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


class StreamResource:
    def on_get(self, req: Any, resp: Any) -> None:
        resp.content_type = "text/plain"
        resp.stream = Chunks(TEXT, TEXT)


class StatusResource:
    def on_get(self, req: Any, resp: Any, code: int) -> None:
        resp.status = code
        resp.set_header("ETag", '"v1"')


class ProblemResource:
    def on_get(self, req: Any, resp: Any) -> None:
        raise falcon.HTTPBadRequest(description="the filter is not valid: " + "x" * 2000)


class PayloadPlugin:
    taskman_plugin_name = "payload"

    @hookimpl
    def taskman_routes(self, config: Any) -> list[tuple[str, object]]:
        return [
            ("/payload", PayloadResource()),
            ("/stream", StreamResource()),
            ("/status/{code:int}", StatusResource()),
            ("/problem", ProblemResource()),
        ]


@pytest.fixture
def client(make_client: Client) -> falcon.testing.TestClient:
    return make_client(plugins=(PayloadPlugin(),))


def get(client: falcon.testing.TestClient, path: str = "/payload", accept: str | None = None, **params: Any) -> Any:
    headers = {} if accept is None else {"Accept-Encoding": accept}
    return client.simulate_get(path, params=params, headers=headers)


def vary(result: Any) -> list[str]:
    return [v.strip() for v in result.headers.get("Vary", "").split(",") if v.strip()]


@pytest.mark.parametrize("accept,coding", [("gzip", "gzip"), ("br", "br"), ("gzip, deflate, br", "br")])
def test_the_accepted_coding_is_used(client: falcon.testing.TestClient, accept: str, coding: str) -> None:
    result = get(client, accept=accept)
    assert result.status_code == 200
    assert result.headers["Content-Encoding"] == coding
    assert int(result.headers["Content-Length"]) == len(result.content) < len(TEXT)
    assert decode(result.content, coding) == TEXT
    assert result.headers["Content-Type"] == "text/plain"
    assert "Accept-Encoding" in vary(result)


@pytest.mark.parametrize("how", ["text", "media"])
def test_text_and_media_bodies_are_compressed_too(client: falcon.testing.TestClient, how: str) -> None:
    result = get(client, accept="gzip", **{"as": how})
    assert result.headers["Content-Encoding"] == "gzip"
    decoded = gzip.decompress(result.content)
    assert decoded == TEXT if how == "text" else json.loads(decoded) == {"text": TEXT.decode()}


@pytest.mark.parametrize("accept", [None, "identity", "gzip;q=0", "br;q=0, gzip;q=0", "*;q=0", "deflate"])
def test_without_an_acceptable_coding_the_body_is_left_alone(client: falcon.testing.TestClient, accept: str) -> None:
    result = get(client, accept=accept)
    assert "Content-Encoding" not in result.headers
    assert result.content == TEXT
    assert "Accept-Encoding" in vary(result)  # the answer still depends on the header


def test_bodies_below_the_threshold_are_left_alone(make_client: Client) -> None:
    client = make_client(plugins=(PayloadPlugin(),), environ={"APP_COMPRESSION__MIN_SIZE": "2000"})
    small, large = get(client, accept="gzip", size=1999), get(client, accept="gzip", size=2000)
    assert "Content-Encoding" not in small.headers and small.content == TEXT[:1999]
    assert "Accept-Encoding" in vary(small)
    assert large.headers["Content-Encoding"] == "gzip"


def test_the_default_threshold_is_1024_bytes(client: falcon.testing.TestClient) -> None:
    assert "Content-Encoding" not in get(client, accept="gzip", size=1023).headers
    assert get(client, accept="gzip", size=1024).headers["Content-Encoding"] == "gzip"


@pytest.mark.parametrize("media_type", ["image/png", "font/woff2", "application/zip"])
def test_already_compressed_media_types_are_left_alone(client: falcon.testing.TestClient, media_type: str) -> None:
    result = get(client, accept="gzip, br", type=media_type)
    assert "Content-Encoding" not in result.headers
    assert result.content == TEXT
    assert "Accept-Encoding" not in vary(result)  # no client ever gets another representation


def test_excluded_types_come_from_the_settings(make_client: Client) -> None:
    client = make_client(plugins=(PayloadPlugin(),), environ={"APP_COMPRESSION__EXCLUDED_TYPES": "text/plain"})
    assert "Content-Encoding" not in get(client, accept="gzip").headers
    assert get(client, accept="gzip", type="image/png").headers["Content-Encoding"] == "gzip"


def test_an_encoded_response_is_left_alone(client: falcon.testing.TestClient) -> None:
    result = get(client, accept="gzip", **{"content-encoding": "zstd"})
    assert result.headers["Content-Encoding"] == "zstd"
    assert result.content == TEXT


def test_vary_is_appended_to(client: falcon.testing.TestClient) -> None:
    result = get(client, accept="gzip", vary="Cookie")
    assert vary(result)[:2] == ["Cookie", "Accept-Encoding"]
    assert vary(result).count("Accept-Encoding") == 1


def test_etags_are_left_as_the_responder_set_them(client: falcon.testing.TestClient) -> None:
    compressed = get(client, accept="gzip", etag='"v7"')
    assert compressed.headers["Content-Encoding"] == "gzip" and compressed.headers["ETag"] == '"v7"'
    assert get(client, accept="gzip", etag='W/"v7"').headers["ETag"] == 'W/"v7"'
    assert get(client, accept="identity", etag='"v7"').headers["ETag"] == '"v7"'


def test_head_is_not_compressed(client: falcon.testing.TestClient) -> None:
    result = client.simulate_head("/payload", headers={"Accept-Encoding": "gzip"})
    assert result.status_code == 200
    assert "Content-Encoding" not in result.headers
    assert "Accept-Encoding" in vary(result)


def test_partial_content_is_not_compressed(client: falcon.testing.TestClient) -> None:
    result = get(client, accept="gzip", **{"content-range": f"bytes 0-{len(TEXT) - 1}/{len(TEXT)}"})
    assert "Content-Encoding" not in result.headers and result.content == TEXT


def test_a_responder_can_opt_out(client: falcon.testing.TestClient) -> None:
    result = get(client, accept="gzip", skip="true")
    assert "Content-Encoding" not in result.headers and result.content == TEXT


def test_streams_are_not_compressed(client: falcon.testing.TestClient) -> None:
    result = get(client, "/stream", accept="gzip")
    assert "Content-Encoding" not in result.headers
    assert result.content == TEXT + TEXT


def test_no_content_and_not_modified(client: falcon.testing.TestClient) -> None:
    no_content = get(client, "/status/204", accept="gzip")
    assert no_content.status_code == 204
    assert "Content-Encoding" not in no_content.headers and "Accept-Encoding" not in vary(no_content)
    not_modified = get(client, "/status/304", accept="gzip")
    assert not_modified.status_code == 304
    assert "Content-Encoding" not in not_modified.headers
    assert not_modified.headers["ETag"] == '"v1"'
    assert "Accept-Encoding" in vary(not_modified)  # the Vary its 200 would carry


def test_problem_documents_are_compressed(client: falcon.testing.TestClient) -> None:
    result = get(client, "/problem", accept="gzip")
    assert result.status_code == 400
    assert result.headers["Content-Type"] == PROBLEM_CONTENT_TYPE
    assert result.headers["Content-Encoding"] == "gzip"
    problem = json.loads(gzip.decompress(result.content))
    assert problem["status"] == 400 and problem["detail"].startswith("the filter is not valid")
    assert problem["request_id"] == result.headers["X-Request-ID"]


def test_small_problem_documents_are_left_alone(client: falcon.testing.TestClient) -> None:
    result = get(client, "/missing", accept="gzip")
    assert result.status_code == 404
    assert "Content-Encoding" not in result.headers
    assert result.json["status"] == 404


def test_large_bodies_are_compressed_off_the_event_loop_under_asgi(
    make_client: Client, asgi: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    offloaded: list[int] = []
    to_thread = asyncio.to_thread

    async def recording_to_thread(func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        if getattr(func, "__func__", None) is Compressor.compress:
            offloaded.append(len(args[0]))
        return await to_thread(func, *args, **kwargs)

    monkeypatch.setattr(compression.asyncio, "to_thread", recording_to_thread)
    client = make_client(plugins=(PayloadPlugin(),))
    size = THREAD_THRESHOLD * 3
    large = get(client, accept="br", size=size)
    assert large.headers["Content-Encoding"] == "br"
    assert decode(large.content, "br") == (TEXT * (size // len(TEXT) + 1))[:size]
    assert get(client, accept="br", size=THREAD_THRESHOLD).headers["Content-Encoding"] == "br"
    assert offloaded == ([size] if asgi else [])


def test_without_brotli_gzip_is_used(make_client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compression, "brotli", None)
    client = make_client(plugins=(PayloadPlugin(),))
    assert get(client, accept="br, gzip").headers["Content-Encoding"] == "gzip"
    only_br = get(client, accept="br")
    assert "Content-Encoding" not in only_br.headers and only_br.content == TEXT


def test_the_offered_codings_come_from_the_settings(make_client: Client) -> None:
    client = make_client(plugins=(PayloadPlugin(),), environ={"APP_COMPRESSION__ENCODINGS": "gzip"})
    assert get(client, accept="br, gzip").headers["Content-Encoding"] == "gzip"
    assert "Content-Encoding" not in get(client, accept="br").headers


def test_disabling_the_plugin_removes_compression(make_client: Client) -> None:
    client = make_client(plugins=(PayloadPlugin(),), environ={"APP_PLUGINS__DISABLE": "compression"})
    result = get(client, accept="gzip, br")
    assert "Content-Encoding" not in result.headers
    assert result.content == TEXT
    assert "Accept-Encoding" not in vary(result)
