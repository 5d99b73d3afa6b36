"""`sayit-node serve | worker | transcribe | status | peers`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from .config import load_settings
from .jobs.transcript import FORMATS, FORMAT_ALIASES, normalise_format, render

console = Console(stderr=True)
EXTENSIONS = {"text": "txt", "json": "json", "verbose_json": "json", "srt": "srt", "vtt": "vtt"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sayit-node", description="SayIt speech-to-text node")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the node (HTTP API + workers)")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1; set it to serve the LAN)")
    serve.add_argument("--port", type=int, help="port (default 3000)")
    serve.add_argument("--model", help="model name (tiny.en, base, small, large-v3, ...) or directory")
    serve.add_argument("--engine", choices=["auto", "faster-whisper", "mlx"])
    serve.add_argument("--cluster-secret", help="join only clusters holding this secret (SAYIT_CLUSTER_SECRET)")
    serve.add_argument("--host-redis", action="store_true", default=None,
                       help="run the cluster's redis-server here and advertise it (SAYIT_HOST_REDIS)")
    serve.add_argument("--redis-url", help="use this Redis for the cluster (REDIS_URL)")

    worker = sub.add_parser("worker", help="run a worker only (no API): pulls chunks from the cluster's Redis")
    worker.add_argument("--model", help="model name or directory")
    worker.add_argument("--engine", choices=["auto", "faster-whisper", "mlx"])
    worker.add_argument("--redis-url", help="the cluster's Redis (REDIS_URL)")
    worker.add_argument("--concurrency", type=int, help="chunks at once (MAX_CONCURRENT_CHUNKS)")

    tr = sub.add_parser("transcribe", help="transcribe files (in-process, or on a running node with --server)")
    tr.add_argument("files", nargs="+", type=Path)
    tr.add_argument("--format", default="text", choices=[*FORMATS, *FORMAT_ALIASES])
    tr.add_argument("--output-dir", type=Path, help="write results here (default: beside each input)")
    tr.add_argument("--language", help="language code (default: detect)")
    tr.add_argument("--model", help="model for in-process runs")
    tr.add_argument("--server", help="URL of a running node, e.g. http://127.0.0.1:3000")
    tr.add_argument("--api-key", help="API key for --server")

    st = sub.add_parser("status", help="show a node's health and queue")
    st.add_argument("--server", default=None, help="URL of the node (default from settings)")
    st.add_argument("--api-key")

    peers = sub.add_parser("peers", help="list a node's peers (GET /api/nodes)")
    peers.add_argument("--server", default=None, help="URL of the node (default from settings)")
    peers.add_argument("--api-key")

    sub.add_parser("convert-model", help="convert a CTranslate2 Whisper model into an MLX model", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["convert-model"]:
        from .engines.ct2_to_mlx import main as convert_main

        sys.exit(convert_main(argv[1:]))
    args = _parser().parse_args(argv)
    if args.command == "serve":
        from .server import serve

        serve(load_settings(host=args.host, port=args.port, model=args.model, engine=args.engine,
                            cluster_secret=args.cluster_secret, host_redis=args.host_redis,
                            redis_url=args.redis_url))
    elif args.command == "worker":
        from .server import run_worker

        run_worker(load_settings(model=args.model, engine=args.engine, redis_url=args.redis_url,
                                 max_concurrent_chunks=args.concurrency, discovery=False))
    elif args.command == "peers":
        sys.exit(peers(args))
    elif args.command == "transcribe":
        sys.exit(transcribe(args))
    elif args.command == "status":
        sys.exit(status(args))


def _output_path(source: Path, fmt: str, output_dir: Path | None) -> Path:
    folder = output_dir or source.parent
    return folder / f"{source.stem}.{EXTENSIONS[fmt]}"


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeRemainingColumn(),
                    console=console, transient=False, disable=not console.is_terminal)


def transcribe(args) -> int:
    fmt = normalise_format(args.format)
    missing = [f for f in args.files if not f.is_file()]
    if missing:
        console.print(f"[red]not found:[/] {', '.join(map(str, missing))}")
        return 2
    if args.output_dir:
        args.output_dir.mkdir(parents=True, exist_ok=True)
    if args.server:
        return _transcribe_remote(args, fmt)
    return asyncio.run(_transcribe_local(args, fmt))


async def _transcribe_local(args, fmt: str) -> int:
    """Run a private node in this process (own temporary data dir, no HTTP)."""
    from .audio import AudioError
    from .engines.base import EngineError
    from .jobs.records import JobOptions
    from .jobs.service import AudioTooLong
    from .node import Node

    failures = 0
    with tempfile.TemporaryDirectory(prefix="sayit-cli-") as tmp:
        settings = load_settings(data_dir=Path(tmp), model=args.model, min_free_disk_mb=0)
        node = Node(settings)
        try:
            await node.start()
        except EngineError as exc:
            console.print(f"[red]error:[/] {exc}")
            return 1
        try:
            with _progress() as progress:
                for path in args.files:
                    task = progress.add_task(path.name, total=100)
                    try:
                        language = args.language or None
                        node.service.check_language(language)
                        job = await node.service.submit(str(path), filename=path.name,
                                                        options=JobOptions(language=language,
                                                                           beam_size=settings.beam_size))
                    except (AudioError, AudioTooLong, EngineError) as exc:
                        message = str(exc) if not isinstance(exc, AudioTooLong) else "the audio is longer than the limit"
                        progress.console.print(f"[red]{path.name}:[/] {message}")
                        failures += 1
                        continue
                    async for current in node.service.watch(job.id, poll=0.2):
                        progress.update(task, completed=current.progress)
                    current = await node.store.get_job(job.id)
                    if current.status != "completed":
                        progress.console.print(f"[red]{path.name}:[/] {current.error or current.status}")
                        failures += 1
                        continue
                    transcript = await node.service.transcript(current)
                    out = _output_path(path, fmt, args.output_dir)
                    out.write_text(render(transcript, fmt), encoding="utf-8")
                    progress.console.print(f"{path.name} -> {out}")
        finally:
            await node.stop()
    return 1 if failures else 0


def _headers(api_key: str | None) -> dict[str, str]:
    headers = {"X-SayIt-Client": "sayit-node-cli"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def _error_message(response: httpx.Response) -> str:
    try:
        return response.json()["error"]["message"]
    except Exception:
        return f"HTTP {response.status_code}"


def _transcribe_remote(args, fmt: str) -> int:
    failures = 0
    base = args.server.rstrip("/")
    with httpx.Client(base_url=base, headers=_headers(args.api_key), timeout=600) as client, _progress() as progress:
        for path in args.files:
            task = progress.add_task(path.name, total=100)
            with open(path, "rb") as fh:
                data = {"async": "true", "format": fmt}
                if args.language:
                    data["language"] = args.language
                response = client.post("/api/transcribe", files={"audio": (path.name, fh)}, data=data)
            if response.status_code != 202:
                progress.console.print(f"[red]{path.name}:[/] {_error_message(response)}")
                failures += 1
                continue
            job_id = response.json()["jobId"]
            while True:
                job = client.get(f"/api/jobs/{job_id}").json()
                progress.update(task, completed=job["progress"])
                if job["status"] in ("completed", "failed", "cancelled"):
                    break
                time.sleep(0.5)
            if job["status"] != "completed":
                progress.console.print(f"[red]{path.name}:[/] {job.get('error') or job['status']}")
                failures += 1
                continue
            result = client.get(f"/api/jobs/{job_id}/result", params={"format": fmt})
            out = _output_path(path, fmt, args.output_dir)
            out.write_text(result.text, encoding="utf-8")
            progress.console.print(f"{path.name} -> {out}")
    return 1 if failures else 0


def _server_url(args) -> str:
    """--server, or the node these settings would serve."""
    if args.server:
        return args.server.rstrip("/")
    settings = load_settings()
    return f"http://{settings.host}:{settings.port}"


def peers(args) -> int:
    from rich.table import Table

    base = _server_url(args)
    try:
        nodes = httpx.get(base + "/api/nodes", headers=_headers(args.api_key), timeout=5).json()["nodes"]
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        console.print(f"[red]no node at {base}:[/] {exc}")
        return 1
    table = Table("name", "state", "engine", "model", "cores", "active", "speed", "url")
    for node in nodes:
        load = node.get("load") or {}
        table.add_row(node["name"] + (" (this node)" if node.get("self") else ""), node["state"],
                      str(node.get("engine")), str(node.get("model")), str(node.get("cores")),
                      str(load.get("activeChunks", "-")), str(load.get("speed", "-")), str(node.get("url")))
    Console().print(table)
    return 0


def status(args) -> int:
    base = _server_url(args)
    try:
        with httpx.Client(base_url=base, headers=_headers(args.api_key), timeout=5) as client:
            health = client.get("/api/health").json()
            queue = client.get("/api/queue-status")
    except httpx.HTTPError as exc:
        console.print(f"[red]no node at {base}:[/] {exc}")
        return 1
    print(json.dumps({"health": health, "queue": queue.json() if queue.status_code == 200 else _error_message(queue)},
                     indent=2))
    return 0
