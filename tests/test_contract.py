"""The typed contract (OpenAPI describes every response body) and honest answers, on a real node."""

from __future__ import annotations

import jsonschema
import pytest

from sayit_node.api.cluster import STORE_PATHS

from tests.conftest import NodeProcess, wait_job


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    node = NodeProcess(tmp_path_factory.mktemp("contract-node")).start()
    yield node
    node.stop()


@pytest.fixture(scope="module")
def spec(node):
    with node.client() as client:
        response = client.get("/schema/openapi.json")
    assert response.status_code == 200
    return response.json()


def _schema(spec: dict, path: str, method: str, status: int) -> dict:
    """The JSON schema of one response body, $refs resolvable against the whole document."""
    content = spec["paths"][path][method]["responses"][str(status)]["content"]
    return {**content["application/json"]["schema"], "components": spec["components"]}


def _check(spec: dict, path: str, method: str, status: int, body) -> None:
    jsonschema.validate(body, _schema(spec, path, method, status))


MAIN_ROUTES = [
    ("/api/health", "get", 200, {"status", "nodeId", "engine", "model"}),
    ("/api/jobs", "get", 200, {"jobs"}),
    ("/api/jobs/{job_id}", "get", 200, {"jobId", "status", "progress", "partialText", "etaSeconds"}),
    ("/api/jobs/{job_id}", "delete", 200, {"jobId", "status"}),
    ("/api/transcribe", "post", 202, {"jobId", "statusUrl", "eventsUrl", "totalChunks"}),
    ("/api/nodes", "get", 200, {"nodes"}),
    ("/api/queue-status", "get", 200, {"jobs", "chunks", "activeChunks"}),
    ("/api/diagnose", "get", 200, {"engine", "model", "limits"}),
    ("/v1/models", "get", 200, {"object", "data"}),
]


@pytest.mark.parametrize(("path", "method", "status", "fields"), MAIN_ROUTES)
def test_openapi_describes_response_bodies(spec, path, method, status, fields):
    schema = _schema(spec, path, method, status)
    ref = schema["$ref"].rsplit("/", 1)[-1]
    component = spec["components"]["schemas"][ref]
    assert fields <= set(component["properties"]), component["properties"].keys()
    assert fields & set(component["required"])


def test_openapi_job_status_is_an_enum_and_errors_are_described(spec):
    job_view = spec["components"]["schemas"]["JobView"]["properties"]["status"]
    status = spec["components"]["schemas"][job_view["$ref"].rsplit("/", 1)[-1]] if "$ref" in job_view else job_view
    assert set(status["enum"]) == {"queued", "running", "completed", "failed", "cancelled"}
    node_state = spec["components"]["schemas"]["NodeInfo"]["properties"]["state"]
    assert set(node_state["enum"]) == {"starting", "up", "degraded", "stopping", "stopped", "down", "incompatible"}
    health_status = spec["components"]["schemas"]["Health"]["properties"]["status"]
    assert set(health_status["enum"]) == {"ok", "degraded"}, health_status
    for path, method in [("/v1/audio/transcriptions", "post"), ("/api/transcribe", "post")]:
        responses = spec["paths"][path][method]["responses"]
        assert {"200", "400", "413"} <= set(responses)
        error = _schema(spec, path, method, 400)
        assert error["$ref"].endswith("/ErrorBody")
        transcript = spec["components"]["schemas"][_schema(spec, path, method, 200)["$ref"].rsplit("/", 1)[-1]]
        assert transcript["required"] == ["text"] and "segments" in transcript["properties"]


def test_real_responses_match_the_schema(node, spec, short_speech):
    path, _ = short_speech
    with node.client() as client:
        accepted = client.post("/api/transcribe", files={"audio": path.open("rb")}, data={"async": "true"})
        assert accepted.status_code == 202
        _check(spec, "/api/transcribe", "post", 202, accepted.json())
        job_id = accepted.json()["jobId"]
        _check(spec, "/api/jobs/{job_id}", "get", 200, client.get(f"/api/jobs/{job_id}").json())
        wait_job(client, job_id)
        _check(spec, "/api/jobs/{job_id}", "get", 200, client.get(f"/api/jobs/{job_id}").json())
        verbose = client.get(f"/api/jobs/{job_id}/result", params={"format": "verbose_json"}).json()
        _check(spec, "/api/jobs/{job_id}/result", "get", 200, verbose)
        for route in ("/api/health", "/api/jobs", "/api/nodes", "/api/queue-status", "/api/diagnose", "/v1/models"):
            _check(spec, route, "get", 200, client.get(route).json())
        missing = client.get("/api/jobs/job_nope")
        assert missing.status_code == 404
        _check(spec, "/api/jobs/{job_id}", "get", 404, missing.json())
        _check(spec, "/api/jobs/{job_id}", "delete", 200, client.delete(f"/api/jobs/{job_id}").json())


# --- honest answers -----------------------------------------------------------------------------

def test_translation_with_an_english_only_model_is_refused(node, short_speech):
    path, _ = short_speech
    with node.client() as client:
        jobs_before = len(client.get("/api/jobs").json()["jobs"])
        response = client.post("/v1/audio/translations", files={"file": path.open("rb")}, data={"model": "whisper-1"})
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "unsupported_task" and error["param"] == "model"
        assert "English-only" in error["message"] and "cannot translate" in error["message"]
        assert len(client.get("/api/jobs").json()["jobs"]) == jobs_before  # refused before any work


@pytest.mark.parametrize("route", ["/v1/audio/transcriptions", "/api/transcribe"])
def test_unknown_language_says_so(node, short_speech, route):
    path, _ = short_speech
    field = "file" if route.startswith("/v1") else "audio"
    with node.client() as client:
        response = client.post(route, files={field: path.open("rb")}, data={"language": "xx"})
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "unknown_language" and error["param"] == "language"
        assert "unknown language 'xx'" in error["message"]
        # A real language the English-only model cannot do is a different, also clear, answer.
        response = client.post(route, files={field: path.open("rb")}, data={"language": "de"})
        assert response.status_code == 400 and response.json()["error"]["code"] == "unsupported_language"


# --- every route: walk the whole OpenAPI document ------------------------------------------------

# Everything the node serves; the web page, its static files and /metrics are not API.
SCHEMA_ROUTES = {
    ("/v1/audio/transcriptions", "post"), ("/v1/audio/translations", "post"), ("/v1/models", "get"),
    ("/api/transcribe", "post"), ("/api/jobs", "get"), ("/api/jobs/{job_id}", "get"),
    ("/api/jobs/{job_id}", "delete"), ("/api/jobs/{job_id}/result", "get"), ("/api/jobs/{job_id}/events", "get"),
    ("/api/health", "get"), ("/api/diagnose", "get"), ("/api/queue-status", "get"), ("/api/nodes", "get"),
    ("/api/shutdown", "post"),
}
ERROR_MODELS = {"ErrorBody", "AudioTooLongBody", "BusyBody"}


def _resolve(spec: dict, schema: dict) -> dict:
    while "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/components/schemas/"), ref
        schema = spec["components"]["schemas"][ref.rsplit("/", 1)[-1]]  # KeyError: a dangling $ref
    return schema


def _refs(node) -> list[str]:
    if isinstance(node, dict):
        return ([node["$ref"]] if "$ref" in node else []) + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_openapi_every_route_describes_every_response_body(spec):
    operations = {(path, method): op for path, ops in spec["paths"].items()
                  for method, op in ops.items() if method in ("get", "post", "put", "patch", "delete")}
    assert set(operations) == SCHEMA_ROUTES
    for ref in _refs(spec):  # no dangling reference anywhere
        _resolve(spec, {"$ref": ref})
    for (path, method), op in operations.items():
        where = f"{method.upper()} {path}"
        responses = op["responses"]
        assert any(s.startswith("2") for s in responses), where
        for status, response in responses.items():
            content = response.get("content")
            assert content, f"{where} {status}: no body described"
            for media_type, body in content.items():
                schema = _resolve(spec, body["schema"])
                assert schema.get("type") or schema.get("enum") or schema.get("properties"), \
                    f"{where} {status} {media_type}: an empty schema"
                if status.startswith(("4", "5")):
                    assert body["schema"]["$ref"].rsplit("/", 1)[-1] in ERROR_MODELS, f"{where} {status}"
                    assert "error" in schema["required"]
        if method in ("post", "delete") and path != "/api/shutdown":  # the Origin guard may refuse it
            assert "403" in responses, where
        if path.startswith(STORE_PATHS):  # refused with 503 cluster_unavailable while Redis is gone
            assert "503" in responses, where
    # A stream says so, and what its events carry.
    events = operations[("/api/jobs/{job_id}/events", "get")]["responses"]["200"]["content"]
    assert list(events) == ["text/event-stream"]
    assert events["text/event-stream"]["schema"]["$ref"].endswith("/JobView")
    # Transcripts also come as text, SRT and VTT; /v1 streams with stream=true.
    for path, method in [("/api/jobs/{job_id}/result", "get"), ("/api/transcribe", "post"),
                         ("/v1/audio/transcriptions", "post"), ("/v1/audio/translations", "post")]:
        content = operations[(path, method)]["responses"]["200"]["content"]
        expected = {"application/json", "text/plain", "application/x-subrip", "text/vtt"}
        assert set(content) == expected | ({"text/event-stream"} if path.startswith("/v1") else set()), path
    for path in ("/v1/audio/transcriptions", "/api/transcribe", "/api/jobs/{job_id}/events"):
        method = "get" if path.endswith("events") else "post"
        assert "429" in operations[(path, method)]["responses"], path



# --- one client ----------------------------------------------------------------------------------

# Who may speak HTTP to a node by hand, and why; everything else goes through sayit_node.client.
HTTP_ALLOWED = {
    "sayit_node/client.py": "the one client (CLI, tray, tests of the client)",
    "sayit_node/federation/discovery.py": "the node's async liveness probe of peers, inside its event loop",
    "sayit_node/healthcheck.py": "the container HEALTHCHECK: stdlib only, starts in milliseconds",
}
HTTP_MODULES = {"httpx", "requests", "urllib.request", "http.client", "aiohttp", "urllib3"}


def test_one_http_client_for_the_cli_and_the_tray():
    import ast

    from tests.conftest import ROOT

    offenders = []
    for package in ("sayit_node", "sayit_desktop"):
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if relative in HTTP_ALLOWED:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                offenders += [f"{relative}:{node.lineno} imports {n}" for n in names
                              if n in HTTP_MODULES or n.split(".")[0] in HTTP_MODULES]
    assert offenders == []


_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", list: "array", dict: "object",
               type(None): "null"}


def _json_types(hint) -> set[str]:
    import typing

    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if args and origin not in (list, dict):  # a union
        return set().union(*(_json_types(a) for a in args))
    return {_JSON_TYPES.get(origin or hint, "any")}


def _schema_types(spec: dict, prop: dict) -> set[str]:
    if "$ref" in prop:
        prop = _resolve(spec, prop)
    if "oneOf" in prop or "anyOf" in prop:
        return set().union(*(_schema_types(spec, p) for p in prop.get("oneOf", prop.get("anyOf"))))
    if "enum" in prop or "const" in prop:
        return {"string"}
    kind = prop.get("type", "any")
    return set(kind) if isinstance(kind, list) else {kind}


@pytest.mark.parametrize(("typed", "component"), [("Health", "Health"), ("Job", "JobView"),
                                                  ("Submitted", "JobAccepted"), ("NodeInfo", "NodeInfo")])
def test_the_client_names_fields_as_the_schema_does(spec, typed, component):
    """sayit_node.client's TypedDicts (what the CLI and tray read) agree with the node's OpenAPI:
    every field exists under that name, with a compatible JSON type (the nodeId/node_id kind of slip)."""
    import typing

    from sayit_node import client

    properties = spec["components"]["schemas"][component]["properties"]
    for name, hint in typing.get_type_hints(getattr(client, typed)).items():
        assert name in properties, f"client.{typed}.{name} is not in the node's {component}"
        wanted, served = _json_types(hint), _schema_types(spec, properties[name])
        if "number" in wanted:
            wanted.add("integer")
        assert "any" in wanted or served <= wanted, f"client.{typed}.{name}: {wanted} vs {served}"
