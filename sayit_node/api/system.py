"""Node-level routes: health, diagnose, queue status, metrics, nodes, shutdown."""

from __future__ import annotations

import ipaddress

from litestar import Request, Response, get, post
from litestar.datastructures import State

from .. import __version__
from .errors import ApiError
from .models import NODE_STATES, Diagnose, Health, NodeList, QueueStatus, Stopping, errors, to_model


@get("/api/health", summary="Liveness: 200 once the model is loaded; status 'degraded' (with the reason) "
                            "while the cluster's Redis is unreachable")
async def health(state: State) -> Health:
    node = state.node
    problem = node.cluster_problem
    return Health(status="degraded" if problem else "ok", node_id=node.node_id, name=node.name, version=__version__,
                  engine=node.engine.name, model=node.engine.model_name,
                  languages=list(node.engine.supported_languages), reason=problem)


@get("/api/diagnose", summary="Engine, model, device, versions, cores, memory, disk, limits",
     responses=errors(401))
async def diagnose(state: State) -> Diagnose:
    return to_model(await state.node.diagnose(), Diagnose)


@get("/api/queue-status", summary="Jobs and chunks queued, running and done", responses=errors(401, 503))
async def queue_status(state: State) -> QueueStatus:
    node = state.node
    counts = await node.store.counts()
    return QueueStatus(jobs=counts.jobs, chunks=counts.chunks, active_chunks=node.worker.active,
                       max_concurrent_chunks=node.settings.max_concurrent_chunks,
                       speed=round(node.speed.speed(), 2), chunks_done_here=node.speed.total_chunks)


@get("/api/nodes", summary="This node and its peers with their load", responses=errors(401))
async def nodes(state: State) -> NodeList:
    node = state.node
    listed = await node.nodes()
    for entry in listed:
        if entry.get("state") not in NODE_STATES:  # a peer of a later version with a state we do not know
            entry["state"] = "incompatible"
    return to_model({"nodes": listed, "warning": node.cluster_problem}, NodeList)


@get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def metrics(state: State) -> Response:
    await state.node.load()  # refresh the gauges
    return Response(state.node.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


def _is_loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host in ("localhost", "testclient")


SHUTDOWN_HEADER = "x-sayit-client"


def _not_cors_simple(request: Request) -> bool:
    """True for a request a web page can send cross-site only after a CORS preflight."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return (SHUTDOWN_HEADER in request.headers or "authorization" in request.headers
            or content_type == "application/json")


@post("/api/shutdown", status_code=202,
      summary="Stop this node gracefully (loopback, or with an API key; send X-SayIt-Client or a JSON body)",
      responses=errors(401, 403))
async def shutdown(request: Request, state: State) -> Stopping:
    # With API keys configured the auth hook already required one; without keys, only a
    # caller on this machine may stop the node.
    if not state.node.settings.api_keys and not _is_loopback(request):
        raise ApiError(403, "shutdown is only allowed from this machine or with an API key", "forbidden")
    # A page in the user's browser reaches loopback too; the host guard refuses foreign
    # origins, and a simple (preflight-free) request is refused here for browsers that send none.
    if not _not_cors_simple(request):
        raise ApiError(403, "send the header 'X-SayIt-Client' (any value) or a JSON body to shut the node down",
                       "forbidden")
    state.request_shutdown()
    return Stopping(status="stopping")


ROUTES = [health, diagnose, queue_status, nodes, metrics, shutdown]
