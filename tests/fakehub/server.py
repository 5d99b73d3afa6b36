"""A threaded HTTP server on 127.0.0.1 that answers like the Hugging Face Hub for model repos.

It implements what `huggingface_hub.snapshot_download` (2.x, plain HTTP, no Xet) and
`HfApi.model_info` call:

- `GET /api/models/{repo}` and `GET /api/models/{repo}/revision/{rev}` -> model info JSON with
  `id`, `sha` and `siblings` (`?blobs=true` adds `size`, `blobId` and `lfs`);
- `GET /api/models/{repo}/tree/{rev}[/{path}]` -> a JSON list of files (`type`, `path`, `size`,
  `oid`, `lfs` for large files), in one page (no `Link` header);
- `HEAD|GET /{repo}/resolve/{rev}/{filename}` -> the file, with `X-Repo-Commit`, `ETag` (the
  LFS sha256 for large files, the git blob id otherwise), `Content-Length`, and `Range` support.

Unknown repos, revisions and files answer 404 with the Hub's `X-Error-Code` header
(`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`), so the client raises its typed errors.
Every request is recorded in `FakeHub.requests` as `(method, path)`.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

LFS_THRESHOLD = 10 * 1024 * 1024  # files this big are served as LFS files, like the Hub does


def _hash_file(path: Path) -> tuple[str, str]:
    """(git blob sha1, sha256) of a file."""
    size = path.stat().st_size
    git = hashlib.sha1(f"blob {size}\0".encode())
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            git.update(block)
            sha.update(block)
    return git.hexdigest(), sha.hexdigest()


@dataclass
class RepoFile:
    path: str
    source: Path
    size: int
    git_oid: str
    sha256: str

    @property
    def is_lfs(self) -> bool:
        return self.size >= LFS_THRESHOLD

    @property
    def etag(self) -> str:
        return self.sha256 if self.is_lfs else self.git_oid

    def tree_entry(self) -> dict:
        entry = {"type": "file", "oid": self.git_oid, "size": self.size, "path": self.path}
        if self.is_lfs:
            entry["lfs"] = {"oid": self.sha256, "size": self.size, "pointerSize": 134}
        return entry

    def sibling(self, blobs: bool) -> dict:
        entry: dict = {"rfilename": self.path}
        if blobs:
            entry.update(size=self.size, blobId=self.git_oid)
            if self.is_lfs:
                entry["lfs"] = {"sha256": self.sha256, "size": self.size, "pointerSize": 134}
        return entry


@dataclass
class FakeRepo:
    repo_id: str
    files: dict[str, RepoFile] = field(default_factory=dict)
    sha: str = ""

    @classmethod
    def from_files(cls, repo_id: str, files: dict[str, Path]) -> "FakeRepo":
        """`files` maps a repo path to the local file served under it."""
        repo = cls(repo_id)
        for name, source in sorted(files.items()):
            git_oid, sha256 = _hash_file(source)
            repo.files[name] = RepoFile(name, source, source.stat().st_size, git_oid, sha256)
        # A stable, repo-specific 40-hex commit id.
        repo.sha = hashlib.sha1((repo_id + "".join(f.git_oid for f in repo.files.values())).encode()).hexdigest()
        return repo


class FakeHub:
    def __init__(self, repos: list[FakeRepo]) -> None:
        self.repos = {r.repo_id: r for r in repos}
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # noqa: A002 - keep test output quiet
                pass

            def do_HEAD(self):
                hub._handle(self, head=True)

            def do_GET(self):
                hub._handle(self, head=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="fakehub", daemon=True)

    def __enter__(self) -> "FakeHub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)

    # --- request handling -------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler, head: bool) -> None:
        url = urlsplit(h.path)
        path = unquote(url.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        with self._lock:
            self.requests.append(("HEAD" if head else "GET", path))
        try:
            if path.startswith("/api/models/"):
                self._api(h, path[len("/api/models/"):], query, head)
            elif "/resolve/" in path:
                self._resolve(h, path.lstrip("/"), head)
            else:
                self._error(h, 404, "Not Found", head)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _find_repo(self, h, rest: str, head: bool) -> tuple[FakeRepo | None, str]:
        owner, _, remainder = rest.partition("/")
        name, _, tail = remainder.partition("/")
        repo = self.repos.get(f"{owner}/{name}")
        if repo is None:
            self._error(h, 404, "Repository not found", head, code="RepoNotFound")
        return repo, tail

    def _check_revision(self, h, repo: FakeRepo, revision: str, head: bool) -> bool:
        if revision in ("main", repo.sha):
            return True
        self._error(h, 404, f"Invalid rev id: {revision}", head, code="RevisionNotFound", commit=None)
        return False

    def _api(self, h, rest: str, query: dict, head: bool) -> None:
        repo, tail = self._find_repo(h, rest, head)
        if repo is None:
            return
        if tail == "" or tail.startswith("revision/"):
            revision = tail[len("revision/"):] if tail else "main"
            if not self._check_revision(h, repo, revision, head):
                return
            blobs = query.get("blobs", "").lower() in ("1", "true")
            info = {
                "_id": repo.sha[:24], "id": repo.repo_id, "modelId": repo.repo_id, "author": repo.repo_id.split("/")[0],
                "sha": repo.sha, "private": False, "gated": False, "disabled": False, "tags": [],
                "library_name": "ctranslate2", "lastModified": "2024-01-01T00:00:00.000Z",
                "siblings": [f.sibling(blobs) for f in repo.files.values()],
            }
            self._json(h, info, head, commit=repo.sha)
            return
        match = re.fullmatch(r"tree/([^/]+)(?:/(.*))?", tail)
        if match:
            revision, sub = match.group(1), (match.group(2) or "").strip("/")
            if not self._check_revision(h, repo, revision, head):
                return
            recursive = query.get("recursive", "").lower() in ("1", "true")
            entries = []
            for f in repo.files.values():
                if sub and not f.path.startswith(sub + "/"):
                    continue
                relative = f.path[len(sub) + 1:] if sub else f.path
                if "/" in relative and not recursive:
                    continue  # this small stand-in lists no folders
                entries.append(f.tree_entry())
            self._json(h, entries, head, commit=repo.sha)
            return
        self._error(h, 404, "Not Found", head)

    def _resolve(self, h, rest: str, head: bool) -> None:
        repo, tail = self._find_repo(h, rest, head)
        if repo is None:
            return
        match = re.fullmatch(r"resolve/([^/]+)/(.+)", tail)
        if not match:
            self._error(h, 404, "Not Found", head)
            return
        revision, filename = match.groups()
        if not self._check_revision(h, repo, revision, head):
            return
        f = repo.files.get(filename)
        if f is None:
            self._error(h, 404, "Entry not found", head, code="EntryNotFound", commit=repo.sha)
            return
        start, end = 0, f.size - 1
        status = 200
        range_header = h.headers.get("Range")
        if range_header:
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", range_header.strip())
            if m:
                start = int(m.group(1))
                end = min(int(m.group(2)), f.size - 1) if m.group(2) else f.size - 1
                status = 206
        length = max(0, end - start + 1)
        h.send_response(status)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(length))
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("ETag", f'"{f.etag}"')
        h.send_header("X-Repo-Commit", repo.sha)
        if f.is_lfs:
            h.send_header("X-Linked-Etag", f'"{f.sha256}"')
            h.send_header("X-Linked-Size", str(f.size))
        if status == 206:
            h.send_header("Content-Range", f"bytes {start}-{end}/{f.size}")
        h.end_headers()
        if head:
            return
        with open(f.source, "rb") as src:
            src.seek(start)
            remaining = length
            while remaining > 0:
                block = src.read(min(1 << 20, remaining))
                if not block:
                    break
                h.wfile.write(block)
                remaining -= len(block)

    # --- responses --------------------------------------------------------------------------

    @staticmethod
    def _json(h, data, head: bool, commit: str | None = None) -> None:
        body = json.dumps(data).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json; charset=utf-8")
        h.send_header("Content-Length", str(len(body)))
        if commit:
            h.send_header("X-Repo-Commit", commit)
        h.end_headers()
        if not head:
            h.wfile.write(body)

    @staticmethod
    def _error(h, status: int, message: str, head: bool, code: str | None = None, commit: str | None = None) -> None:
        body = json.dumps({"error": message}).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json; charset=utf-8")
        h.send_header("Content-Length", str(len(body)))
        h.send_header("X-Error-Message", message)
        if code:
            h.send_header("X-Error-Code", code)
        if commit:
            h.send_header("X-Repo-Commit", commit)
        h.end_headers()
        if not head:
            h.wfile.write(body)
