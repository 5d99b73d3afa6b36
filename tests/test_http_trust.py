"""The HTTP surface under attack, against real node processes: browser-borne requests
(cross-site POSTs, DNS rebinding), oversized and malformed fields, bounds on queued work."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import NodeProcess

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
