"""`/schema`: the API reference as one plain HTML page, rendered on the node from its OpenAPI.

litestar's viewers (Swagger UI, Redoc, Elements, RapiDoc, Scalar) load their scripts and a favicon
from public CDNs, so a browser opening them would fetch third-party code from the node's origin,
and they fail offline; no Python package we ship vendors their assets. This page has no script,
no external link and no inline style attribute: every route with its parameters and answers, and
every body schema, escaped. The spec itself is at `/schema/openapi.json` and `/schema/openapi.yaml`.
"""

from __future__ import annotations

from html import escape
from typing import Any

from litestar import Request
from litestar.openapi.plugins import OpenAPIRenderPlugin

METHODS = ("get", "post", "put", "patch", "delete")
STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
h2 { border-bottom: 1px solid #ccc; margin-top: 2.5rem; }
h3 { font-family: ui-monospace, monospace; font-size: 1rem; margin: 1.8rem 0 .3rem; }
code, td.t { font-family: ui-monospace, monospace; font-size: .9em; }
table { border-collapse: collapse; margin: .4rem 0; }
td, th { border: 1px solid #ddd; padding: .2rem .5rem; text-align: left; vertical-align: top; }
.m { display: inline-block; min-width: 4rem; font-weight: bold; }
"""


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _type(schema: dict[str, Any] | None) -> str:
    """A short type label: `string`, `JobView` (linked), `array of WordOut`, `string | null`."""
    if not schema:
        return ""
    if "$ref" in schema:
        name = escape(_ref_name(schema["$ref"]))
        return f'<a href="#schema-{name}">{name}</a>'
    for key in ("oneOf", "anyOf"):
        if key in schema:
            return " | ".join(_type(s) for s in schema[key])
    kind = schema.get("type", "")
    if isinstance(kind, list):
        kind = " | ".join(kind)
    if kind == "array":
        return f"array of {_type(schema.get('items'))}"
    label = escape(str(kind or "any"))
    if schema.get("format"):
        label += f" ({escape(str(schema['format']))})"
    if "enum" in schema:
        label += ": " + ", ".join(f"<code>{escape(str(v))}</code>" for v in schema["enum"])
    return label


def _operation(path: str, method: str, op: dict[str, Any]) -> list[str]:
    out = [f'<h3 id="{escape(op.get("operationId", method + path))}"><span class="m">{method.upper()}</span> '
           f"{escape(path)}</h3>"]
    for key in ("summary", "description"):
        if op.get(key):
            out.append(f"<p>{escape(op[key])}</p>")
    params = op.get("parameters") or []
    if params:
        out.append("<table><tr><th>parameter</th><th>in</th><th>type</th><th>required</th></tr>")
        for p in params:
            default = (p.get("schema") or {}).get("default")
            extra = f" (default <code>{escape(str(default))}</code>)" if default is not None else ""
            out.append(f"<tr><td class=t>{escape(p['name'])}</td><td>{escape(p.get('in', ''))}</td>"
                       f"<td>{_type(p.get('schema'))}{extra}</td><td>{'yes' if p.get('required') else 'no'}</td></tr>")
        out.append("</table>")
    body = op.get("requestBody")
    if body:
        kinds = ", ".join(f"<code>{escape(k)}</code>" for k in body.get("content", {}))
        out.append(f"<p>Body: {kinds}</p>")
        if body.get("description"):
            out.append(f"<p>{escape(body['description'])}</p>")
        for content in body.get("content", {}).values():
            schema = content.get("schema") or {}
            if "properties" in schema:  # inline (a multipart form); a $ref is under Bodies
                out += _fields(schema)
    out.append("<table><tr><th>status</th><th>answer</th><th>body</th></tr>")
    for status, response in (op.get("responses") or {}).items():
        bodies = "<br>".join(f"<code>{escape(kind)}</code> {_type(c.get('schema'))}"
                             for kind, c in (response.get("content") or {}).items())
        out.append(f"<tr><td>{escape(str(status))}</td><td>{escape(response.get('description', ''))}</td>"
                   f"<td>{bodies}</td></tr>")
    out.append("</table>")
    return out


def _bounds(spec: dict[str, Any]) -> str:
    """Default, length and range of a field, as the about column's tail."""
    inner = spec.get("items") or spec
    notes = []
    if "default" in spec:
        default = spec["default"]
        notes.append(f"default <code>{escape(str(default).lower() if isinstance(default, bool) else str(default))}</code>")
    if "maxLength" in inner:
        notes.append(f"at most {inner['maxLength']} characters")
    if "minimum" in inner or "maximum" in inner:
        notes.append(f"from {inner.get('minimum', '')} to {inner.get('maximum', '')}")
    if spec.get("type") == "array":
        notes.append("may be repeated")
    return f" ({'; '.join(notes)})" if notes else ""


def _fields(schema: dict[str, Any]) -> list[str]:
    """A table of an inline object's fields (a request form)."""
    required = set(schema.get("required") or [])
    either = [name for alt in schema.get("anyOf") or [] for name in alt.get("required") or []]
    out = ["<table><tr><th>field</th><th>type</th><th>required</th><th>about</th></tr>"]
    for field, spec in schema["properties"].items():
        needed = "yes" if field in required else (
            "one of " + ", ".join(escape(n) for n in either) if field in either else "no")
        out.append(f"<tr><td class=t>{escape(field)}</td><td>{_type(spec)}</td><td>{needed}</td>"
                   f"<td>{escape(spec.get('description', ''))}{_bounds(spec)}</td></tr>")
    out.append("</table>")
    return out


def _schema(name: str, schema: dict[str, Any]) -> list[str]:
    out = [f'<h3 id="schema-{escape(name)}">{escape(name)}</h3>']
    if schema.get("description"):
        out.append(f"<p>{escape(schema['description'])}</p>")
    props = schema.get("properties") or {}
    if not props:
        out.append(f"<p>{_type(schema)}</p>")
        return out
    required = set(schema.get("required") or [])
    out.append("<table><tr><th>field</th><th>type</th><th>required</th><th>about</th></tr>")
    for field, spec in props.items():
        out.append(f"<tr><td class=t>{escape(field)}</td><td>{_type(spec)}</td>"
                   f"<td>{'yes' if field in required else 'no'}</td><td>{escape(spec.get('description', ''))}</td></tr>")
    out.append("</table>")
    return out


def render_reference(spec: dict[str, Any]) -> str:
    info = spec.get("info", {})
    title = escape(f"{info.get('title', 'API')} {info.get('version', '')}".strip())
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{title} — API reference</title>",
        '<link rel="icon" href="/static/icon.svg" type="image/svg+xml">',
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{title} — API reference</h1>",
        "<p>The OpenAPI document: <a href=\"/schema/openapi.json\">openapi.json</a> · "
        "<a href=\"/schema/openapi.yaml\">openapi.yaml</a>. Errors are OpenAI-shaped: "
        "<code>{\"error\": {\"message\", \"type\", \"param\", \"code\"}}</code>.</p>",
        "<h2>Routes</h2>",
    ]
    for path, item in (spec.get("paths") or {}).items():
        for method in METHODS:
            if method in item:
                parts += _operation(path, method, item[method])
    schemas = (spec.get("components") or {}).get("schemas") or {}
    if schemas:
        parts.append("<h2>Bodies</h2>")
        for name in sorted(schemas):
            parts += _schema(name, schemas[name])
    parts.append("</body></html>")
    return "\n".join(parts)


class ReferencePagePlugin(OpenAPIRenderPlugin):
    """Serves `render_reference` (cached: the spec is fixed once the app is built)."""

    def __init__(self, path: str | list[str] = "/") -> None:
        super().__init__(path=path)
        self._page: bytes | None = None

    def render(self, request: Request, openapi_schema: dict[str, Any]) -> bytes:
        if self._page is None:
            self._page = render_reference(openapi_schema).encode()
        return self._page
