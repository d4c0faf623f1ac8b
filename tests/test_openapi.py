"""The openapi plugin: the merged document, the ``taskman_openapi`` hook, /api/docs and its assets.

HTTP tests run on WSGI and ASGI (``make_client`` / ``asgi``).  The document
is checked three ways: by ``openapi-spec-validator``, against the app's own
router (every route and method of every enabled plugin must be documented),
and by schemathesis, in-process on both flavours and against real
``taskman serve`` processes.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import falcon
import falcon.inspect
import falcon.testing
import hypothesis
import hypothesis.errors
import pytest
import requests
import schemathesis
from openapi_spec_validator import OpenAPIV31SpecValidator
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from taskman_plugins.openapi.assets import ASSETS
from taskman_plugins.openapi.document import (
    OpenApiContributionError,
    build_document,
    core_responses,
    openapi_path,
    undocumented,
)
from taskman_plugins.openapi.resources import etag_matches, routed_methods

import taskman
from taskman import hookimpl
from taskman.errors import PROBLEM_CONTENT_TYPE, ValidationProblem
from taskman.plugins import PluginError
from tests.servers import ServerLauncher

Client = Callable[..., falcon.testing.TestClient]

DOCUMENT = "/api/openapi.json"
DOCS = "/api/docs"
OWN_PATHS = {DOCUMENT, DOCS, "/api/docs/assets/{name}"}
HEALTH_PATHS = {"/health", "/health/live", "/health/ready", "/health/startup"}
SHARED_RESPONSES = {
    "BadRequest": 400,
    "Unauthorized": 401,
    "Forbidden": 403,
    "NotFound": 404,
    "Conflict": 409,
    "PreconditionFailed": 412,
    "ContentTooLarge": 413,
    "UnsupportedMediaType": 415,
    "UnprocessableContent": 422,
    "TooManyRequests": 429,
    "InternalServerError": 500,
    "ServiceUnavailable": 503,
}

#: Routed methods the document may leave out, each with its reason.  Nothing is: every
#: responder of every enabled plugin is documented.  (Falcon's own OPTIONS and 405
#: responders are not routed methods: ``routed_methods`` leaves them out.)
NOT_DOCUMENTED: dict[str, str] = {}


# -- a documented plugin, as a plugin author writes one ------------------------------


class NotesResource:
    def __init__(self) -> None:
        self.notes: dict[int, str] = {}

    def on_post(self, req: Any, resp: Any) -> None:
        body = req.get_media()
        if not isinstance(body, dict):
            raise ValidationProblem([{"pointer": "", "detail": "must be an object"}])
        errors = [{"pointer": f"/{key}", "detail": "unknown member"} for key in body if key != "title"]
        title = body.get("title")
        if not isinstance(title, str) or not 1 <= len(title) <= 200:
            errors.append({"pointer": "/title", "detail": "must be a string of 1 to 200 characters"})
        if errors:
            raise ValidationProblem(errors)
        note_id = len(self.notes) + 1
        self.notes[note_id] = title
        resp.status = falcon.HTTP_201
        resp.media = {"id": note_id, "title": title}

    def on_get_item(self, req: Any, resp: Any, note_id: int) -> None:
        if note_id not in self.notes:
            raise falcon.HTTPNotFound()
        resp.media = {"id": note_id, "title": self.notes[note_id]}


NOTE = {
    "type": "object",
    "required": ["id", "title"],
    "properties": {"id": {"type": "integer"}, "title": {"type": "string"}},
    "additionalProperties": False,
}
NOTE_INPUT = {
    "type": "object",
    "required": ["title"],
    "properties": {"title": {"type": "string", "minLength": 1, "maxLength": 200}},
    "additionalProperties": False,
}


def notes_fragment() -> dict[str, Any]:
    note = {"application/json": {"schema": {"$ref": "#/components/schemas/Note"}}}
    return {
        "paths": {
            "/notes": {
                "post": {
                    "operationId": "notes_create",
                    "tags": ["notes"],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NoteInput"}}},
                    },
                    "responses": {
                        "201": {"description": "Created.", "content": note},
                        "422": {"$ref": "#/components/responses/UnprocessableContent"},
                    },
                }
            },
            "/notes/{note_id}": {
                "get": {
                    "operationId": "notes_get",
                    "tags": ["notes"],
                    "parameters": [{"name": "note_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                    "responses": {"200": {"description": "The note.", "content": note}},
                }
            },
        },
        "components": {"schemas": {"Note": NOTE, "NoteInput": NOTE_INPUT}},
        "tags": [{"name": "notes", "description": "Notes."}],
    }


class NotesPlugin:
    """A route and its fragment, both from one plugin."""

    taskman_plugin_name = "notes"

    @hookimpl
    def taskman_routes(self, config: Any) -> list[Any]:
        resource = NotesResource()
        return [("/notes", resource), ("/notes/{note_id:int}", resource, {"suffix": "item"})]

    @hookimpl
    def taskman_openapi(self, config: Any) -> dict[str, Any]:
        return notes_fragment()


class FragmentPlugin:
    """Contributes an OpenAPI fragment only (for conflicts and malformed fragments)."""

    def __init__(self, name: str, fragment: Any) -> None:
        self.taskman_plugin_name = name
        self.fragment = fragment

    @hookimpl
    def taskman_openapi(self, config: Any) -> Any:
        return self.fragment


class SecretResource:
    def on_get(self, req: Any, resp: Any, key: str) -> None:
        resp.media = {"key": key}

    def on_post(self, req: Any, resp: Any, key: str) -> None:
        resp.status = falcon.HTTP_204


class UndocumentedPlugin:
    taskman_plugin_name = "undocumented"

    @hookimpl
    def taskman_routes(self, config: Any) -> list[tuple[str, object]]:
        return [("/secret/{key}", SecretResource())]


def operation(summary: str = "An operation.") -> dict[str, Any]:
    return {"summary": summary, "responses": {"200": {"description": "OK."}}}


# -- helpers ----------------------------------------------------------------------


def fetch_document(client: falcon.testing.TestClient) -> dict[str, Any]:
    result = client.simulate_get(DOCUMENT)
    assert result.status_code == 200, result.text
    assert result.headers["content-type"] == "application/json"
    return result.json  # type: ignore[no-any-return]


def validate_openapi(document: dict[str, Any]) -> None:
    errors = [e.message for e in OpenAPIV31SpecValidator(document).iter_errors()]
    assert not errors, errors


def app_routes(app: Any) -> dict[str, set[str]]:
    """``{OpenAPI path: {METHOD}}`` of every route, read from Falcon's router (not from the plugin).

    The HEAD the core adds wherever GET is goes undocumented, as GET covers it.
    """
    routes = {}
    for route in falcon.inspect.inspect_app(app).routes:
        methods = {m.method for m in route.methods if not m.internal}
        routes[openapi_path(route.path)] = methods - {"HEAD"} if "GET" in methods else methods
    return routes


def documented(document: dict[str, Any]) -> dict[str, set[str]]:
    methods = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
    return {path: {m.upper() for m in methods if m in item} for path, item in document["paths"].items()}


def plugin_error(make_client: Client, *plugins: object) -> str:
    with pytest.raises(PluginError) as caught:
        make_client(plugins=plugins)
    return str(caught.value)


# -- the document -------------------------------------------------------------------


def test_the_document_is_valid_openapi_3_1(client: falcon.testing.TestClient) -> None:
    document = fetch_document(client)
    assert document["openapi"].startswith("3.1.")
    validate_openapi(document)
    assert document["info"] == {"title": "taskman", "version": taskman.__version__}
    assert "servers" not in document  # the host that served it


def test_the_document_covers_the_builtin_plugins(client: falcon.testing.TestClient) -> None:
    document = fetch_document(client)
    # Other installed plugins (the tracker...) add theirs.
    assert set(document["paths"]) >= OWN_PATHS | HEALTH_PATHS | {"/metrics"}
    assert document["paths"]["/health"]["get"]["deprecated"] is True
    scrape = document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert set(scrape) == {"text/plain", "application/openmetrics-text"}
    assert {t["name"] for t in document["tags"]} >= {"health", "metrics", "openapi"}


def test_every_route_of_every_enabled_plugin_is_documented(make_client: Client) -> None:
    """The meta-test: a plugin that adds a route (or a method) without documenting it fails here."""
    client = make_client(plugins=(NotesPlugin(),))
    routes = app_routes(client.app)
    document = fetch_document(client)
    assert "/notes/{note_id}" in routes and "/metrics" in routes
    missing = {
        f"{method} {path}"
        for path, methods in routes.items()
        for method in methods
        if method not in documented(document).get(path, set())
    }
    assert missing <= set(NOT_DOCUMENTED), f"routes without documentation: {sorted(missing - set(NOT_DOCUMENTED))}"
    # ...and the document promises no route the app does not have.
    extra = {f"{m} {p}" for p, methods in documented(document).items() for m in methods if m not in routes.get(p, ())}
    assert not extra


def test_an_undocumented_route_is_reported(make_client: Client, caplog: pytest.LogCaptureFixture) -> None:
    client = make_client(plugins=(UndocumentedPlugin(),))
    document = fetch_document(client)
    assert "/secret/{key}" not in document["paths"]
    missing = ["GET /secret/{key}", "POST /secret/{key}"]
    assert undocumented(document, routed_methods(client.app)) == missing
    assert set(app_routes(client.app)["/secret/{key}"]) == {"GET", "POST"}  # what the meta-test above would catch
    warnings = [r for r in caplog.records if r.getMessage() == "openapi_undocumented_routes"]
    assert warnings and warnings[0].routes == missing  # type: ignore[attr-defined]


def test_every_operation_has_a_summary_and_declared_lower_case_tags(client: falcon.testing.TestClient) -> None:
    """A generated client groups operations by tag and names them by summary: none may go without."""
    document = fetch_document(client)
    declared = {tag["name"]: tag for tag in document["tags"]}
    assert all(re.fullmatch(r"[a-z][a-z-]*", name) for name in declared), sorted(declared)
    assert all(tag.get("description") for tag in declared.values()), "every tag says what it groups"
    methods = ("get", "put", "post", "delete", "patch")
    operations = [(m.upper(), p, item[m]) for p, item in document["paths"].items() for m in methods if m in item]
    assert len(operations) > 40
    assert [f"{m} {p}" for m, p, op in operations if not op.get("summary")] == []
    assert [f"{m} {p}" for m, p, op in operations if not op.get("tags")] == []
    assert {tag for _, _, op in operations for tag in op["tags"]} == set(declared), "each tag used, and declared"


def test_no_response_body_is_an_untyped_object(client: falcon.testing.TestClient) -> None:
    """Reports (metrics, velocity, burndown, progress) included: a client gets a typed object for every answer."""
    document = fetch_document(client)
    schemas = document["components"]["schemas"]
    untyped = [
        name
        for name, schema in schemas.items()
        if schema.get("type") == "object" and not schema.get("properties") and "allOf" not in schema
    ]
    assert untyped == []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for status, response in operation["responses"].items():
                for media in response.get("content", {}).values():
                    schema = media.get("schema", {})
                    assert "$ref" in schema or schema.get("properties") or schema.get("type") != "object", (
                        f"{method.upper()} {path} {status}"
                    )


#: The plugins that add responses to every operation (taskman_openapi_amend; tested in their own files).
WITHOUT_AMENDMENTS = {"APP_PLUGINS__DISABLE": "auth,ratelimit,limits"}


def test_a_plugin_fragment_is_merged_with_the_shared_components(make_client: Client) -> None:
    client = make_client(plugins=(NotesPlugin(),), environ=WITHOUT_AMENDMENTS)
    document = fetch_document(client)
    validate_openapi(document)
    assert {"Note", "NoteInput", "Problem", "ValidationProblem"} <= set(document["components"]["schemas"])
    create = document["paths"]["/notes"]["post"]["responses"]
    assert set(create) == {"201", "400", "415", "422", "500", "503"}
    assert create["422"] == {"$ref": "#/components/responses/UnprocessableContent"}
    get = document["paths"]["/notes/{note_id}"]["get"]["responses"]
    assert set(get) == {"200", "404", "500", "503"}
    assert get["404"] == {"$ref": "#/components/responses/NotFound"}


def test_the_shared_components_are_there_for_every_plugin(make_client: Client) -> None:
    components = fetch_document(make_client(environ=WITHOUT_AMENDMENTS))["components"]
    assert set(components["responses"]) == set(SHARED_RESPONSES)
    for name, status in SHARED_RESPONSES.items():
        response = components["responses"][name]
        schema = "ValidationProblem" if status == 422 else "Problem"
        assert response["content"] == {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": f"#/components/schemas/{schema}"}}}
    problem = components["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail", "instance", "request_id"}
    assert problem["additionalProperties"] is True
    errors = components["schemas"]["ValidationProblem"]["allOf"][1]["properties"]["errors"]
    assert errors["items"]["required"] == ["pointer", "detail"]


def test_real_error_responses_match_the_shared_components(make_client: Client) -> None:
    """A 404, a 415, a 400 and a 422 as the core renders them, validated by the document's own schemas."""
    client = make_client(plugins=(NotesPlugin(),))
    schema = schemathesis.openapi.from_dict(fetch_document(client))
    create = schema["/notes"]["POST"]
    answers = {
        422: client.simulate_post("/notes", json={"title": ""}),
        415: client.simulate_post("/notes", body=b"<a/>", headers={"Content-Type": "application/xml"}),
        400: client.simulate_post("/notes", body=b"{", headers={"Content-Type": "application/json"}),
    }
    for status, result in answers.items():
        assert result.status_code == status, result.text
        create.validate_response(_as_requests_response(result, "POST", "/notes"))
    missing = client.simulate_get("/notes/7")
    assert missing.status_code == 404
    schema["/notes/{note_id}"]["GET"].validate_response(_as_requests_response(missing, "GET", "/notes/7"))


def _as_requests_response(result: falcon.testing.Result, method: str, path: str) -> schemathesis.Response:
    return schemathesis.Response(
        status_code=result.status_code,
        headers={name: [value] for name, value in result.headers.items()},
        content=result.content,
        request=requests.Request(method, f"http://testserver{path}").prepare(),
        elapsed=0.0,
        verify=True,
        message=result.status,
        http_version="1.1",
        encoding="utf-8",
    )


def test_settings_fill_info_and_servers(make_client: Client) -> None:
    client = make_client(
        environ={
            "APP_OPENAPI__TITLE": "Tasks API",
            "APP_OPENAPI__VERSION": "2.0.0",
            "APP_OPENAPI__DESCRIPTION": "Tasks.",
            "APP_OPENAPI__SERVERS": "https://tasks.example/,/",
        }
    )
    document = fetch_document(client)
    assert document["info"] == {"title": "Tasks API", "version": "2.0.0", "description": "Tasks."}
    assert document["servers"] == [{"url": "https://tasks.example/"}, {"url": "/"}]
    validate_openapi(document)


def test_the_document_is_cached_by_etag(client: falcon.testing.TestClient) -> None:
    first = client.simulate_get(DOCUMENT)
    assert first.headers["cache-control"] == "no-cache"
    again = client.simulate_get(DOCUMENT, headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and not again.content
    assert etag_matches('W/"x", "y"', '"x"') and etag_matches("*", '"x"') and not etag_matches('"y"', '"x"')


# -- conflicts and malformed fragments -------------------------------------------------


def test_two_plugins_documenting_one_operation_is_a_startup_error_naming_both(make_client: Client) -> None:
    message = plugin_error(
        make_client,
        FragmentPlugin("alpha", {"paths": {"/things": {"get": operation("a")}}}),
        FragmentPlugin("beta", {"paths": {"/things": {"get": operation("a")}}}),
    )
    assert "GET /things is documented by plugin 'alpha' and plugin 'beta'" in message


def test_one_component_defined_differently_is_an_error_naming_both(make_client: Client) -> None:
    message = plugin_error(
        make_client,
        FragmentPlugin("alpha", {"components": {"schemas": {"Thing": {"type": "object"}}}}),
        FragmentPlugin("beta", {"components": {"schemas": {"Thing": {"type": "string"}}}}),
    )
    assert "components.schemas.Thing is defined differently by plugin 'alpha' and plugin 'beta'" in message


def test_redefining_a_shared_component_is_an_error_naming_the_openapi_plugin(make_client: Client) -> None:
    message = plugin_error(make_client, FragmentPlugin("rogue", {"components": {"schemas": {"Problem": {}}}}))
    assert "components.schemas.Problem is defined differently by plugin 'openapi' and plugin 'rogue'" in message


def test_the_same_component_defined_identically_twice_is_fine(make_client: Client) -> None:
    shared = {"components": {"schemas": {"Thing": {"type": "object"}}}}
    client = make_client(plugins=(FragmentPlugin("alpha", shared), FragmentPlugin("beta", copy.deepcopy(shared))))
    assert fetch_document(client)["components"]["schemas"]["Thing"] == {"type": "object"}


@pytest.mark.parametrize(
    "first,second,expected",
    [
        (
            {"paths": {"/t/{a}": {"get": operation()}}},
            {"paths": {"/t/{b}": {"put": operation()}}},
            "path /t/{b} of plugin 'beta' is the same route as /t/{a} of plugin 'alpha'",
        ),
        (
            {"paths": {"/a": {"get": {**operation(), "operationId": "op"}}}},
            {"paths": {"/b": {"get": {**operation(), "operationId": "op"}}}},
            "operationId 'op' is used by plugin 'alpha' (GET /a) and plugin 'beta' (GET /b)",
        ),
        (
            {"tags": [{"name": "t", "description": "one"}]},
            {"tags": [{"name": "t", "description": "two"}]},
            "tag 't' is defined differently by plugin 'alpha' and plugin 'beta'",
        ),
    ],
    ids=["same-template", "operation-id", "tag"],
)
def test_other_conflicts_name_both_plugins(first: Any, second: Any, expected: str) -> None:
    with pytest.raises(OpenApiContributionError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        build_document([("alpha", first), ("beta", second)], title="t", version="1")


@pytest.mark.parametrize(
    "fragment,expected",
    [
        (["/x"], "plugin 'odd' returned list"),
        ({"path": {}}, "plugin 'odd' returned unknown key(s) 'path'"),
        ({"paths": {"x": {}}}, "path 'x' must start with '/'"),
        ({"paths": {"/x": {"fetch": {}}}}, "paths['/x'] has unknown field(s) 'fetch'"),
        ({"components": {"schema": {}}}, "components.schema is not a mapping of one of"),
        ({"components": {"schemas": {"a b": {}}}}, "component name 'a b' must match"),
        (
            {"paths": {"/x": {"get": {"responses": {"200": {"$ref": "#/components/responses/Nope"}}}}}},
            "plugin 'odd' uses $ref '#/components/responses/Nope', which no plugin defines",
        ),
        (
            {"components": {"schemas": {"X": {"$ref": "https://example.com/x.json"}}}},
            "only references inside the document",
        ),
    ],
)
def test_a_malformed_fragment_is_an_error_naming_its_plugin(fragment: Any, expected: str) -> None:
    with pytest.raises(OpenApiContributionError) as caught:
        build_document([("odd", fragment)], title="t", version="1")
    assert expected in str(caught.value)


def test_a_failing_hook_is_attributed_to_its_plugin(make_client: Client) -> None:
    class Failing:
        taskman_plugin_name = "failing"

        @hookimpl
        def taskman_openapi(self, config: Any) -> Any:
            raise RuntimeError("no docs today")

    message = plugin_error(make_client, Failing())
    assert "plugin 'failing'" in message and "taskman_openapi" in message and "no docs today" in message


# -- core responses (plain Python) ------------------------------------------------------


@pytest.mark.parametrize(
    "path,operation,expected",
    [
        ("/things", {}, [500, 503]),
        ("/things/{id}", {}, [404, 500, 503]),
        ("/things", {"requestBody": {}}, [400, 415, 500, 503]),
        ("/things", {"parameters": [{"name": "q", "in": "query"}]}, [400, 500, 503]),
        ("/things", {"parameters": [{"$ref": "#/components/parameters/Q"}]}, [400, 500, 503]),
    ],
)
def test_core_responses(path: str, operation: dict[str, Any], expected: list[int]) -> None:
    components = {"parameters": {"Q": {"name": "q", "in": "header"}}}
    assert core_responses(path, operation, [], components) == expected


def test_declared_responses_are_kept() -> None:
    own_404 = {"description": "No such thing.", "content": {"application/problem+json": {}}}
    fragment = {
        "paths": {
            "/t/{id}": {"get": {"responses": {"200": {"description": "OK."}, "404": own_404}}},
            "/u": {"get": {"responses": {"5XX": {"description": "Trouble."}}}},
        }
    }
    document = build_document([("p", fragment)], title="t", version="1")
    assert document["paths"]["/t/{id}"]["get"]["responses"]["404"] == own_404
    assert set(document["paths"]["/u"]["get"]["responses"]) == {"5XX"}


# -- disabling and settings ---------------------------------------------------------------


def test_disabling_the_plugin_removes_its_routes_and_nothing_else(make_client: Client) -> None:
    client = make_client(environ={"APP_PLUGINS__DISABLE": "openapi"}, plugins=(NotesPlugin(),))
    for path in (DOCUMENT, DOCS, "/api/docs/assets/init.js"):
        assert client.simulate_get(path).status_code == 404
    assert client.simulate_get("/health/ready").status_code == 200
    assert client.simulate_get("/metrics").status_code == 200
    assert client.simulate_post("/notes", json={"title": "still here"}).status_code == 201
    assert "openapi" not in client.app.taskman.config.sections


def test_docs_can_be_switched_off(make_client: Client) -> None:
    client = make_client(environ={"APP_OPENAPI__DOCS": "false"})
    assert client.simulate_get(DOCS).status_code == 404
    assert client.simulate_get("/api/docs/assets/init.js").status_code == 404
    document = fetch_document(client)
    assert DOCUMENT in document["paths"]
    assert not {DOCS, "/api/docs/assets/{name}"} & set(document["paths"])


# -- /api/docs ----------------------------------------------------------------------------------


class _References(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


EXTENSION_TYPES = {".css": "text/css", ".js": "text/javascript", ".png": "image/png"}


def test_the_docs_page_uses_only_the_apps_own_assets(client: falcon.testing.TestClient) -> None:
    page = client.simulate_get(DOCS)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "http://" not in page.text and "https://" not in page.text and "//" not in page.text.replace("<!--", "")
    parser = _References()
    parser.feed(page.text)
    assert len(parser.urls) >= 4
    for url in parser.urls:
        absolute = urlsplit(urljoin(f"http://testserver{DOCS}", url))
        assert absolute.netloc == "testserver" and absolute.path.startswith("/api/docs/assets/"), url
        asset = client.simulate_get(absolute.path)
        assert asset.status_code == 200, absolute.path
        expected = EXTENSION_TYPES[Path(absolute.path).suffix]
        assert asset.headers["content-type"].split(";")[0] == expected
        assert asset.headers["cache-control"] == "public, max-age=86400"
        assert asset.headers["x-content-type-options"] == "nosniff"
        assert asset.content
    init = client.simulate_get("/api/docs/assets/init.js").text
    assert 'url: "openapi.json"' in init and "validatorUrl: null" in init  # no call to validator.swagger.io


def test_only_whitelisted_assets_are_served(client: falcon.testing.TestClient) -> None:
    for name in ("index.html", "swagger-editor.js", "..%2F..%2Fsetup.cfg", "LICENSE"):
        result = client.simulate_get(f"/api/docs/assets/{name}")
        assert result.status_code == 404
        assert result.headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert set(ASSETS) == {
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "favicon-32x32.png",
        "favicon-16x16.png",
        "init.js",
    }
    first = client.simulate_get("/api/docs/assets/swagger-ui.css")
    again = client.simulate_get("/api/docs/assets/swagger-ui.css", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304


def test_the_document_is_built_with_the_app(make_config: Callable[..., Any]) -> None:
    """``taskman check`` builds the app: a broken document fails it before any request."""
    runtime = taskman.create_app(make_config()).taskman
    (resource,) = [r.resource for r in runtime.routes if r.uri_template == DOCUMENT]
    body, etag = resource.document(runtime)
    validate_openapi(json.loads(body))
    assert etag.startswith('"')


# -- schemathesis: in-process on both flavours ----------------------------------------------

#: What schemathesis checks: no 5xx, and every status, content type, header and body as documented;
#: invalid input (negative mode) must be refused with a 4xx.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


def run_schemathesis(schema: Any, max_examples: int) -> list[str]:
    """Test every operation with positive and negative data; return the failures, one line each."""
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
            @hypothesis.settings(
                max_examples=max_examples,
                deadline=None,
                derandomize=True,
                database=None,
                phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],  # no shrinking: report as found
                suppress_health_check=list(hypothesis.HealthCheck),
            )
            def call(case: Any) -> None:
                # The in-process transports offer gzip (requests' default header) but never decode it.
                case.call_and_validate(checks=CHECKS, headers={"Accept-Encoding": "identity"})

            try:
                call()
            except hypothesis.errors.Unsatisfiable:
                continue  # nothing to negate: no parameters, no body
            except (Exception, BaseExceptionGroup) as exc:  # schemathesis's FailureGroup is a BaseExceptionGroup
                summary = "\n    ".join(line for line in str(exc).splitlines()[:12] if line.strip())
                failures.append(f"{operation.label} ({mode.value}): {summary or type(exc).__name__}")
    return failures


def test_schemathesis_in_process(make_client: Client, asgi: bool) -> None:
    """Every operation of every enabled plugin (plus a documented sample plugin), on this flavour."""
    client = make_client(plugins=(NotesPlugin(),))
    load = schemathesis.openapi.from_asgi if asgi else schemathesis.openapi.from_wsgi
    schema = load(DOCUMENT, client.app)
    try:
        failures = run_schemathesis(schema, max_examples=15)
    finally:
        if asgi:
            # Otherwise schemathesis keeps the app's lifespan (and the app) for the whole session.
            from schemathesis.python.asgi import shutdown_lifespans

            shutdown_lifespans()
    assert not failures, "\n".join(failures)


# -- schemathesis: real servers ---------------------------------------------------------------


def schemathesis_command() -> list[str]:
    script = Path(sys.executable).parent / "schemathesis"
    return [str(script)] if script.exists() else [sys.executable, "-m", "schemathesis.cli"]


@pytest.mark.servers
@pytest.mark.parametrize("flavour", ["wsgi", "asgi"])
def test_schemathesis_against_a_live_server(
    server_launcher: ServerLauncher, database_url: str, tmp_path: Path, flavour: str
) -> None:
    server = server_launcher.start(
        [f"--{flavour}"], pythonpath=[], env={"APP_ENVIRONMENT": "testing", "APP_DATABASE__URL": database_url}
    )
    server.wait_for_http("/health/ready", 200)
    checks = ",".join(check.__name__ for check in CHECKS)
    command = [
        *schemathesis_command(),
        "run",
        f"http://127.0.0.1:{server.port}{DOCUMENT}",
        f"--checks={checks}",
        "--max-examples=25",
        "--seed=1",
        # One worker: schemathesis parses schemas with `ast` in each worker thread, and concurrent parsing
        # hits a CPython race ("AST constructor recursion depth mismatch") that fails the run at random.
        "--workers=1",
        "--request-timeout=10",
        "--report=junit",
        f"--report-dir={tmp_path / 'schemathesis'}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\nserver log:\n{server.log}"
    assert "Operations:" in result.stdout and "passed" in result.stdout
