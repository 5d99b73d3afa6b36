"""Files the tray sends to its own node, and the "Recent transcripts" they become.

Every call to the node goes through `sayit_node.client` on worker threads (`Background`); the
results are applied on the UI thread, so the windows never wait for the network. Progress is
polled (GET /api/jobs/{id}, which also carries the partial text) about twice a second while a
job is active. The job ids are kept in a small settings file beside config.toml, so the list
survives a restart of the tray; a job the node no longer has (deleted after its retention time,
or a node with a fresh data directory) is shown as gone instead of failing every poll.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QObject, QSettings, QTimer, Signal

from sayit_node.client import NodeError

from .background import Background
from .supervisor import State, Supervisor

log = logging.getLogger(__name__)

MAX_RECENT = 20
ACTIVE = ("pending", "uploading", "queued", "running")
SETTINGS_KEY = "recent/jobs"

# Save formats: extension -> (the node's result format, file dialog filter).
SAVE_FORMATS = {
    "txt": ("text", "Plain text (*.txt)"),
    "srt": ("srt", "SubRip subtitles (*.srt)"),
    "vtt": ("vtt", "WebVTT subtitles (*.vtt)"),
}

STATUS_TEXT = {
    "pending": "Waiting for the node",
    "uploading": "Uploading",
    "queued": "Queued",
    "running": "Transcribing",
    "completed": "Done",
    "failed": "Failed",
    "cancelled": "Cancelled",
    "gone": "No longer on the node",
}


@dataclass
class Entry:
    """One file sent by the tray. `job_id` is None until the upload was accepted."""

    key: str  # stable id in the list: the job id once known, else a local one
    filename: str
    path: str
    added: float
    job_id: str | None = None
    status: str = "pending"
    progress: float = 0.0
    completed_chunks: int = 0
    total_chunks: int = 0
    error: str | None = None
    partial_text: str = ""
    transcript: dict[str, Any] | None = field(default=None, repr=False)  # verbose_json once done
    announce: bool = False  # say "finished" once the transcript is here (it ended while watched)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def done(self) -> bool:
        return self.status == "completed" and self.transcript is not None

    @property
    def text(self) -> str:
        if self.transcript is not None:
            return str(self.transcript.get("text") or "").strip()
        return self.partial_text.strip()

    def status_text(self) -> str:
        text = STATUS_TEXT.get(self.status, self.status)
        if self.status in ("queued", "running") and self.total_chunks:
            text += f" {self.progress:.0f}%"
        if self.status == "completed" and self.transcript is None:
            text = "Fetching transcript"
        if self.status == "failed" and self.error:
            text += f": {self.error}"
        return text

    def saved(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("transcript", "partial_text", "key", "announce"):
            data.pop(name)
        return data


def state_file(config_path: Path) -> Path:
    """Where the tray keeps its own state: beside config.toml (not in it: the user edits that)."""
    return Path(config_path).with_name("desktop-state.ini")


class Transcripts(QObject):
    """The recent list and the work behind it. Signals carry an entry key."""

    changed = Signal(str)  # one entry's status/progress/text changed
    list_changed = Signal()  # entries added or removed
    finished = Signal(str)  # a job of this list completed or failed while the tray watched
    message = Signal(str, str, bool)  # (title, text, critical): something the user should hear

    def __init__(self, supervisor: Supervisor, settings_path: Path, *, poll_interval: float = 0.5,
                 background: Background | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.sup = supervisor
        self.bg = background or Background(workers=3, parent=self)
        self.settings = QSettings(str(settings_path), QSettings.Format.IniFormat)
        self.entries: list[Entry] = []
        self._polling = False
        self._fetching: set[str] = set()
        self._counter = 0
        self._load()
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.tick)
        self.timer.start(int(poll_interval * 1000))
        self.sup.state_changed.connect(lambda *_: self.tick())

    # --- the list ----------------------------------------------------------------------------
    def _load(self) -> None:
        raw = self.settings.value(SETTINGS_KEY, "[]")
        try:
            items = json.loads(raw if isinstance(raw, str) else "[]")
        except ValueError:
            log.warning("recent transcripts in %s are unreadable; starting empty", self.settings.fileName())
            items = []
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, dict) or not item.get("job_id"):
                continue
            try:
                entry = Entry(key=str(item["job_id"]), filename=str(item.get("filename") or item["job_id"]),
                              path=str(item.get("path") or ""), added=float(item.get("added") or 0),
                              job_id=str(item["job_id"]), status=str(item.get("status") or "queued"),
                              progress=float(item.get("progress") or 0), error=item.get("error"))
            except (TypeError, ValueError):
                continue
            if entry.status in ("pending", "uploading"):
                continue  # an upload the last run never finished: there is no job to follow
            self.entries.append(entry)
        self.entries = self.entries[:MAX_RECENT]

    def save(self) -> None:
        """Entries with a job id, newest first (uploads in flight have nothing to come back to)."""
        items = [e.saved() for e in self.entries if e.job_id]
        self.settings.setValue(SETTINGS_KEY, json.dumps(items))
        self.settings.sync()

    def get(self, key: str) -> Entry | None:
        for entry in self.entries:
            if entry.key == key:
                return entry
        return None

    def by_job(self, job_id: str) -> Entry | None:
        for entry in self.entries:
            if entry.job_id == job_id:
                return entry
        return None

    def job_ids(self) -> set[str]:
        return {e.job_id for e in self.entries if e.job_id}

    def remove(self, key: str) -> None:
        entry = self.get(key)
        if entry is None:
            return
        self.entries.remove(entry)
        self.save()
        self.list_changed.emit()

    # --- adding files ------------------------------------------------------------------------
    def add_files(self, paths: list[str | Path]) -> list[Entry]:
        """Queue files for the tray's node (sent at once when it runs, else when it starts)."""
        added = []
        for raw in paths:
            path = Path(raw)
            if not path.is_file():
                self.message.emit("Cannot transcribe", f"{path} is not a file.", True)
                continue
            self._counter += 1
            entry = Entry(key=f"local-{os.getpid()}-{self._counter}", filename=path.name,
                          path=str(path), added=time.time())
            self.entries.insert(0, entry)
            added.append(entry)
        if added:
            self._trim()
            self.list_changed.emit()
            self.tick()
        return added

    def _trim(self) -> None:
        keep = []
        for entry in self.entries:
            if len(keep) < MAX_RECENT or entry.active:
                keep.append(entry)
        self.entries = keep

    def _upload(self, entry: Entry) -> None:
        client = self.sup.client
        entry.status = "uploading"
        self.changed.emit(entry.key)

        def call():
            return client.submit(entry.path)

        def done(result, error) -> None:
            if entry not in self.entries:
                return
            if error is not None:
                entry.status = "failed"
                entry.error = error.message if isinstance(error, NodeError) else str(error)
                self.changed.emit(entry.key)
                self.message.emit("Transcription failed", f"{entry.filename}: {entry.error}", True)
                return
            entry.job_id = str(result["jobId"])
            entry.key = entry.job_id
            entry.status = str(result.get("status") or "queued")
            entry.total_chunks = int(result.get("totalChunks") or 0)
            self.save()
            self.list_changed.emit()  # the key changed

        self.bg.submit(call, done)

    # --- following the jobs ------------------------------------------------------------------
    def tick(self) -> None:
        if self.sup.state != State.RUNNING or self.sup.client is None or not self.sup.responding:
            return
        for entry in self.entries:
            if entry.status == "pending":
                self._upload(entry)
        if not self._polling:
            watched = [e for e in self.entries if e.job_id and e.status in ("queued", "running", "unknown")]
            if watched:
                self._poll(watched)
        for entry in self.entries:
            if entry.job_id and entry.status == "completed" and entry.transcript is None:
                self._fetch_transcript(entry)

    def _poll(self, watched: list[Entry]) -> None:
        self._polling = True
        client = self.sup.client
        ids = [e.job_id for e in watched]

        def call():
            out: dict[str, Any] = {}
            for job_id in ids:
                try:
                    out[job_id] = client.job(job_id)
                except NodeError as exc:
                    out[job_id] = exc
                    if exc.status is None:  # the node is not answering: try again next tick
                        break
            return out

        self.bg.submit(call, self._polled)

    def _polled(self, results, error) -> None:
        self._polling = False
        if error is not None:
            log.debug("polling jobs failed: %s", error)
            return
        changed_any = False
        for job_id, job in (results or {}).items():
            entry = self.by_job(job_id)
            if entry is None:
                continue
            before = entry.status
            if isinstance(job, NodeError):
                if job.status == 404:
                    entry.status, entry.error = "gone", job.message
                    self.changed.emit(entry.key)
                    changed_any = True
                continue
            entry.status = str(job.get("status") or entry.status)
            entry.progress = float(job.get("progress") or 0)
            entry.completed_chunks = int(job.get("completedChunks") or 0)
            entry.total_chunks = int(job.get("totalChunks") or 0)
            entry.error = job.get("error")
            if job.get("partialText"):
                entry.partial_text = str(job["partialText"])
            if entry.status != before:
                changed_any = True
                if entry.status == "failed":
                    self.finished.emit(entry.key)
            self.changed.emit(entry.key)
            if entry.status == "completed" and entry.transcript is None:
                entry.announce = before in ACTIVE
                self._fetch_transcript(entry)
        if changed_any:
            self.save()

    def _fetch_transcript(self, entry: Entry) -> None:
        if entry.job_id in self._fetching:
            return
        self._fetching.add(entry.job_id)
        client, job_id = self.sup.client, entry.job_id

        def done(result, error) -> None:
            self._fetching.discard(job_id)
            if entry not in self.entries:
                return
            if error is not None:
                if isinstance(error, NodeError) and error.status == 404:
                    entry.status, entry.error = "gone", error.message
                    self.save()
                    self.changed.emit(entry.key)
                return  # else: the next tick tries again
            entry.transcript = result
            self.changed.emit(entry.key)
            if entry.announce:
                entry.announce = False
                self.finished.emit(entry.key)

        self.bg.submit(lambda: client.transcript(job_id), done)

    # --- using a transcript ------------------------------------------------------------------
    def save_as(self, key: str, ext: str, target: str | Path,
                on_done: Callable[[Path | None, str | None], None] | None = None) -> None:
        """Write the transcript in `ext` (txt, srt, vtt) as the node renders it, to `target`."""
        entry = self.get(key)
        fmt = SAVE_FORMATS[ext][0]
        if entry is None or not entry.job_id or self.sup.client is None:
            if on_done:
                on_done(None, "the node is not running")
            return
        client, job_id, target = self.sup.client, entry.job_id, Path(target)

        def call():
            text = client.result(job_id, fmt)
            # Written whole or not at all: a reader never sees half a file.
            fd, tmp = tempfile.mkstemp(prefix=".sayit-", suffix=f".{ext}", dir=target.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                    fh.write(text)
                os.replace(tmp, target)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
            return target

        def done(result, error) -> None:
            if error is not None:
                reason = error.message if isinstance(error, NodeError) else (
                    getattr(error, "strerror", None) or str(error))
                self.message.emit("Could not save the transcript", f"{target.name}: {reason}", True)
            if on_done:
                on_done(result, None if error is None else str(error))

        self.bg.submit(call, done)

    def close(self) -> None:
        self.timer.stop()
        self.bg.close()
