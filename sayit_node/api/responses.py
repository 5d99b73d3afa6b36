"""Turning a finished (or running) job into HTTP responses."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from litestar import Response
from litestar.response import ServerSentEvent
from litestar.response.sse import ServerSentEventMessage

from ..jobs.records import COMPLETED, JobRecord
from ..jobs.service import JobService
from ..jobs.transcript import MEDIA_TYPES, render
from .errors import ApiError
from .limits import Slots, hold_stream


async def transcript_response(service: JobService, job: JobRecord, fmt: str, *, words: bool = False) -> Response:
    if job.status != COMPLETED:
        if job.status == "failed":
            raise ApiError(500, f"transcription failed: {job.error}", "transcription_failed", type="server_error")
        if job.status == "cancelled":
            raise ApiError(404, f"the job '{job.id}' was cancelled or deleted; its transcript is gone",
                           "job_deleted", param="jobId")
        raise ApiError(409, f"the job is not finished yet (status {job.status})", "job_not_finished")
    transcript = await service.transcript(job)
    return Response(render(transcript, fmt, words=words), media_type=MEDIA_TYPES[fmt], status_code=200)


async def wait_and_respond(service: JobService, job: JobRecord, fmt: str, *, words: bool = False) -> Response:
    """A synchronous request is a job the handler waits for."""
    finished = await service.wait(job.id)
    if finished is None:
        raise ApiError(500, "the job disappeared", "job_lost", type="server_error")
    return await transcript_response(service, finished, fmt, words=words)


def openai_text_stream(service: JobService, job: JobRecord, slots: Slots) -> ServerSentEvent:
    """`stream=true`: transcript.text.delta events as chunks finish, in order, then done."""

    async def events() -> AsyncIterator[ServerSentEventMessage]:
        sent = ""
        async for current in service.watch(job.id, poll=0.2):
            # Once the job is completed every chunk is done, so the prefix is the whole text.
            text = (await service.transcript(current, prefix_only=True)).text
            if text.startswith(sent) and len(text) > len(sent):
                delta = text[len(sent):]
                sent = text
                yield _sse("transcript.text.delta", {"type": "transcript.text.delta", "delta": delta})
            if current.status == COMPLETED:
                yield _sse("transcript.text.done", {"type": "transcript.text.done", "text": text})
            elif current.status in ("failed", "cancelled"):
                error = {"message": current.error or f"job {current.status}", "type": "server_error",
                         "param": None, "code": "transcription_failed"}
                yield _sse("error", {"type": "error", "error": error})

    return ServerSentEvent(hold_stream(slots, events()))


def _sse(event: str, data: dict) -> ServerSentEventMessage:
    return ServerSentEventMessage(data=json.dumps(data, ensure_ascii=False), event=event)
