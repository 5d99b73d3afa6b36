"""create_app(node) -> Litestar. Routes stay thin; the node does the work."""

from __future__ import annotations

import hmac

from litestar import Litestar, Request
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, YamlRenderPlugin

from . import __version__, web
from .api import jobs, openai, system
from .api.cluster import REDIS_EXCEPTION_HANDLERS, cluster_guard
from .api.errors import EXCEPTION_HANDLERS, ApiError
from .api.guard import host_guard_middleware
from .api.limits import Slots
from .api.models import describe_other_bodies
from .api.reference import ReferencePagePlugin
from .node import Node

# The web page and its files are public (they hold no data); the API calls it makes are not.
OPEN_PATHS = ("/api/health", "/schema", "/", web.STATIC_PATH)
FORM_OVERHEAD = 64 * 1024  # multipart boundaries and small fields on top of the file


def schema_plugins() -> list:
    """/schema: a plain HTML reference rendered here (no script, nothing from another host: litestar's
    own viewers load theirs from public CDNs), the spec as JSON and as YAML."""
    return [ReferencePagePlugin(path="/"), JsonRenderPlugin(path="/openapi.json"),
            YamlRenderPlugin(path=["/openapi.yaml", "/openapi.yml"])]


def _auth_hook(keys: list[str]):
    encoded = [k.encode() for k in keys]

    async def check_api_key(request: Request) -> None:
        path = request.url.path
        if any(path == p or path.startswith(p + "/") for p in OPEN_PATHS):
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not any(hmac.compare_digest(token.strip().encode(), k) for k in encoded):
            raise ApiError(401, "missing or invalid API key (send Authorization: Bearer <key>)",
                           "invalid_api_key", type="invalid_request_error")

    return check_api_key


def create_app(node: Node, *, request_shutdown=lambda: None, lifespan=None) -> Litestar:
    settings = node.settings
    state = State({
        "node": node, "request_shutdown": request_shutdown,
        "upload_slots": Slots(settings.max_concurrent_uploads, "uploads at once", "too_many_uploads",
                              "SAYIT_MAX_CONCURRENT_UPLOADS"),
        "stream_slots": Slots(settings.max_event_streams, "event streams at once", "too_many_streams",
                              "SAYIT_MAX_EVENT_STREAMS"),
    })
    app = Litestar(
        route_handlers=[*openai.ROUTES, *jobs.ROUTES, *system.ROUTES, *web.ROUTES],
        state=state,
        middleware=[host_guard_middleware(settings)],
        before_request=_auth_hook(settings.api_keys) if settings.api_keys else None,
        exception_handlers={**EXCEPTION_HANDLERS, **REDIS_EXCEPTION_HANDLERS},
        guards=[cluster_guard],
        cors_config=CORSConfig(allow_origins=settings.allowed_origins) if settings.allowed_origins else None,
        request_max_body_size=settings.max_upload_bytes + FORM_OVERHEAD,
        openapi_config=OpenAPIConfig(title="SayIt node", version=__version__, path="/schema",
                                     render_plugins=schema_plugins()),
        lifespan=lifespan or [],
        logging_config=None,  # the node configures logging itself (stdout + rotating file)
        debug=False,
    )
    describe_other_bodies(app.openapi_schema)
    return app
