"""OpenAI-compatible routes: /v1/audio/transcriptions, /v1/audio/translations, /v1/models."""

from __future__ import annotations

from litestar import Request, Response, get, post
from litestar.datastructures import State

from ..jobs.records import JobOptions
from ..jobs.service import JobService
from ..jobs.transcript import normalise_format
from .errors import ApiError
from .models import TRANSCRIPT_RESPONSES, ModelEntry, ModelList, errors
from .responses import openai_text_stream, wait_and_respond
from .upload_form import OPENAI_FORM
from .uploads import (OPENAI_MODEL_ALIAS, check_model, parse_bool, parse_granularities, parse_language,
                      parse_speakers, parse_temperature, read_upload, submit)

async def _audio_endpoint(request: Request, service: JobService, task: str) -> Response:
    async with read_upload(request, OPENAI_FORM) as upload:
        check_model(service, upload.get("model"))
        fmt = normalise_format(upload.get("response_format"))
        if fmt is None:
            raise ApiError(400, "'response_format' must be one of json, text, srt, verbose_json, vtt, diarized_json",
                           "invalid_value", param="response_format")
        granularities = parse_granularities(upload)
        stream = parse_bool(upload.get("stream"), "stream")
        if stream:
            request.app.state.stream_slots.check()  # before any work is queued
        options = JobOptions(
            task=task,
            language=parse_language(service, upload.get("language")),  # the spoken language, also for translate
            prompt=upload.get("prompt") or None,
            temperature=parse_temperature(upload.get("temperature")),
            word_timestamps="word" in granularities,
            beam_size=service.beam_size,
            # diarized_json implies diarization; diarize=true adds speakers to the other formats.
            **parse_speakers(upload, fmt == "diarized_json" or parse_bool(upload.get("diarize"), "diarize")),
        )
        job = await submit(service, upload, options)
    if stream:
        return openai_text_stream(service, job, request.app.state.stream_slots)
    return await wait_and_respond(service, job, fmt, words=options.word_timestamps)


@post("/v1/audio/transcriptions", status_code=200, summary="Transcribe audio (OpenAI-compatible)",
      operation_class=OPENAI_FORM.operation_class(),
      responses={**TRANSCRIPT_RESPONSES, **errors(400, 401, 403, 404, 413, 429, 503)})
async def transcriptions(request: Request, state: State) -> Response:
    return await _audio_endpoint(request, state.node.service, "transcribe")


@post("/v1/audio/translations", status_code=200,
      summary="Translate audio to English (OpenAI-compatible; needs a multilingual model)",
      operation_class=OPENAI_FORM.operation_class(),
      responses={**TRANSCRIPT_RESPONSES, **errors(400, 401, 403, 404, 413, 429, 503)})
async def translations(request: Request, state: State) -> Response:
    return await _audio_endpoint(request, state.node.service, "translate")


@get("/v1/models", summary="Models this node serves", responses=errors(401))
async def list_models(state: State) -> ModelList:
    created = int(state.node.started_at)
    names = [OPENAI_MODEL_ALIAS, state.node.service.model_name]
    return ModelList(object="list", data=[ModelEntry(id=n, object="model", created=created, owned_by="sayit") for n in names])


ROUTES = [transcriptions, translations, list_models]
