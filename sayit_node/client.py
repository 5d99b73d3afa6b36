"""A client for a node's HTTP API: the one the CLI, the tray app and the tests use.

It depends on httpx only (no node internals), so anything that talks to a node over HTTP can
import it. Every failure (nothing listening, not a SayIt node, an error answer) is raised as
one `NodeError` whose message is the node's OpenAI-shaped `error.message` when there is one.
Bodies are returned as the node sends them (JSON field names unchanged); the TypedDicts below
name the fields callers rely on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypedDict

import httpx

FINISHED = ("completed", "failed", "cancelled")


class NodeError(Exception):
    """A call to a node failed. `status` is the HTTP status (None: no answer at all), `code`
    the OpenAI-shaped error code when the node sent one."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.param = param


class Health(TypedDict, total=False):
    status: str  # ok, degraded (see reason)
    nodeId: str
    name: str
    version: str
    engine: str
    model: str
    languages: list[str]
    reason: str | None


class Job(TypedDict, total=False):
    jobId: str
    status: str  # queued, running, completed, failed, cancelled
    progress: float
    completedChunks: int
    totalChunks: int
    failedChunks: int
    etaSeconds: float | None
    processedSeconds: float
    language: str | None
    duration: float
    model: str
    filename: str
    partialText: str | None
    error: str | None
    warning: str | None
    createdAt: float  # Unix time
    startedAt: float | None
    finishedAt: float | None


class Submitted(TypedDict, total=False):
    jobId: str
    status: str
    statusUrl: str
    resultUrl: str
    eventsUrl: str
    estimatedTime: float
    duration: float
    totalChunks: int


class NodeInfo(TypedDict, total=False):
    id: str
    name: str
    self: bool
    state: str  # starting, up, degraded, stopping, stopped, down, incompatible
    role: str  # node, worker
    engine: str | None
    model: str | None
    cores: int | None
    url: str | None
    load: dict[str, Any] | None
    lastSeen: str | None  # ISO 8601


def check_url(url: str) -> str:
    """`url` without a trailing slash; NodeError unless it is an http(s) URL with a host."""
    text = (url or "").strip().rstrip("/")
    try:
        parsed = httpx.URL(text)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise NodeError(f"not a URL: {url!r} ({exc})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise NodeError(f"{url!r} is not a node URL: write it with its scheme, e.g. http://127.0.0.1:3000")
    return text


def local_url(host: str, port: int) -> str:
    """The URL of a node serving on host:port, as seen from this machine (loopback when it
    serves every address)."""
    host = str(host or "127.0.0.1")
    if host in ("0.0.0.0", "*"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def error_message(response: httpx.Response) -> tuple[str, str | None, str | None]:
    """(message, code, param) of an error answer: the OpenAI-shaped body when there is one."""
    try:
        error = response.json()["error"]
        return str(error["message"]), error.get("code"), error.get("param")
    except (ValueError, KeyError, TypeError):
        reason = response.reason_phrase or "error"
        # A SayIt node always answers errors with that body: this is something else (or a proxy).
        return (f"HTTP {response.status_code} {reason} from {response.request.url}: is a SayIt node "
                f"listening there?"), None, None


class NodeClient:
    """Blocking calls to one node (run them off a UI thread)."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 30.0, *,
                 client_name: str = "sayit-client", transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = check_url(base_url)
        # X-SayIt-Client marks a program, not a web page (the node's browser guard, /api/shutdown).
        headers = {"X-SayIt-Client": client_name}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        # trust_env=False: a proxy from the environment must never see calls to a LAN node.
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout,
                                  trust_env=False, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "NodeClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- plumbing ------------------------------------------------------------------------------
    def _request(self, method: str, path: str, *, ok: tuple[int, ...] = (200,), **kwargs) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise NodeError(f"the node at {self.base_url} did not answer in time") from None
        except httpx.HTTPError as exc:
            raise NodeError(f"no node at {self.base_url} ({_reason(exc)})") from None
        if response.status_code not in ok:
            message, code, param = error_message(response)
            raise NodeError(message, status=response.status_code, code=code, param=param)
        return response

    def _json(self, method: str, path: str, **kwargs) -> Any:
        response = self._request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise NodeError(f"{self.base_url}{path} did not answer with JSON: is this a SayIt node?",
                            status=response.status_code) from None

    # --- node ----------------------------------------------------------------------------------
    def health(self) -> Health:
        data = self._json("GET", "/api/health")
        if not isinstance(data, dict) or data.get("status") not in ("ok", "degraded") or "nodeId" not in data:
            raise NodeError(f"{self.base_url} is not a SayIt node")
        return data

    def diagnose(self) -> dict[str, Any]:
        return self._json("GET", "/api/diagnose")

    def queue_status(self) -> dict[str, Any]:
        return self._json("GET", "/api/queue-status")

    def nodes(self) -> list[NodeInfo]:
        return list(self._json("GET", "/api/nodes").get("nodes") or [])

    def shutdown(self) -> bool:
        """Ask the node to stop gracefully; True if it accepted."""
        try:
            self._request("POST", "/api/shutdown", ok=(200, 202, 204))
        except NodeError:
            return False
        return True

    # --- jobs ----------------------------------------------------------------------------------
    def jobs(self, limit: int | None = None) -> list[Job]:
        params = {"limit": limit} if limit else None
        return list(self._json("GET", "/api/jobs", params=params).get("jobs") or [])

    def submit(self, path: str | Path, *, language: str | None = None, prompt: str | None = None,
               words: bool = False, filename: str | None = None, diarize: bool = False,
               speakers: int | None = None) -> Submitted:
        """Upload a file as an async job (streamed from disk)."""
        path = Path(path)
        data = {"async": "true"}
        if language:
            data["language"] = language
        if prompt:
            data["prompt"] = prompt
        if words:
            data["words"] = "true"
        if diarize or speakers:
            data["diarize"] = "true"  # speaker labels in every format
        if speakers:
            data["speakers"] = str(speakers)
        try:
            fh = path.open("rb")
        except OSError as exc:
            raise NodeError(f"cannot read {path}: {exc.strerror or exc}") from None
        with fh:
            # An upload can take a while on a slow link: no read timeout while it is sent.
            return self._json("POST", "/api/transcribe", files={"audio": (filename or path.name, fh)},
                              data=data, ok=(202,), timeout=httpx.Timeout(30.0, read=None, write=None))

    def job(self, job_id: str) -> Job:
        return self._json("GET", f"/api/jobs/{job_id}")

    def events(self, job_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """The job's server-sent events as (event, data) until it ends."""
        try:
            with self._http.stream("GET", f"/api/jobs/{job_id}/events",
                                   timeout=httpx.Timeout(30.0, read=None)) as response:
                if response.status_code != 200:
                    response.read()
                    message, code, param = error_message(response)
                    raise NodeError(message, status=response.status_code, code=code, param=param)
                event, data = "message", []
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].strip())
                    elif not line and data:
                        yield event, json.loads("\n".join(data))
                        event, data = "message", []
        except httpx.HTTPError as exc:
            raise NodeError(f"lost the node at {self.base_url} ({_reason(exc)})") from None

    def wait(self, job_id: str, *, on_update: Callable[[Job], None] | None = None, poll: float = 0.5,
             timeout: float | None = None) -> Job:
        """Poll until the job has finished (completed, failed or cancelled); returns its status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if on_update is not None:
                on_update(job)
            if job.get("status") in FINISHED:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise NodeError(f"job {job_id} did not finish in {timeout:.0f} s")
            time.sleep(poll)

    def result(self, job_id: str, format: str = "text") -> str:
        """A finished job's transcript rendered by the node (text, json, verbose_json, srt, vtt)."""
        return self._request("GET", f"/api/jobs/{job_id}/result", params={"format": format}).text

    def transcript(self, job_id: str) -> dict[str, Any]:
        """The verbose_json transcript: text, language, duration and timestamped segments."""
        return self._json("GET", f"/api/jobs/{job_id}/result", params={"format": "verbose_json"})

    def delete(self, job_id: str) -> Job:
        """Cancel a job; its audio and results are deleted."""
        return self._json("DELETE", f"/api/jobs/{job_id}")


def _reason(exc: httpx.HTTPError) -> str:
    """A short reason: "connection refused" rather than a nested errno repr."""
    text = str(exc) or type(exc).__name__
    for known in ("Connection refused", "Name or service not known", "No route to host",
                  "Temporary failure in name resolution", "Connection reset"):
        if known.lower() in text.lower():
            return known.lower()
    return text.splitlines()[0]
