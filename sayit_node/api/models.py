"""The typed contract: one response model per route body, so /schema/openapi.json describes them.

msgspec Structs (Litestar's native model type) with camelCase names on the wire, as the API
has always sent them. Handlers that build a dict (the job service, the node) turn it into its
model with `to_model`, which also checks the dict has the promised shape.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar, get_args

import msgspec
from litestar.openapi.datastructures import ResponseSpec

from ..jobs.records import JobStatus

T = TypeVar("T")


def to_model(data: Any, model: type[T]) -> T:
    return msgspec.convert(data, model)


class Camel(msgspec.Struct, rename="camel", kw_only=True):
    pass


# --- errors ----------------------------------------------------------------------------------

class ErrorDetail(msgspec.Struct):
    message: str
    type: str
    param: str | None
    code: str


class ErrorBody(msgspec.Struct):
    """Every failure: {"error": {...}} as OpenAI sends it."""

    error: ErrorDetail


class AudioTooLongBody(ErrorBody, kw_only=True, rename="camel"):
    """413: upload_too_large states the size limit in its message; audio_too_long adds both
    durations in minutes (the unit of the setting), the audio's with its fraction."""

    duration: float | None = None
    max_duration: float | None = None


class BusyBody(ErrorBody, kw_only=True, rename="camel"):
    """429 (with Retry-After): queue_full adds the audio minutes waiting and the limit;
    too_many_uploads and too_many_streams carry the error only."""

    queued_minutes: float | None = None
    max_queued_minutes: float | None = None


_ERROR_BODIES = {
    413: (AudioTooLongBody, " (upload_too_large or audio_too_long; the message states the limit; audio_too_long "
                           "adds duration and maxDuration in minutes)"),
    429: (BusyBody, " (rate_limit_error, with a Retry-After header; queue_full adds queuedMinutes and "
                    "maxQueuedMinutes)"),
    503: (ErrorBody, " (cluster_unavailable while the cluster's Redis is unreachable, with a Retry-After "
                     "header; on uploads also insufficient_storage)"),
}


def errors(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI response specs for the error statuses a route can answer with."""
    specs = {}
    for status in statuses:
        body, more = _ERROR_BODIES.get(status, (ErrorBody, ""))
        specs[status] = ResponseSpec(data_container=body, generate_examples=False,
                                     description="An OpenAI-shaped error" + more)
    return specs


# --- transcripts -----------------------------------------------------------------------------

class SegmentOut(msgspec.Struct):
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    speaker: str | None = None  # "Speaker 1", ... when the job was diarized


class WordOut(msgspec.Struct):
    word: str
    start: float
    end: float
    speaker: str | None = None


class Transcript(msgspec.Struct, kw_only=True):
    """A JSON transcript: format json is {text}; verbose_json adds the other fields
    (`words` only with word timestamps)."""

    text: str
    task: str | None = None
    language: str | None = None
    duration: float | None = None
    # diarized_json segments are {type: "transcript.text.segment", id: "seg_N", start, end, text, speaker}
    segments: list[SegmentOut] | None = None
    words: list[WordOut] | None = None
    speakers: int | None = None  # verbose_json of a diarized job: how many speakers were found


# Server-sent events: `event: progress` with a JobView as data, then one closing event.
def event_stream(data: type, description: str) -> ResponseSpec:
    return ResponseSpec(data_container=data, generate_examples=False, media_type="text/event-stream",
                        description=description)


TRANSCRIPT_RESPONSES = {
    200: ResponseSpec(
        data_container=Transcript, generate_examples=False,
        description="The transcript: json, verbose_json and diarized_json as JSON; text, srt and vtt as "
                    "text/plain, application/x-subrip and text/vtt. Diarized jobs (diarize=true or "
                    "diarized_json) carry a speaker on segments and words, SRT cues 'Speaker 1: ...' "
                    "and VTT voice tags '<v Speaker 1>'",
    ),
}


# --- jobs ------------------------------------------------------------------------------------

class JobView(Camel):
    """A job as GET /api/jobs/{id} and its progress events show it (times in seconds)."""

    job_id: str
    status: JobStatus
    progress: float  # percent
    completed_chunks: int
    total_chunks: int
    failed_chunks: int
    eta_seconds: float | None
    language: str | None
    duration: float
    model: str
    filename: str
    partial_text: str | None  # the transcript so far, in order (null in the job list)
    error: str | None
    warning: str | None
    created_at: float  # Unix time
    started_at: float | None
    finished_at: float | None
    diarize: bool = False  # speaker labels were asked for (they are in the result formats)
    processed_seconds: float = 0.0  # audio seconds transcribed so far (what progress bars count)


class JobList(Camel):
    jobs: list[JobView]


class JobAccepted(Camel):
    """202 from POST /api/transcribe with async=true."""

    job_id: str
    status: JobStatus
    status_url: str
    result_url: str
    events_url: str
    estimated_time: float  # seconds
    duration: float  # seconds of audio
    total_chunks: int


# --- node and cluster ------------------------------------------------------------------------

class Health(Camel):
    status: Literal["ok", "degraded"]  # degraded: up, but the cluster's Redis is unreachable (see reason)
    node_id: str
    name: str
    version: str
    engine: str
    model: str
    languages: list[str]  # language codes the model can transcribe
    reason: str | None = None  # why the status is "degraded" (the cluster's Redis is unreachable)


class QueueStatus(Camel):
    jobs: dict[str, int]  # by job status
    chunks: dict[str, int]  # by chunk status
    active_chunks: int
    max_concurrent_chunks: int
    speed: float  # audio seconds per wall second
    chunks_done_here: int


class NodeLoad(Camel):
    cpu: float
    memory: int  # bytes (RSS)
    active_chunks: int
    queued_chunks: int
    speed: float
    chunks_done: int


# A node's own lifecycle (starting, up, stopping, stopped) as it reports it, or what this node
# concluded of a peer: down (no heartbeat / health check), incompatible (another protocol);
# degraded: up, but its cluster's Redis is unreachable (it takes no new work).
NodeState = Literal["starting", "up", "degraded", "stopping", "stopped", "down", "incompatible"]
NODE_STATES = frozenset(get_args(NodeState))


class NodeInfo(Camel):
    """This node or a peer. Peers seen over mDNS only carry what their advert says."""

    id: str
    name: str = ""
    state: NodeState = "up"
    version: str | None = None
    protocol: int | None = None
    engine: str | None = None
    model: str | None = None
    cores: int | None = None
    max_concurrent_chunks: int | None = None
    device: str | None = None  # cpu, cuda, metal
    hosts_redis: bool = False
    load: NodeLoad | None = None
    last_seen: str | None = None  # ISO 8601
    url: str | None = None  # None for a worker-only process (no API)
    role: str = "node"  # "node" (API + workers) or "worker" (`sayit-node worker`)
    is_self: bool = msgspec.field(default=False, name="self")


class NodeList(Camel):
    nodes: list[NodeInfo]
    warning: str | None = None  # set while the cluster's Redis is unreachable (peers unknown)


class Diagnose(Camel):
    node: dict[str, Any]
    engine: str
    model: str
    multilingual: bool
    device: str
    compute_type: str
    beam_size: int
    versions: dict[str, Any]
    cores: int | None
    memory: dict[str, int]
    disk: dict[str, Any]
    limits: dict[str, Any]
    mode: str
    store: dict[str, Any]
    warnings: list[str]
    # mDNS: whether adverts are signed, and adverts ignored (another cluster, forged, stale)
    discovery: dict[str, Any] | None = None
    device_setting: str = "auto"  # SAYIT_DEVICE: auto | cpu | cuda
    cuda_devices: int = 0  # CUDA GPUs CTranslate2 sees
    batch_size: int = 1  # chunks per engine call


class Stopping(Camel):
    status: Literal["stopping"]


# --- OpenAI models list ----------------------------------------------------------------------

class ModelEntry(msgspec.Struct):
    id: str
    object: str
    created: int
    owned_by: str


class ModelList(msgspec.Struct):
    object: str
    data: list[ModelEntry]


# --- the bodies that are not JSON ------------------------------------------------------------

# A route has one body model per status in Litestar; the transcript routes also answer 200 with
# text, SRT or VTT (format / response_format), and /v1 with a server-sent stream (stream=true).
TEXT_BODIES = {
    "text/plain": "format text: the transcript as plain text",
    "application/x-subrip": "format srt: numbered SubRip cues",
    "text/vtt": "format vtt: WebVTT cues",
}
TRANSCRIPT_ROUTES = {
    ("/api/jobs/{job_id}/result", "get"): False, ("/api/transcribe", "post"): False,
    ("/v1/audio/transcriptions", "post"): True, ("/v1/audio/translations", "post"): True,  # True: streams
}


def describe_other_bodies(openapi) -> None:
    """Add the text transcript media types (and the /v1 stream) to the 200 of the transcript routes."""
    from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Schema

    for (path, method), streams in TRANSCRIPT_ROUTES.items():
        item = (openapi.paths or {}).get(path)
        operation = getattr(item, method, None) if item is not None else None
        response = (operation.responses or {}).get("200") if operation is not None else None
        if response is None or response.content is None:
            continue
        for media_type, description in TEXT_BODIES.items():
            schema = Schema(type=OpenAPIType.STRING, description=description)
            response.content[media_type] = OpenAPIMediaType(schema=schema)
        if streams:
            response.content["text/event-stream"] = OpenAPIMediaType(schema=Schema(
                type=OpenAPIType.STRING,
                description="stream=true: 'transcript.text.delta' events ({type, delta}) as parts finish, then "
                            "'transcript.text.done' ({type, text}) or 'error' ({type, error})"))
