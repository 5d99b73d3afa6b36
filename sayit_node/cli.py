"""`sayit-node serve | worker | transcribe | status | peers`.

A user error (a missing file, unreadable audio, no node at --server, a bad setting) ends with
one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from .client import NodeClient, NodeError, local_url
from .config import Settings, SettingsError, load_settings
from .jobs.transcript import FORMATS, FORMAT_ALIASES, normalise_format, render

console = Console(stderr=True)
EXTENSIONS = {"text": "txt", "json": "json", "verbose_json": "json", "srt": "srt", "vtt": "vtt", "diarized_json": "json"}


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

    tr = sub.add_parser("transcribe", help="transcribe files (in-process, or on a running node with --server)",
                        description="Print the transcript to stdout (or write it with -o / --output-dir).")
    tr.add_argument("files", nargs="+", type=Path)
    tr.add_argument("--format", default="text", choices=[*FORMATS, *FORMAT_ALIASES])
    tr.add_argument("-o", "--output", type=Path, help="write the transcript to this file (one input only)")
    tr.add_argument("--output-dir", type=Path, help="write NAME.<format> files here, one per input")
    tr.add_argument("--language", help="language code (default: detect)")
    tr.add_argument("--diarize", action="store_true", help="label speakers (Speaker 1, ...); on for diarized_json")
    tr.add_argument("--speakers", type=int, help="how many speakers there are, if known (implies --diarize)")
    tr.add_argument("--model", help="model for in-process runs")
    tr.add_argument("--server", help="URL of a running node, e.g. http://127.0.0.1:3000")
    tr.add_argument("--api-key", help="API key for --server (default: the first of SAYIT_API_KEYS)")

    for name, text in (("status", "show a node's health and queue"), ("peers", "list a node's peers")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--server", default=None, help="URL of the node (default from settings)")
        cmd.add_argument("--api-key", help="API key (default: the first of SAYIT_API_KEYS)")
        cmd.add_argument("--json", action="store_true", help="print JSON for programs")

    secret = sub.add_parser("secret", help="print a new cluster secret (7 random words, ~90 bits)",
                            description="Print a new cluster secret for SAYIT_CLUSTER_SECRET: 7 words from the "
                                        "EFF large wordlist (~90 bits). Give every node of the cluster the same one.")
    secret.add_argument("--redis-password", action="store_true",
                        help="instead, print the password of the hosted Redis derived from this node's "
                             "SAYIT_CLUSTER_SECRET (for a hand-written REDIS_URL)")
    sub.add_parser("convert-model", help="convert a CTranslate2 Whisper model into an MLX model", add_help=False)
    return parser


def fail(message: str) -> None:
    """One line on stderr (never wrapped), for a user error."""
    print(f"sayit-node: error: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["convert-model"]:
        from .engines.ct2_to_mlx import main as convert_main

        sys.exit(convert_main(argv[1:]))
    args = _parser().parse_args(argv)
    try:
        sys.exit(run(args))
    except (NodeError, SettingsError) as exc:
        fail(str(exc))
        sys.exit(1)
    except OSError as exc:  # e.g. -o into a folder that does not exist
        fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


def _checked(settings: Settings) -> Settings:
    """A weak cluster secret stops the node before it starts (one line, see passphrase.py)."""
    from .passphrase import secret_problem

    problem = secret_problem(settings.cluster_secret)
    if problem:
        raise SettingsError(problem)
    return settings


def run(args) -> int:
    if args.command == "secret":
        if args.redis_password:
            from .federation.cluster_keys import derive_redis_password

            password = derive_redis_password(load_settings().cluster_secret)
            if password is None:
                raise SettingsError("no cluster secret set (SAYIT_CLUSTER_SECRET): an open cluster's Redis has no password")
            print(password)
            return 0
        from .passphrase import generate_secret

        print(generate_secret())
        return 0
    if args.command == "serve":
        from .server import serve

        serve(_checked(load_settings(host=args.host, port=args.port, model=args.model, engine=args.engine,
                                     cluster_secret=args.cluster_secret, host_redis=args.host_redis,
                                     redis_url=args.redis_url)))
        return 0
    if args.command == "worker":
        from .server import run_worker

        run_worker(_checked(load_settings(model=args.model, engine=args.engine, redis_url=args.redis_url,
                                          max_concurrent_chunks=args.concurrency, discovery=False)))
        return 0
    return {"peers": peers, "transcribe": transcribe, "status": status}[args.command](args)


def _output_path(source: Path, fmt: str, output_dir: Path | None) -> Path:
    folder = output_dir or source.parent
    return folder / f"{source.stem}.{EXTENSIONS[fmt]}"


def _emit(args, fmt: str, source: Path, text: str, console) -> None:
    """The transcript of `source`: to -o, into --output-dir, or to stdout."""
    if args.output or args.output_dir:
        out = args.output or _output_path(source, fmt, args.output_dir)
        out.write_text(text, encoding="utf-8")
        console.print(f"{source.name} -> {out}", soft_wrap=True)
        return
    if len(args.files) > 1:
        sys.stdout.write(f"==> {source} <==\n")
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeRemainingColumn(),
                    console=console, transient=False, disable=not console.is_terminal)


def transcribe(args) -> int:
    fmt = normalise_format(args.format)
    for path in args.files:
        if not path.exists():
            fail(f"no such file: {path}")
            return 2
        if not path.is_file():
            fail(f"not a file: {path}")
            return 2
    if args.output and len(args.files) > 1:
        fail("-o writes one transcript: give one input file, or use --output-dir")
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

    # The private node's log lines (e.g. taskiq's on stop) are not for the terminal: stderr
    # carries the progress bar and one line per problem.
    logging.getLogger().addHandler(logging.NullHandler())
    failures = 0
    with tempfile.TemporaryDirectory(prefix="sayit-cli-") as tmp:
        settings = load_settings(data_dir=Path(tmp), model=args.model, min_free_disk_mb=0)
        node = Node(settings)
        try:
            await node.start()
        except EngineError as exc:
            fail(str(exc))
            return 1
        try:
            with _progress() as progress:
                for path in args.files:
                    task = progress.add_task(path.name, total=None)
                    try:
                        language = args.language or None
                        node.service.check_language(language)
                        job = await node.service.submit(str(path), filename=path.name,
                                                        options=JobOptions(language=language,
                                                                           beam_size=settings.beam_size,
                                                                           **_diarize_options(args, fmt)))
                    except (AudioError, AudioTooLong, EngineError) as exc:
                        message = str(exc) if not isinstance(exc, AudioTooLong) else "the audio is longer than the limit"
                        fail(f"{path.name}: {message}")
                        failures += 1
                        continue
                    # The bar counts audio seconds transcribed (chunks differ in length).
                    progress.update(task, total=max(job.duration, 0.1), completed=0)
                    async for current in node.service.watch(job.id, poll=0.2):
                        view = await node.service.status(current, partial=False)
                        progress.update(task, completed=view["processedSeconds"])
                    current = await node.store.get_job(job.id)
                    if current.status != "completed":
                        fail(f"{path.name}: {current.error or current.status}")
                        failures += 1
                        continue
                    transcript = await node.service.transcript(current)
                    _emit(args, fmt, path, render(transcript, fmt), progress.console)
        finally:
            await node.stop()
    return 1 if failures else 0


def _diarize_options(args, fmt: str) -> dict:
    diarize = bool(args.diarize or args.speakers or fmt == "diarized_json")
    return {"diarize": diarize, "speakers": args.speakers if diarize else None}


def _client(args, timeout: float = 30.0) -> NodeClient:
    """A client for --server (or the node these settings serve), with --api-key or the first
    of the node's own API keys."""
    settings: Settings | None = None
    if not args.server or not args.api_key:
        settings = load_settings()
    base = args.server or local_url(settings.host, settings.port)
    api_key = args.api_key or (settings.api_keys[0] if settings and settings.api_keys else None)
    return NodeClient(base, api_key, timeout=timeout, client_name="sayit-node-cli")


def _transcribe_remote(args, fmt: str) -> int:
    failures = 0
    with _client(args, timeout=60) as client, _progress() as progress:
        client.health()  # "no node at ..." once, before any upload
        for path in args.files:
            task = progress.add_task(path.name, total=None)
            try:
                submitted = client.submit(path, language=args.language,
                                          diarize=_diarize_options(args, fmt)["diarize"], speakers=args.speakers)
                job_id = submitted["jobId"]
                # The bar counts audio seconds transcribed (chunks differ in length).
                progress.update(task, total=max(float(submitted.get("duration") or 0.0), 0.1), completed=0)
                job = client.wait(job_id, on_update=lambda j: progress.update(
                    task, completed=j.get("processedSeconds", j["progress"] * j.get("duration", 0) / 100)))
                if job["status"] != "completed":
                    raise NodeError(job.get("error") or job["status"])
                text = client.result(job_id, fmt)
            except NodeError as exc:
                if exc.status is None and "no node" in exc.message:
                    raise
                fail(f"{path.name}: {exc}")
                failures += 1
                continue
            _emit(args, fmt, path, text, progress.console)
    return 1 if failures else 0


def _table(*columns: str, **kwargs):
    from rich.table import Table

    return Table(*columns, box=None, pad_edge=False, header_style="bold", **kwargs)


def _print_table(table) -> None:
    # At most 80 columns: long cells wrap inside their column instead.
    out = Console()
    out.width = min(out.width, 80)
    out.print(table)


def peers(args) -> int:
    with _client(args, timeout=5) as client:
        nodes = client.nodes()
    if args.json:
        print(json.dumps(nodes, indent=2))
        return 0
    table = _table("node", "state", "engine", "model", "cores", "chunks", caption="* this node; chunks: active/queued",
                   caption_justify="left")
    table.add_column("url", no_wrap=True, min_width=max([len(str(n.get("url") or "")) for n in nodes] + [3]))
    for node in nodes:
        load = node.get("load") or {}
        table.add_row(str(node.get("name")) + (" *" if node.get("self") else ""), str(node.get("state", "-")),
                      str(node.get("engine", "-")), str(node.get("model", "-")), str(node.get("cores", "-")),
                      f"{load.get('activeChunks', 0)}/{load.get('queuedChunks', 0)}", str(node.get("url") or "-"))
    _print_table(table)
    return 0


def status(args) -> int:
    with _client(args, timeout=5) as client:
        health = client.health()
        try:
            queue: dict | str = client.queue_status()
        except NodeError as exc:  # e.g. an API key is needed: health alone still says a lot
            if exc.status is None:
                raise
            queue = str(exc)
    if args.json:
        print(json.dumps({"health": health, "queue": queue}, indent=2))
        return 0
    table = _table("", "", show_header=False)
    table.add_row("node", f"{health.get('name')} ({client.base_url})")
    table.add_row("engine", f"{health.get('engine')}, model {health.get('model')}, version {health.get('version')}")
    if health.get("status") == "degraded":
        table.add_row("DEGRADED", str(health.get("reason") or ""))
    if isinstance(queue, dict):
        jobs, chunks = queue.get("jobs") or {}, queue.get("chunks") or {}
        table.add_row("jobs", ", ".join(f"{jobs.get(k, 0)} {k}" for k in ("queued", "running", "completed", "failed")))
        table.add_row("chunks", ", ".join(f"{chunks.get(k, 0)} {k}" for k in ("queued", "running", "done")))
        table.add_row("working", f"{queue.get('activeChunks', 0)} of {queue.get('maxConcurrentChunks', '?')} slots, "
                                 f"{float(queue.get('speed') or 0):.1f} audio-s/s recently")
    else:
        table.add_row("queue", queue)
    _print_table(table)
    return 0
