"""The OpenAPI 3.1 document of the admin API, generated from the same `Endpoint` list the
routes are built from, with JSON Schemas from the pydantic input and output models."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.routing import BaseRoute, Route

from .api import Endpoint
from .schemas import MAX_ID

_PARAM = re.compile(r"{(\w+)(?::(\w+))?}")
#: `/api/v1` routes that answer without credentials (DESIGN.md, "HTTP").
PUBLIC_PREFIXES = ("/api/v1/events/", "/api/v1/tls/")

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["status", "message"],
            "properties": {
                "status": {"type": "integer"},
                "message": {"type": "string"},
                "fields": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                    },
                },
            },
        }
    },
}
_ERRORS = {
    401: "Missing or invalid API key",
    403: "Needs an admin API key",
    404: "No such object, or another team's",
    409: "Conflicts with an existing object",
    422: "Invalid body; `error.fields` names each problem",
    413: "The body is too large",
}


def _error(status: int) -> dict[str, Any]:
    return {
        "description": _ERRORS[status],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def openapi_path(path: str) -> str:
    """`/x/{id:int}` in Starlette's syntax as OpenAPI's `/x/{id}`."""
    return _PARAM.sub(lambda m: "{" + m.group(1) + "}", path)


def _parameters(path: str) -> list[dict[str, Any]]:
    params = []
    for name, convertor in _PARAM.findall(path):
        schema: dict[str, Any] = (
            {"type": "integer", "minimum": 1, "maximum": MAX_ID}
            if convertor == "int"
            else {"type": "string", "minLength": 1, "maxLength": 200}
        )
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    return params


def other_operations(routes: Iterable[BaseRoute], known: set[str]) -> dict[str, dict[str, Any]]:
    """Minimal operations for `/api/v1` routes that other modules register as plain Starlette
    routes (event intake, alert-source events, TLS ask), so the document lists every route.

    Their bodies are not described (each module parses its own), only their paths, path
    parameters, a summary from the endpoint's docstring, and the answers every route gives.
    """
    paths: dict[str, dict[str, Any]] = {}
    for item in routes:
        if not isinstance(item, Route) or not item.path.startswith("/api/v1/"):
            continue
        path = openapi_path(item.path)
        if path in known or item.path == "/api/v1/openapi.json":
            continue
        doc = (inspect.getdoc(item.endpoint) or item.name or "").strip().splitlines()
        open_route = any(item.path.startswith(p) for p in PUBLIC_PREFIXES)
        for method in sorted((item.methods or set()) - {"HEAD"}):
            op: dict[str, Any] = {
                "operationId": f"{item.name}_{method.lower()}",
                "summary": doc[0] if doc else item.path,
                "tags": ["other"],
                "responses": {"default": {"description": "See the summary"}},
            }
            if open_route:
                op["security"] = []
            params = [
                {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "minLength": 1, "maxLength": 200},
                }
                for name in item.param_convertors
            ]
            if params:
                op["parameters"] = params
            paths.setdefault(path, {})[method.lower()] = op
    return paths


def document(
    endpoints: list[Endpoint],
    *,
    routes: Iterable[BaseRoute] = (),
    title: str = "Beacon admin API",
) -> dict[str, Any]:
    """The OpenAPI 3.1 document describing `endpoints`, and the other `/api/v1` `routes`."""
    wanted: list[tuple[type[BaseModel], Any]] = []
    for ep in endpoints:
        if ep.body is not None:
            wanted.append((ep.body, "validation"))
        if ep.response is not None:
            wanted.append((ep.response, "serialization"))
    refs, top = models_json_schema(
        list(dict.fromkeys(wanted)), ref_template="#/components/schemas/{model}"
    )
    schemas = dict(top.get("$defs", {}))
    schemas["Error"] = ERROR_SCHEMA

    paths: dict[str, dict[str, Any]] = {}
    for ep in endpoints:
        op: dict[str, Any] = {
            "operationId": ep.handler.__name__,
            "summary": ep.summary,
            "tags": [ep.tag],
            "responses": {},
        }
        params = _parameters(ep.path)
        if params or ep.query:
            op["parameters"] = params + [
                {"name": name, "in": "query", "description": text, "schema": {"type": "string"}}
                for name, text in ep.query
            ]
        if ep.raw_limit:
            op["requestBody"] = {
                "required": True,
                "content": {ep.consumes: {"schema": {"type": "string", "maxLength": ep.raw_limit}}},
            }
        elif ep.body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": refs[(ep.body, "validation")]}},
            }
        if ep.response is not None:
            schema = refs[(ep.response, "serialization")]
            if ep.many:
                schema = {"type": "array", "items": schema}
            op["responses"][str(ep.status)] = {
                "description": "OK",
                "content": {"application/json": {"schema": schema}},
            }
        elif ep.produces != "application/json":
            op["responses"][str(ep.status)] = {
                "description": "OK",
                "content": {ep.produces: {"schema": {"type": "string"}}},
            }
        else:
            op["responses"][str(ep.status)] = {"description": "Done"}
        codes = [401]
        if ep.admin:
            codes.append(403)
        if params or ep.body is not None:
            codes.append(404)
        if ep.body is not None or ep.method in ("POST", "PATCH", "PUT", "DELETE"):
            codes += [409, 422]
        if ep.raw_limit:
            codes.append(413)
        for code in codes:
            op["responses"][str(code)] = _error(code)
        paths.setdefault(openapi_path(ep.path), {})[ep.method.lower()] = op

    for path, ops in other_operations(routes, set(paths)).items():
        paths.setdefault(path, {}).update(ops)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": "1",
            "description": "Manage Beacon's objects. Authenticate with `Authorization: Bearer "
            "<API key>`: a team key acts for its team, an admin key also manages teams and users.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
