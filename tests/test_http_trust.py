"""The HTTP surface under attack, against real node processes: browser-borne requests
(cross-site POSTs, DNS rebinding), oversized and malformed fields, bounds on queued work."""

from __future__ import annotations

import html
import re

import httpx
import pytest

from tests.conftest import NodeProcess, assert_schema

EVIL = "http://evil.example"


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    node = NodeProcess(tmp_path_factory.mktemp("trust-node")).start()
    yield node
    node.stop()


def _error(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]


# --- browser protection ----------------------------------------------------------------------

def test_cross_site_shutdown_is_refused_and_the_node_stays_up(node):
    with node.client() as client:
        # What a page at evil.example sends with fetch(..., {method: "POST", mode: "no-cors"}).
        attacks = [
            {"Origin": EVIL, "Content-Type": "text/plain", "Sec-Fetch-Site": "cross-site"},
            {"Origin": EVIL, "Content-Type": "text/plain", "X-SayIt-Client": "x"},  # as if preflighted
            {"Origin": "null", "Content-Type": "application/x-www-form-urlencoded"},  # sandboxed iframe
            {"Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"},  # no Origin at all
            {"Content-Type": "text/plain"},  # an old browser sending neither header
        ]
        for headers in attacks:
            response = client.post("/api/shutdown", content=b"stop", headers=headers)
            assert response.status_code == 403, (headers, response.text)
            assert _error(response)["code"] in ("cross_origin_forbidden", "forbidden")
    assert node.proc.poll() is None
    assert httpx.get(node.url + "/api/health", timeout=5).status_code == 200


def test_foreign_host_names_are_refused(node):
    with node.client() as client:
        for host in (f"evil.example:{node.port}", "evil.example", "127.0.0.1.evil.example", "localhost.:x"):
            for path in ("/api/jobs", "/api/health", "/v1/models"):
                response = client.get(path, headers={"Host": host})
                assert response.status_code == 421, (host, path, response.status_code)
                assert _error(response)["code"] == "host_not_allowed"
        response = client.post("/api/transcribe", headers={"Host": "evil.example"}, files={"audio": b"x"})
        assert response.status_code == 421
        for host in (f"127.0.0.1:{node.port}", f"localhost:{node.port}", "localhost", f"[::1]:{node.port}",
                     "LOCALHOST."):
            assert client.get("/api/jobs", headers={"Host": host}).status_code == 200, host


def test_same_origin_requests_work(node, short_speech):
    path, _ = short_speech
    own = {"Origin": node.url, "Sec-Fetch-Site": "same-origin"}
    with node.client() as client:
        response = client.post("/api/transcribe", files={"audio": path.open("rb")},
                               data={"async": "true"}, headers=own)
        assert response.status_code == 202, response.text
        job_id = response.json()["jobId"]
        assert client.get(f"/api/jobs/{job_id}", headers=own).status_code == 200
        # The same page from another port of this machine is another origin.
        other = {"Origin": f"http://127.0.0.1:{node.port + 1}", "Sec-Fetch-Site": "same-site"}
        assert client.delete(f"/api/jobs/{job_id}", headers=other).status_code == 403
        assert client.delete(f"/api/jobs/{job_id}", headers=own).status_code == 200
        cross = client.post("/api/transcribe", files={"audio": path.open("rb")},
                            headers={"Origin": EVIL, "Sec-Fetch-Site": "cross-site"})
        assert cross.status_code == 403 and _error(cross)["code"] == "cross_origin_forbidden"


def test_allowed_hosts_origins_and_same_origin_shutdown(node_factory):
    node = node_factory(env={"ALLOWED_HOSTS": "sayit.example", "ALLOWED_ORIGINS": "http://tools.example"})
    name = f"sayit.example:{node.port}"
    with node.client() as client:
        assert client.get("/api/jobs", headers={"Host": name}).status_code == 200
        assert client.get("/api/jobs", headers={"Host": "other.example"}).status_code == 421
        # A listed origin may change things (CORS for it is on); it still needs a non-simple shutdown.
        listed = {"Origin": "http://tools.example", "Content-Type": "text/plain"}
        assert client.post("/api/shutdown", headers=listed, content=b"x").status_code == 403
        # The node's own page (served under the allowed name) stops it with a JSON request.
        response = client.post("/api/shutdown", json={}, headers={"Host": name, "Origin": f"http://{name}",
                                                                  "Sec-Fetch-Site": "same-origin"})
        assert response.status_code == 202, response.text
    assert node.proc.wait(20) == 0


# --- deleting -----------------------------------------------------------------------------------

def test_delete_removes_a_finished_transcript(node, short_speech):
    import sqlite3

    from tests.conftest import submit_job, wait_job

    path, _ = short_speech
    with node.client() as client:
        job_id = submit_job(client, path)
        assert wait_job(client, job_id)["status"] == "completed"
        assert client.get(f"/api/jobs/{job_id}/result").status_code == 200
        assert client.delete(f"/api/jobs/{job_id}").status_code == 200
        for fmt in ("json", "text", "srt"):
            result = client.get(f"/api/jobs/{job_id}/result", params={"format": fmt})
            assert result.status_code == 404 and _error(result)["code"] == "job_deleted"
        assert client.get(f"/api/jobs/{job_id}").json()["partialText"] == ""
    db = sqlite3.connect(node.home / "data" / "sayit.db")
    assert db.execute("SELECT COUNT(*) FROM chunks WHERE job_id=? AND segments IS NOT NULL", (job_id,)).fetchone()[0] == 0
    assert db.execute("SELECT COUNT(*) FROM chunk_audio WHERE job_id=?", (job_id,)).fetchone()[0] == 0


# --- text fields ---------------------------------------------------------------------------------

def _multipart(parts: list[tuple[str, dict[str, str], bytes]], boundary: str = "sayitboundary") -> tuple[bytes, dict]:
    """A hand-built body: (name, extra part headers, payload); a 'filename' header makes a file part."""
    out = b""
    for name, headers, payload in parts:
        headers = dict(headers)
        filename = headers.pop("filename", None)
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode()
        for key, value in headers.items():
            out += f"{key}: {value}\r\n".encode()
        out += b"\r\n" + payload + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return out, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def test_huge_prompt_is_refused_at_once_and_health_stays_responsive(node, short_speech):
    import threading
    import time

    path, _ = short_speech
    health_times: list[float] = []
    done = threading.Event()

    def poll_health():
        while not done.is_set():
            started = time.monotonic()
            assert httpx.get(node.url + "/api/health", timeout=10).status_code == 200
            health_times.append(time.monotonic() - started)
            time.sleep(0.05)

    poller = threading.Thread(target=poll_health)
    poller.start()
    try:
        with node.client() as client:
            for route, file_field in (("/v1/audio/transcriptions", "file"), ("/api/transcribe", "audio")):
                started = time.monotonic()
                response = client.post(route, files={file_field: path.open("rb")},
                                       data={"model": "whisper-1", "prompt": "word " * 400_000})  # 2 MB
                elapsed = time.monotonic() - started
                error = _error(response)
                assert response.status_code == 400 and error["code"] == "field_too_long" and error["param"] == "prompt"
                assert elapsed < 10, f"refused while streaming, not after transcribing ({elapsed:.1f} s)"
            # Every other text field is bounded too, and a long value is never echoed back.
            for field in ("language", "model", "response_format", "temperature", "timestamp_granularities[]"):
                response = client.post("/v1/audio/transcriptions", files={"file": path.open("rb")},
                                       data={field: "x" * 10_000})
                assert response.status_code == 400 and _error(response)["param"] == field, field
                assert len(response.text) < 1000
            # A prompt of normal length still works.
            response = client.post("/v1/audio/transcriptions", files={"file": path.open("rb")},
                                   data={"model": "whisper-1", "prompt": "Glossary: SayIt, Whisper. " * 20})
            assert response.status_code == 200, response.text
    finally:
        done.set()
        poller.join()
    assert health_times and max(health_times) < 2.0, max(health_times)


def test_bad_text_encoding_is_a_400(node, short_speech):
    path, _ = short_speech
    audio = ("file", {"filename": "a.wav", "Content-Type": "audio/wav"}, path.read_bytes())
    cases = [
        (("language", {}, b"\xff\xfeen"), "invalid_encoding"),
        (("prompt", {"Content-Type": "text/plain; charset=utf-8"}, b"caf\xc3"), "invalid_encoding"),
        (("prompt", {"Content-Type": "text/plain; charset=klingon-8"}, b"hello"), "unsupported_charset"),
        (("prompt", {"Content-Type": "text/plain; charset=rot13"}, b"hello"), "unsupported_charset"),
    ]
    with node.client() as client:
        for part, code in cases:
            body, headers = _multipart([audio, part])
            response = client.post("/v1/audio/transcriptions", content=body, headers=headers)
            assert response.status_code == 400, (part, response.text)
            assert _error(response)["code"] == code
        # A declared charset that is right is honoured.
        body, headers = _multipart([audio, ("prompt", {"Content-Type": "text/plain; charset=latin-1"}, b"caf\xe9")])
        assert client.post("/v1/audio/transcriptions", content=body, headers=headers).status_code == 200
        # Malformed or truncated multipart bodies are 400s as well.
        body, headers = _multipart([audio])
        for broken in (body[: len(body) // 2], b"garbage", body.replace(b"--sayitboundary--", b"")):
            response = client.post("/v1/audio/transcriptions", content=broken, headers=headers)
            assert response.status_code == 400, response.text
    assert "Traceback" not in node.log.read_text()


# --- nothing the node serves makes a browser fetch third-party code -------------------------

_URL = re.compile(r"""(?:https?:)?//[A-Za-z0-9.\-\[\]:]+[^\s"'<>)]*""")
_NAMESPACES = ("http://www.w3.org/",)  # XML namespace names in SVG: identifiers, never fetched


def _external_urls(text: str) -> list[str]:
    return [u for u in _URL.findall(text) if not u.startswith(_NAMESPACES)]


def test_web_page_and_api_docs_load_nothing_from_other_hosts(node):
    """The page, every file it links, the /schema routes and an error page: no URL of another
    host (litestar's HTML API viewers pulled their scripts and favicon from public CDNs)."""
    from sayit_node.web import STATIC_DIR

    with node.client() as client:
        schema = client.get("/schema/openapi.json")
        assert schema.status_code == 200 and schema.json()["openapi"].startswith("3.")
        reference = client.get("/schema")  # what the tray's "Open API docs" opens
        assert reference.status_code == 200 and reference.headers["content-type"].startswith("text/html")
        assert "<script" not in reference.text.lower()
        for route in schema.json()["paths"]:  # every route, escaped
            assert html.escape(route) in reference.text, route
        assert 'id="schema-JobView"' in reference.text
        yaml_spec = client.get("/schema/openapi.yaml")
        assert yaml_spec.status_code == 200 and "openapi:" in yaml_spec.text
        page = client.get("/")
        linked = re.findall(r'(?:src|href)="(/[^"#]*)"', page.text)
        assert "/static/app.js" in linked and "/static/app.css" in linked
        linked += re.findall(r'(?:src|href)="(/[^"#]*)"', reference.text)
        assert "/schema/openapi.json" in linked
        served = {"/": page, "/schema": reference}
        for path in {*linked, *(f"/static/{f.name}" for f in STATIC_DIR.iterdir() if f.is_file())}:
            served[path] = client.get(path)
            assert served[path].status_code == 200, path
        for viewer in ("swagger", "redoc", "elements", "rapidoc", "scalar"):  # removed, not left reachable
            served[f"/schema/{viewer}"] = client.get(f"/schema/{viewer}")
            assert served[f"/schema/{viewer}"].status_code == 404, viewer
        served["/no-such-page"] = client.get("/no-such-page", headers={"Accept": "text/html"})
        for path, response in served.items():
            if "json" in response.headers.get("content-type", "") or "yaml" in path:
                continue
            assert _external_urls(response.text) == [], (path, _external_urls(response.text))


# --- bounds on queued work and connections -----------------------------------------------------

@pytest.fixture(scope="module")
def bounded(tmp_path_factory):
    """A node whose engine is slow (simulated: 1 s per audio second), with small bounds."""
    node = NodeProcess(tmp_path_factory.mktemp("bounded-node"), env={
        "SAYIT_ENGINE": "simulated", "SAYIT_SIMULATED_COST": "1.0", "MAX_CONCURRENT_CHUNKS": "1",
        "SAYIT_API_KEYS": "alice,bob,carol,dave",
        "SAYIT_MAX_QUEUED_MINUTES_PER_CLIENT": "0.4", "SAYIT_MAX_QUEUED_MINUTES": "0.6",
        "SAYIT_MAX_EVENT_STREAMS": "2", "SAYIT_MAX_CONCURRENT_UPLOADS": "1",
    }).start()
    yield node
    node.stop()


def _as(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def _submit(client: httpx.Client, path, key: str) -> httpx.Response:
    return client.post("/api/transcribe", files={"audio": path.open("rb")}, data={"async": "true"}, headers=_as(key))


def test_queued_audio_is_bounded_per_client_and_per_node(bounded, short_speech):
    path, _ = short_speech  # ~15 s: two fit a client's 24 s only if short; the third never does
    with bounded.client() as client:
        accepted = {"alice": [], "bob": []}
        for key in ("alice", "bob"):
            for _ in range(3):
                response = _submit(client, path, key)
                if response.status_code != 202:
                    break
                accepted[key].append(response.json()["jobId"])
            assert response.status_code == 429, response.text
            error = _error(response)
            assert error["code"] == "queue_full" and error["type"] == "rate_limit_error"
            # About the time the node needs to drain the excess at its 1 audio-s/s (< 30 s here),
            # not a guess from an empty speed window (it said 60-240 s).
            assert 1 <= int(response.headers["Retry-After"]) <= 30, response.headers["Retry-After"]
            assert "SAYIT_MAX_QUEUED_MINUTES" in error["message"]
            assert_schema(client, "/api/transcribe", "post", 429, response.json())
        assert accepted["alice"] and accepted["bob"]
        # Alice and Bob together have reached the node's bound: Carol, new, is refused too.
        response = _submit(client, path, "carol")
        assert response.status_code == 429 and "this node's queue" in _error(response)["message"]
        # Deleting queued jobs gives their room back at once.
        for job_id in accepted["alice"]:
            assert client.delete(f"/api/jobs/{job_id}", headers=_as("alice")).status_code == 200
        assert _submit(client, path, "alice").status_code == 202
        assert client.get("/api/health").status_code == 200


def test_event_streams_are_capped(bounded, short_speech):
    import time

    path, _ = short_speech
    with bounded.client(timeout=30) as client:
        for job_id in [j["jobId"] for j in client.get("/api/jobs", headers=_as("carol")).json()["jobs"]]:
            client.delete(f"/api/jobs/{job_id}", headers=_as("carol"))
        response = _submit(client, path, "carol")
        assert response.status_code == 202, response.text
        events = f"/api/jobs/{response.json()['jobId']}/events"
        with client.stream("GET", events, headers=_as("carol")) as first, \
                client.stream("GET", events, headers=_as("carol")) as second:
            assert first.status_code == second.status_code == 200
            third = client.get(events, headers=_as("carol"))
            assert third.status_code == 429 and _error(third)["code"] == "too_many_streams"
            assert third.headers["Retry-After"]
        deadline = time.monotonic() + 10  # the server notices the closed streams
        while True:
            with client.stream("GET", events, headers=_as("carol")) as again:
                if again.status_code == 200:
                    break
            assert time.monotonic() < deadline, "stream slots are given back"
            time.sleep(0.2)


def test_concurrent_uploads_are_capped(bounded, short_speech):
    import threading
    import time

    path, _ = short_speech
    body, headers = _multipart([("audio", {"filename": "a.wav"}, path.read_bytes()), ("async", {}, b"true")])
    started = threading.Event()

    def slow_body():
        yield body[:1000]
        started.set()
        time.sleep(3)
        yield body[1000:]

    results = {}

    def slow_upload():
        with bounded.client() as c:
            results["slow"] = c.post("/api/transcribe", content=slow_body(), headers={**headers, **_as("dave")})

    thread = threading.Thread(target=slow_upload)
    thread.start()
    started.wait(10)
    time.sleep(0.5)
    with bounded.client() as client:
        response = client.post("/api/transcribe", content=body, headers={**headers, **_as("carol")})
        assert response.status_code == 429 and _error(response)["code"] == "too_many_uploads"
        assert response.headers["Retry-After"]
    thread.join(60)
    assert results["slow"].status_code == 202, results["slow"].text


def test_store_reads_stay_fast_while_more_chunks_run_than_the_default_thread_pool_has(tmp_path, short_speech):
    """The engine runs on its own executor: with more engine calls at once than asyncio's default
    pool has threads (min(32, cores + 4)), the store's SQLite calls (which use that pool) still
    answer at once. With the engine on the default pool, every read waited for a chunk to end."""
    import os
    import threading
    import time

    default_pool = min(32, (os.cpu_count() or 1) + 4)
    jobs = default_pool + 2
    if jobs > 14:
        pytest.skip(f"{jobs} simultaneous jobs on a machine this size: too slow for a test")
    node = NodeProcess(tmp_path / "pool-node", env={
        "SAYIT_ENGINE": "simulated", "SAYIT_SIMULATED_COST": "2.0", "MAX_CONCURRENT_CHUNKS": str(jobs),
    }).start()
    try:
        path, _ = short_speech
        ids: list[str] = []
        with node.client(timeout=60) as client:
            def submit():
                response = client.post("/api/transcribe", files={"audio": path.open("rb")}, data={"async": "true"})
                assert response.status_code == 202, response.text
                ids.append(response.json()["jobId"])

            threads = [threading.Thread(target=submit) for _ in range(jobs)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert len(ids) == jobs
            deadline = time.monotonic() + 20  # the engine calls take ~30 s: all start well before
            while sum(client.get(f"/api/jobs/{j}").json()["status"] == "running" for j in ids) < jobs:
                assert time.monotonic() < deadline, "reading the jobs' state waited for engine calls to end"
                time.sleep(0.2)
            time.sleep(1.0)  # every chunk is inside its engine call now (~30 s each)
            took = []
            for _ in range(5):
                started = time.monotonic()
                assert client.get("/api/jobs").status_code == 200
                assert client.get(f"/api/jobs/{ids[0]}").json()["status"] == "running"
                took.append(time.monotonic() - started)
            assert max(took) < 1.0, took
            for job_id in ids:
                client.delete(f"/api/jobs/{job_id}")
    finally:
        node.stop()
