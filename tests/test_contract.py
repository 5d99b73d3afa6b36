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


# --- upload forms: the spec's requestBody is the form each handler reads ------------------------

from sayit_node.api.upload_form import OPENAI_FORM, TRANSCRIBE_FORM, UploadForm  # noqa: E402

UPLOAD_ROUTES = {"/v1/audio/transcriptions": OPENAI_FORM, "/v1/audio/translations": OPENAI_FORM,
                 "/api/transcribe": TRANSCRIBE_FORM}


def _form_schema(spec: dict, path: str) -> dict:
    body = spec["paths"][path]["post"]["requestBody"]
    assert body["required"] is True and list(body["content"]) == ["multipart/form-data"], path
    return body["content"]["multipart/form-data"]["schema"]


def test_only_the_upload_routes_take_a_body_and_each_declares_its_form(spec):
    with_body = {path for path, ops in spec["paths"].items() for op in ops.values()
                 if isinstance(op, dict) and "requestBody" in op}
    assert with_body == set(UPLOAD_ROUTES)
    # Every handler that reads a form does so through read_upload with its route's declaration.
    import ast

    from tests.conftest import ROOT

    callers = {}
    for path in sorted((ROOT / "sayit_node").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) in (
                    "read_upload", "read_form"):
                callers[(path.relative_to(ROOT).as_posix(), node.func.id if isinstance(node.func, ast.Name)
                         else node.func.attr)] = ast.unparse(node.args[-1])
    assert callers == {("sayit_node/api/openai.py", "read_upload"): "OPENAI_FORM",
                       ("sayit_node/api/jobs.py", "read_upload"): "TRANSCRIBE_FORM",
                       ("sayit_node/api/uploads.py", "read_form"): "request"}


@pytest.mark.parametrize("path", sorted(UPLOAD_ROUTES))
def test_openapi_upload_form_lists_exactly_the_declared_fields(spec, path):
    from sayit_node.api.forms import MAX_FIELD_CHARS, MAX_PROMPT_CHARS
    from sayit_node.api.upload_form import MAX_SPEAKERS
    from sayit_node.jobs.transcript import FORMATS, normalise_format

    form: UploadForm = UPLOAD_ROUTES[path]
    schema = _form_schema(spec, path)
    props = schema["properties"]
    assert list(props) == [f.name for f in form.fields]
    for name in form.file_fields:
        assert props[name]["type"] == "string" and props[name]["format"] == "binary", name
    if path.startswith("/v1"):
        assert schema["required"] == ["file"] and "anyOf" not in schema
        assert props["timestamp_granularities[]"]["type"] == "array"
        assert set(props["timestamp_granularities[]"]["items"]["enum"]) == {"word", "segment"}
        assert props["temperature"] == {**props["temperature"], "type": "number", "minimum": 0, "maximum": 1}
        assert props["stream"]["type"] == "boolean"
        formats = props["response_format"]["enum"]
    else:  # the audio comes as 'audio' or 'file'
        assert "required" not in schema and schema["anyOf"] == [{"required": ["audio"]}, {"required": ["file"]}]
        assert props["async"]["type"] == "boolean" and props["words"]["type"] == "boolean"
        formats = props["format"]["enum"]
        assert props["response_format"]["enum"] == formats
    assert set(FORMATS) <= set(formats) and all(normalise_format(f) for f in formats)
    assert props["prompt"]["maxLength"] == MAX_PROMPT_CHARS
    for name in ("model", "language"):
        assert props[name] == {**props[name], "type": "string", "maxLength": MAX_FIELD_CHARS}
    assert props["diarize"]["type"] == "boolean" and props["diarize"]["default"] is False
    for name in ("speakers", "num_speakers", "min_speakers", "max_speakers"):
        assert props[name] == {**props[name], "type": "integer", "minimum": 1, "maximum": MAX_SPEAKERS}, name


def test_schema_page_shows_the_upload_form_fields(node):
    import html

    with node.client() as client:
        page = client.get("/schema").text
    for path, form in UPLOAD_ROUTES.items():
        section = page.split(f"</span> {html.escape(path)}</h3>", 1)[1].split("<h3", 1)[0]
        assert "<code>multipart/form-data</code>" in section, path
        for field in form.fields:
            assert f"<td class=t>{html.escape(field.name)}</td>" in section, (path, field.name)
        assert "at most 2000 characters" in section and "string (binary)" in section


# The handlers themselves, in process, on a stub service: which fields does each one read?

class _Stop(Exception):
    pass


class _StubService:
    model_name = "tiny.en"
    beam_size = 5

    def __init__(self):
        self.options = None

        class Queued:
            async def reserve(self, *args, **kwargs):
                return None

        self.queued, self.store = Queued(), None

    def check_language(self, language):
        return None

    async def submit(self, file, *, filename, options, client):
        self.options = options
        raise _Stop


def _stub_client(service):
    from litestar import Litestar, Response
    from litestar.datastructures import State
    from litestar.testing import TestClient

    from sayit_node.api import jobs, openai
    from sayit_node.api.errors import EXCEPTION_HANDLERS
    from sayit_node.api.limits import Slots

    class Node:
        pass

    node = Node()
    node.service = service
    state = State({"node": node, "upload_slots": Slots(4, "uploads", "too_many_uploads", "X"),
                   "stream_slots": Slots(4, "streams", "too_many_streams", "Y")})
    app = Litestar(route_handlers=[*openai.ROUTES, *jobs.ROUTES], state=state,
                   exception_handlers={**EXCEPTION_HANDLERS, _Stop: lambda request, exc: Response(
                       {"submitted": True}, status_code=299)})
    return TestClient(app)


@pytest.mark.parametrize("path", sorted(UPLOAD_ROUTES))
def test_each_handler_reads_exactly_the_fields_its_form_declares(monkeypatch, path):
    """A field the handler reads that the spec does not list (or the reverse) fails here; the
    declaration also refuses, at run time, a read of a name it does not list."""
    from sayit_node.api import uploads

    form = UPLOAD_ROUTES[path]
    read: list[str] = []
    get, get_all = uploads.Upload.get, uploads.Upload.get_all
    monkeypatch.setattr(uploads.Upload, "get", lambda self, name: read.append(name) or get(self, name))
    monkeypatch.setattr(uploads.Upload, "get_all", lambda self, name: read.append(name) or get_all(self, name))
    file_field = form.file_fields[0]
    with _stub_client(_StubService()) as client:
        # With only the file every field is read (no value short-cuts an `a or b`).
        response = client.post(path, files={file_field: ("a.wav", b"RIFF", "audio/wav")})
        assert response.status_code == 299, response.text
        assert set(read) == form.text_names
        for name in form.file_fields:  # each file field the spec lists is one the handler takes
            assert client.post(path, files={name: ("a.wav", b"RIFF", "audio/wav")}).status_code == 299
        missing = client.post(path, files={"other": ("a.wav", b"RIFF", "audio/wav")})
        assert missing.status_code == 400 and missing.json()["error"]["code"] == "missing_file"
    with pytest.raises(LookupError):
        uploads.Upload(None, {}, "client", form).get("not_declared")


@pytest.mark.parametrize("path", sorted(UPLOAD_ROUTES))
def test_a_field_the_form_does_not_declare_is_ignored(path):
    """As today (and as OpenAI does with fields it does not know): no error, no effect."""
    form = UPLOAD_ROUTES[path]
    service = _StubService()
    with _stub_client(service) as client:
        files = {form.file_fields[0]: ("a.wav", b"RIFF", "audio/wav")}
        assert client.post(path, files=files).status_code == 299
        plain = service.options
        extra = {"chunking_strategy": "auto", "include[]": "logprobs", "x" * 64: "y"}
        assert not set(extra) & form.names
        response = client.post(path, files=files, data=extra)
        assert response.status_code == 299, response.text
        assert service.options == plain


@pytest.mark.parametrize("path", sorted(UPLOAD_ROUTES))
def test_the_declared_bounds_are_the_ones_the_handler_enforces(path):
    form = UPLOAD_ROUTES[path]
    files = {form.file_fields[0]: ("a.wav", b"RIFF", "audio/wav")}
    prompt = form.field("prompt").max_length
    with _stub_client(_StubService()) as client:
        def status(**data):
            return client.post(path, files=files, data=data).status_code

        assert status(prompt="a" * prompt) == 299 and status(prompt="a" * (prompt + 1)) == 400
        high = form.field("speakers").maximum
        assert status(diarize="true", speakers=str(high)) == 299
        assert status(diarize="true", speakers=str(high + 1)) == 400 and status(diarize="true", speakers="0") == 400
        fmt = "response_format" if path.startswith("/v1") else "format"
        for value in form.field(fmt).enum:
            assert status(**{fmt: value}) == 299, value
        assert status(**{fmt: "docx"}) == 400
        for name in [f.name for f in form.fields if f.kind == "boolean"]:
            if name == "stream":
                continue  # the stub cannot stream
            assert status(**{name: "yes"}) == 299 and status(**{name: "maybe"}) == 400, name
        if path.startswith("/v1"):
            low, high = form.field("temperature").minimum, form.field("temperature").maximum
            assert status(temperature=str(low)) == 299 and status(temperature=str(high)) == 299
            assert status(temperature=str(high + 0.1)) == 400
            assert status(**{"timestamp_granularities[]": "word"}) == 299
            assert status(**{"timestamp_granularities[]": "char"}) == 400
