"""Merge the plugins' OpenAPI fragments into one document; plain Python, no Falcon.

Each plugin returns a fragment (``paths``, ``components``, ``tags``) from
``taskman_openapi``.  :func:`build_document` merges them, refuses two
plugins documenting the same operation or defining one component name
differently (naming both), checks that every ``$ref`` resolves, and adds to
every operation the error responses the core can produce for it that it
does not declare itself (:func:`core_responses`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from .components import REF_PREFIX, RESPONSE_FOR_STATUS, problem_response, ref, shared_components

OPENAPI_VERSION = "3.1.1"

#: The operations of a path item, in the order OpenAPI lists them.
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
#: Path item fields that are not operations.
PATH_FIELDS = frozenset({"summary", "description", "servers", "parameters"})
FRAGMENT_KEYS = frozenset({"paths", "components", "tags"})
COMPONENT_SECTIONS = frozenset(
    {
        "schemas",
        "responses",
        "parameters",
        "examples",
        "requestBodies",
        "headers",
        "securitySchemes",
        "links",
        "callbacks",
        "pathItems",
    }
)
_COMPONENT_NAME = re.compile(r"[A-Za-z0-9._-]+")
_TEMPLATE_FIELD = re.compile(r"\{([^}:]*)(?::[^}]*)?\}")

#: Who owns the shared components, in conflict messages.
SHARED_OWNER = "openapi"


class OpenApiContributionError(ValueError):
    """A malformed or conflicting fragment; the message names the plugin(s)."""


def json_copy(value: Any) -> Any:
    """A deep copy of JSON-like data (mappings, lists, tuples, scalars): a fifth of :func:`copy.deepcopy`'s cost.

    Every app built composes its document from fragments it must not
    change (the amend hooks edit the copy): tests build thousands of apps.
    """
    if isinstance(value, Mapping):
        return {key: json_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_copy(item) for item in value]
    if isinstance(value, tuple):
        return tuple(json_copy(item) for item in value)
    return value


def openapi_path(uri_template: str) -> str:
    """A Falcon URI template as an OpenAPI path: ``/items/{id:int}`` -> ``/items/{id}``."""
    return _TEMPLATE_FIELD.sub(lambda m: "{" + m.group(1) + "}", uri_template)


def path_key(path: str) -> str:
    """What makes two paths the same route: ``/items/{id}`` and ``/items/{item_id}`` are."""
    return _TEMPLATE_FIELD.sub("{}", path.rstrip("/") or "/")


# -- core responses -------------------------------------------------------------


def _resolve(components: Mapping[str, Any], obj: Any) -> Any:
    """Follow local ``#/components/...`` references (cycles and misses give up with ``{}``)."""
    seen: set[str] = set()
    while isinstance(obj, Mapping) and isinstance(obj.get("$ref"), str):
        target = obj["$ref"]
        if target in seen or not target.startswith(REF_PREFIX):
            return {}
        seen.add(target)
        section, _, name = target[len(REF_PREFIX) :].partition("/")
        obj = components.get(section, {}).get(name, {})
    return obj


def core_responses(
    path: str, operation: Mapping[str, Any], path_parameters: Sequence[Any], components: Mapping[str, Any]
) -> list[int]:
    """The statuses the core and Falcon can answer ``operation`` with, whatever the plugin does.

    * 500: any responder can fail unexpectedly (the error handler of :mod:`taskman.errors`);
    * 503: the database is unavailable (pool exhausted, unreachable, timing out);
    * 404: a templated path whose field does not convert (``{id:int}`` given ``abc``);
    * 400 and 415: a request body that does not parse, or of a media type Falcon has no handler for;
    * 400: a query, header or cookie parameter that does not parse (``req.get_param_as_int``...).

    Not 405: OpenAPI describes the methods a path has, and every other
    method of a documented path answers 405 (problem+json, with ``Allow``).
    Not 413 or 422: Falcon does not limit bodies and the core validates
    nothing; a plugin that does declares them (``ContentTooLarge``,
    ``UnprocessableContent``).
    """
    statuses = [500, 503]
    if "{" in path:
        statuses.append(404)
    if "requestBody" in operation:
        statuses += [400, 415]
    parameters = [*path_parameters, *operation.get("parameters", ())]
    if any(_resolve(components, p).get("in") in ("query", "header", "cookie") for p in parameters):
        statuses.append(400)
    return sorted(set(statuses))


def operations(document: Mapping[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """``(path, method, operation)`` of every operation in ``document``."""
    for path, item in document.get("paths", {}).items():
        for method in METHODS:
            operation = item.get(method)
            if operation is not None:
                yield path, method, operation


def add_response(operation: dict[str, Any], status: int, response: str) -> None:
    """Document ``status`` as the shared ``response`` unless the operation declares it (or its ``4XX``/``5XX``)."""
    responses = operation.setdefault("responses", {})
    declared = {str(code).upper() for code in responses}
    if str(status) not in declared and f"{str(status)[0]}XX" not in declared:
        responses[str(status)] = ref("responses", response)


class OpenApiDocument(dict[str, Any]):
    """The merged document handed to ``taskman_openapi_amend``: the document itself, with helpers.

    Plugins amend other plugins' operations through these methods and never
    import this plugin's modules.
    """

    def operations(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """``(path, method, operation)`` of every operation."""
        return operations(self)

    def add_response(self, operation: dict[str, Any], status: int, response: str) -> None:
        """Document ``status`` as the shared response ``response`` (a name under ``components/responses``)."""
        add_response(operation, status, response)

    def add_problem_response(self, name: str, description: str) -> None:
        """Define the shared response ``name``: a problem+json body described by ``description``."""
        self.component("responses")[name] = problem_response(description)

    def component(self, section: str) -> dict[str, Any]:
        """The ``components`` section ``section`` (``schemas``, ``securitySchemes``...), created if absent."""
        components: dict[str, Any] = self.setdefault("components", {})
        found: dict[str, Any] = components.setdefault(section, {})
        return found

    @staticmethod
    def path_key(path: str) -> str:
        """What makes two paths (or a path and a Falcon URI template) the same route."""
        return path_key(path)


def add_core_responses(paths: Mapping[str, Any], components: Mapping[str, Any]) -> None:
    """Add the shared response of each core status an operation does not declare (exactly or as ``4XX``/``5XX``)."""
    for path, item in paths.items():
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            declared = {str(code).upper() for code in responses}
            for status in core_responses(path, operation, item.get("parameters", ()), components):
                if str(status) not in declared and f"{str(status)[0]}XX" not in declared:
                    responses[str(status)] = ref("responses", RESPONSE_FOR_STATUS[status])


# -- merging ------------------------------------------------------------------------


def _references(obj: Any) -> Iterator[str]:
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _references(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from _references(value)


def _pointer_resolves(document: Mapping[str, Any], pointer: str) -> bool:
    node: Any = document
    for raw in pointer.lstrip("#").split("/")[1:]:
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return False
    return True


class _Merger:
    def __init__(self) -> None:
        self.paths: dict[str, dict[str, Any]] = {}
        self.components: dict[str, dict[str, Any]] = {}
        self.tags: dict[str, dict[str, Any]] = {}
        self._path_spelling: dict[str, tuple[str, str]] = {}  # path key -> (path, first plugin)
        self._owners: dict[tuple[str, ...], str] = {}
        self._operation_ids: dict[str, tuple[str, str]] = {}  # operationId -> (plugin, "GET /path")

    def _claim(self, key: tuple[str, ...], plugin: str, value: Any, existing: Any, what: str) -> bool:
        """Record ``plugin`` as the owner of ``key``; False if an equal value is already there."""
        owner = self._owners.get(key)
        if owner is None:
            self._owners[key] = plugin
            return True
        if existing != value:
            raise OpenApiContributionError(f"{what} is defined differently by plugin {owner!r} and plugin {plugin!r}")
        return False

    def add(self, plugin: str, fragment: Any) -> None:
        if fragment is None:
            return
        if not isinstance(fragment, Mapping):
            raise OpenApiContributionError(
                f"plugin {plugin!r} returned {type(fragment).__name__}; expected a mapping with paths, components, tags"
            )
        unknown = sorted(set(fragment) - FRAGMENT_KEYS)
        if unknown:
            raise OpenApiContributionError(
                f"plugin {plugin!r} returned unknown key(s) {', '.join(map(repr, unknown))}; "
                f"a fragment has {', '.join(sorted(FRAGMENT_KEYS))}"
            )
        fragment = json_copy(dict(fragment))
        self._add_components(plugin, fragment.get("components") or {})
        self._add_paths(plugin, fragment.get("paths") or {})
        self._add_tags(plugin, fragment.get("tags") or [])

    def _add_components(self, plugin: str, components: Any) -> None:
        if not isinstance(components, Mapping):
            raise OpenApiContributionError(f"plugin {plugin!r}: components must be a mapping")
        for section, entries in components.items():
            if section not in COMPONENT_SECTIONS or not isinstance(entries, Mapping):
                raise OpenApiContributionError(
                    f"plugin {plugin!r}: components.{section} is not a mapping of one of "
                    f"{', '.join(sorted(COMPONENT_SECTIONS))}"
                )
            merged = self.components.setdefault(section, {})
            for name, value in entries.items():
                if not isinstance(name, str) or not _COMPONENT_NAME.fullmatch(name):
                    raise OpenApiContributionError(
                        f"plugin {plugin!r}: component name {name!r} must match {_COMPONENT_NAME.pattern}"
                    )
                what = f"components.{section}.{name}"
                if self._claim(("component", section, name), plugin, value, merged.get(name), what):
                    merged[name] = value

    def _add_paths(self, plugin: str, paths: Any) -> None:
        if not isinstance(paths, Mapping):
            raise OpenApiContributionError(f"plugin {plugin!r}: paths must be a mapping")
        for path, item in paths.items():
            if not isinstance(path, str) or not path.startswith("/"):
                raise OpenApiContributionError(f"plugin {plugin!r}: path {path!r} must start with '/'")
            if not isinstance(item, Mapping):
                raise OpenApiContributionError(f"plugin {plugin!r}: paths[{path!r}] must be a mapping")
            unknown = sorted(set(item) - PATH_FIELDS - set(METHODS))
            if unknown:
                raise OpenApiContributionError(
                    f"plugin {plugin!r}: paths[{path!r}] has unknown field(s) {', '.join(map(repr, unknown))}"
                )
            key = path_key(path)
            spelling, first = self._path_spelling.setdefault(key, (path, plugin))
            if spelling != path:
                raise OpenApiContributionError(
                    f"path {path} of plugin {plugin!r} is the same route as {spelling} of plugin {first!r}; "
                    "spell it the same way"
                )
            merged = self.paths.setdefault(path, {})
            for field in PATH_FIELDS & set(item):
                what = f"{field} of path {path}"
                if self._claim(("path", path, field), plugin, item[field], merged.get(field), what):
                    merged[field] = item[field]
            for method in METHODS:
                if method in item:
                    self._add_operation(plugin, path, method, item[method], merged)

    def _add_operation(self, plugin: str, path: str, method: str, operation: Any, merged: dict[str, Any]) -> None:
        label = f"{method.upper()} {path}"
        if not isinstance(operation, Mapping):
            raise OpenApiContributionError(f"plugin {plugin!r}: {label} must be a mapping")
        owner = self._owners.get(("operation", path, method))
        if owner is not None:
            raise OpenApiContributionError(f"{label} is documented by plugin {owner!r} and plugin {plugin!r}")
        operation_id = operation.get("operationId")
        if operation_id is not None:
            other = self._operation_ids.get(operation_id)
            if other is not None:
                raise OpenApiContributionError(
                    f"operationId {operation_id!r} is used by plugin {other[0]!r} ({other[1]}) "
                    f"and plugin {plugin!r} ({label})"
                )
            self._operation_ids[operation_id] = (plugin, label)
        self._owners[("operation", path, method)] = plugin
        merged[method] = operation

    def _add_tags(self, plugin: str, tags: Any) -> None:
        if isinstance(tags, (str, bytes)) or not isinstance(tags, Iterable):
            raise OpenApiContributionError(f"plugin {plugin!r}: tags must be a list")
        for tag in tags:
            if not isinstance(tag, Mapping) or not isinstance(tag.get("name"), str):
                raise OpenApiContributionError(f"plugin {plugin!r}: tag {tag!r} has no name")
            name = tag["name"]
            if self._claim(("tag", name), plugin, tag, self.tags.get(name), f"tag {name!r}"):
                self.tags[name] = dict(tag)

    def check_references(self, plugin: str, fragment: Any, document: Mapping[str, Any]) -> None:
        for target in _references(fragment):
            if not target.startswith("#/"):
                raise OpenApiContributionError(
                    f"plugin {plugin!r} uses $ref {target!r}: only references inside the document (#/...) resolve"
                )
            if not _pointer_resolves(document, target):
                raise OpenApiContributionError(f"plugin {plugin!r} uses $ref {target!r}, which no plugin defines")


def build_document(
    contributions: Iterable[tuple[str, Any]],
    *,
    title: str,
    version: str,
    description: str = "",
    servers: Sequence[str] = (),
) -> dict[str, Any]:
    """The merged OpenAPI 3.1 document of ``(plugin, fragment)`` pairs, with the shared components."""
    pairs = [(SHARED_OWNER, {"components": shared_components()}), *contributions]
    merger = _Merger()
    for plugin, fragment in pairs:
        merger.add(plugin, fragment)
    info: dict[str, Any] = {"title": title, "version": version}
    if description:
        info["description"] = description
    document: dict[str, Any] = {"openapi": OPENAPI_VERSION, "info": info}
    if servers:
        document["servers"] = [{"url": url} for url in servers]
    document["paths"] = {path: merger.paths[path] for path in sorted(merger.paths)}
    document["components"] = {
        section: {name: entries[name] for name in sorted(entries)}
        for section, entries in sorted(merger.components.items())
    }
    if merger.tags:
        document["tags"] = list(merger.tags.values())
    for plugin, fragment in pairs:
        merger.check_references(plugin, fragment, document)
    add_core_responses(document["paths"], document["components"])
    return document


def documented_operations(document: Mapping[str, Any]) -> dict[str, set[str]]:
    """``{path key: {"GET", ...}}`` of every operation in ``document``."""
    found: dict[str, set[str]] = {}
    for path, item in document.get("paths", {}).items():
        found.setdefault(path_key(path), set()).update(m.upper() for m in METHODS if m in item)
    return found


def undocumented(document: Mapping[str, Any], routes: Mapping[str, Iterable[str]]) -> list[str]:
    """``"METHOD /template"`` of each routed method (``{uri_template: methods}``) the document lacks."""
    documented = documented_operations(document)
    return sorted(
        f"{method.upper()} {template}"
        for template, methods in routes.items()
        for method in methods
        if method.upper() not in documented.get(path_key(template), set())
    )
