"""SayIt's job API: submit with progress, watch, fetch, cancel."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from litestar import Request, Response, delete, get, post
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.response import ServerSentEvent
from litestar.response.sse import ServerSentEventMessage
from redis.exceptions import RedisError

from ..jobs.records import JobOptions
from ..jobs.service import JobService
from ..jobs.transcript import normalise_format
from ..federation.link import describe_redis_error
from .errors import ApiError, error_body
from .limits import hold_stream
from .models import TRANSCRIPT_RESPONSES, JobAccepted, JobList, JobView, errors, event_stream, to_model
from .responses import transcript_response, wait_and_respond
from .upload_form import TRANSCRIBE_FORM
from .uploads import check_model, parse_bool, parse_language, parse_speakers, read_upload, submit


async def _job_or_404(service: JobService, job_id: str):
    job = await service.store.get_job(job_id)
    if job is None:
        raise ApiError(404, f"no job '{job_id}'", "job_not_found", param="jobId")
    return job


@post("/api/transcribe", status_code=200, summary="Transcribe an upload (field 'audio'); async=true returns a job",
      operation_class=TRANSCRIBE_FORM.operation_class(),
      responses={**TRANSCRIPT_RESPONSES, 202: ResponseSpec(JobAccepted, description="async=true: the job"),
                 **errors(400, 401, 403, 404, 413, 429, 503)})
async def transcribe(request: Request, state: State) -> Response:
    service: JobService = state.node.service
    async with read_upload(request, TRANSCRIBE_FORM) as upload:
        check_model(service, upload.get("model"))
        fmt = normalise_format(upload.get("format") or upload.get("response_format"))
        if fmt is None:
            raise ApiError(400, "'format' must be one of json, text (txt), srt, verbose_json, vtt, diarized_json",
                           "invalid_value", param="format")
        is_async = parse_bool(upload.get("async"), "async")
        words = parse_bool(upload.get("words"), "words")
        options = JobOptions(language=parse_language(service, upload.get("language")),
                             prompt=upload.get("prompt") or None, word_timestamps=words,
                             beam_size=service.beam_size,
                             **parse_speakers(upload, fmt == "diarized_json"
                                              or parse_bool(upload.get("diarize"), "diarize")))
        job = await submit(service, upload, options)
    if is_async:
        body = JobAccepted(
            job_id=job.id,
            status=job.status,
            status_url=f"/api/jobs/{job.id}",
            result_url=f"/api/jobs/{job.id}/result",
            events_url=f"/api/jobs/{job.id}/events",
            estimated_time=service.estimate_seconds(job.total_chunks, job.duration),
            duration=round(job.duration, 3),
            total_chunks=job.total_chunks,
        )
        return Response(body, status_code=202)
    return await wait_and_respond(service, job, fmt, words=words)


@get("/api/jobs", summary="Recent jobs", responses=errors(400, 401, 503))
async def list_jobs(state: State, limit: int = 100) -> JobList:
    service: JobService = state.node.service
    jobs = await service.store.list_jobs(limit=max(1, min(limit, 1000)))
    return to_model({"jobs": [await service.status(job, partial=False) for job in jobs]}, JobList)


@get("/api/jobs/{job_id:str}", summary="A job's status and progress", responses=errors(400, 401, 404, 503))
async def get_job(state: State, job_id: str) -> JobView:
    service: JobService = state.node.service
    return to_model(await service.status(await _job_or_404(service, job_id)), JobView)


@get("/api/jobs/{job_id:str}/result", summary="A finished job's transcript (format: json, verbose_json, text, srt, vtt)",
     responses={**TRANSCRIPT_RESPONSES, **errors(400, 401, 404, 409, 500, 503)})
async def get_result(state: State, job_id: str, format: str = "json") -> Response:
    service: JobService = state.node.service
    fmt = normalise_format(format)
    if fmt is None:
        raise ApiError(400, "'format' must be one of json, text (txt), srt, verbose_json, vtt, diarized_json",
                       "invalid_value",
                       param="format")
    job = await _job_or_404(service, job_id)
    return await transcript_response(service, job, fmt, words=job.options.word_timestamps)


@get("/api/jobs/{job_id:str}/events",
     summary="Server-sent events until the job ends: 'progress' (data: a JobView), then 'completed', "
             "'failed' or 'cancelled' (data: {jobId, status})",
     responses={200: event_stream(JobView, "text/event-stream: each 'data' is a JSON JobView ('progress'), "
                                           "the last one {jobId, status}"),
                **errors(400, 401, 404, 429, 503)})
async def job_events(state: State, job_id: str) -> ServerSentEvent:
    service: JobService = state.node.service
    await _job_or_404(service, job_id)

    async def events() -> AsyncIterator[ServerSentEventMessage]:
        try:
            async for job in service.watch(job_id):
                yield ServerSentEventMessage(data=json.dumps(await service.status(job)), event="progress")
                if job.status in ("completed", "failed", "cancelled"):
                    yield ServerSentEventMessage(data=json.dumps({"jobId": job_id, "status": job.status}),
                                                 event=job.status)
        except RedisError as exc:  # the cluster's Redis went away mid-stream: say so and end it
            message = state.node.cluster_problem or f"the cluster's Redis is unavailable ({describe_redis_error(exc)})"
            yield ServerSentEventMessage(data=json.dumps(error_body(message, "cluster_unavailable", type="server_error")),
                                         event="error")

    return ServerSentEvent(hold_stream(state.stream_slots, events()))


@delete("/api/jobs/{job_id:str}", status_code=200,
        summary="Cancel or delete a job: its audio, segments and transcript are deleted at once",
        responses=errors(400, 401, 403, 404, 503))
async def cancel_job(state: State, job_id: str) -> JobView:
    service: JobService = state.node.service
    await _job_or_404(service, job_id)
    job = await service.store.cancel_job(job_id)
    service.queued.release(job_id)
    return to_model(await service.status(job, partial=False), JobView)


ROUTES = [transcribe, list_jobs, get_job, get_result, job_events, cancel_job]
