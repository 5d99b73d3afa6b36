"""When the cluster's Redis is gone: 503 `cluster_unavailable` at once, never a 500.

`cluster_guard` refuses the routes that need the job store (uploads, jobs, queue status) while
the node's link to Redis is down (see federation/link.py), so a user gets an answer in
milliseconds instead of after the store's ~15 s of reconnect attempts. A request already
inside the store when Redis goes away ends in `redis_error_handler`: the same 503, one log
line, no traceback. `/api/health`, `/api/nodes` and `/api/diagnose` keep answering 200 with
the degraded state instead.
"""

from __future__ import annotations

import logging

from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from redis.exceptions import AuthenticationError, BusyLoadingError, ConnectionError, TimeoutError

from ..federation.link import describe_redis_error
from .errors import ApiError, api_error_response

log = logging.getLogger(__name__)

STORE_PATHS = ("/api/transcribe", "/api/jobs", "/api/queue-status", "/v1/audio/")
RETRY_AFTER = "5"


def cluster_unavailable(message: str) -> ApiError:
    return ApiError(503, message, "cluster_unavailable", type="server_error", headers={"Retry-After": RETRY_AFTER})


def cluster_guard(connection: ASGIConnection, _handler: BaseRouteHandler) -> None:
    path = connection.url.path
    if not path.startswith(STORE_PATHS):
        return
    problem = connection.app.state.node.cluster_problem
    if problem:
        raise cluster_unavailable(problem)


def redis_error_handler(request: Request, exc: Exception) -> Response:
    node = request.app.state.node
    link = getattr(node, "link", None)
    address = link.address if link is not None else "(unknown)"
    reason = describe_redis_error(exc)
    log.warning("%s %s: the cluster's Redis at %s did not answer (%s); answered 503",
                request.method, request.url.path, address, reason)
    return api_error_response(cluster_unavailable(
        node.cluster_problem or f"the cluster's Redis at {address} is unavailable ({reason}); try again shortly"))


REDIS_EXCEPTION_HANDLERS = {
    ConnectionError: redis_error_handler,
    TimeoutError: redis_error_handler,
    BusyLoadingError: redis_error_handler,
    AuthenticationError: redis_error_handler,
}
