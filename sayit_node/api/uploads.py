"""Shared by every upload route: read the multipart form, validate, submit the job.

The multipart body is streamed into a spooled temporary file (RAM stays flat, the size cap
applies while streaming; text fields are capped, see forms.py); PyAV decodes straight from
that file, and the file is closed (deleted) on every path.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass

from litestar import Request
from litestar.datastructures import UploadFile

from ..audio import AudioError
from ..engines.base import UnknownLanguage, UnsupportedLanguage, UnsupportedTask
from ..jobs.records import JobOptions, JobRecord
from ..jobs.service import AudioTooLong, DiskLow, JobService, QueueFull, StoreFull
from .errors import ApiError
from .forms import read_form
from .limits import client_of, queue_full_error
from .upload_form import FALSE_WORDS, GRANULARITIES, MAX_SPEAKERS, TEMPERATURE_RANGE, TRUE_WORDS, UploadForm


@dataclass
class Upload:
    file: UploadFile
    fields: dict[str, list[str]]
    client: str  # whose queue bound the job counts against
    form: UploadForm  # what the route declares (and the spec shows); other fields are ignored

    def get(self, name: str) -> str | None:
        self.form.check_read(name)
        values = self.fields.get(name)
        return values[-1] if values else None

    def get_all(self, name: str) -> list[str]:
        self.form.check_read(name)
        return self.fields.get(name, [])


@contextlib.asynccontextmanager
async def read_upload(request: Request, declared: UploadForm) -> AsyncIterator[Upload]:
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise ApiError(400, "send the audio as multipart/form-data", "invalid_request")
    release = request.app.state.upload_slots.take()
    try:
        service: JobService = request.app.state.node.service
        client = client_of(request)
        try:  # a full queue is refused before the upload is read
            await service.queued.reserve(service.store, client, 1.0, hold=False)
        except QueueFull as exc:
            raise queue_full_error(exc) from exc
        form = await read_form(request)
        try:
            file_fields = declared.file_fields
            file = form.file(file_fields)
            if file is None:
                raise ApiError(400, f"no audio file in the form (field '{file_fields[0]}')", "missing_file",
                               param=file_fields[0])
            yield Upload(file, form.fields, client, declared)
        finally:
            await form.close()
    finally:
        release()


def _language_error(exc: UnsupportedLanguage) -> ApiError:
    code = "unknown_language" if isinstance(exc, UnknownLanguage) else "unsupported_language"
    return ApiError(400, str(exc), code, param="language")


def _seconds_text(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} minutes"


OPENAI_MODEL_ALIAS = "whisper-1"


def check_model(service: JobService, model: str | None) -> None:
    if model in (None, "", OPENAI_MODEL_ALIAS, service.model_name):
        return
    raise ApiError(404, f"the model '{model}' does not exist; use '{OPENAI_MODEL_ALIAS}' or '{service.model_name}'",
                   "model_not_found", param="model")


def parse_granularities(upload: "Upload") -> list[str]:
    granularities = upload.get_all("timestamp_granularities[]") + upload.get_all("timestamp_granularities")
    for granularity in granularities:
        if granularity not in GRANULARITIES:
            raise ApiError(400, "'timestamp_granularities' must be word and/or segment", "invalid_value",
                           param="timestamp_granularities")
    return granularities


def parse_bool(value: str | None, name: str) -> bool:
    if value is None or value == "":
        return False
    lowered = value.strip().lower()
    if lowered in TRUE_WORDS:
        return True
    if lowered in FALSE_WORDS:
        return False
    raise ApiError(400, f"'{name}' must be true or false", "invalid_value", param=name)


def parse_temperature(value: str | None) -> float:
    if value is None or value == "":
        return 0.0
    try:
        temperature = float(value)
    except ValueError:
        temperature = math.nan
    low, high = TEMPERATURE_RANGE
    if not low <= temperature <= high:
        raise ApiError(400, f"'temperature' must be a number between {low:g} and {high:g}", "invalid_value",
                       param="temperature")
    return temperature


def _parse_count(value: str | None, name: str) -> int | None:
    if value is None or value.strip() == "":
        return None
    try:
        count = int(value.strip())
    except ValueError:
        count = 0
    if not 1 <= count <= MAX_SPEAKERS:
        raise ApiError(400, f"'{name}' must be a whole number from 1 to {MAX_SPEAKERS}", "invalid_value", param=name)
    return count


def parse_speakers(upload: "Upload", diarize: bool) -> dict:
    """JobOptions fields for diarization: diarize, speakers, min_speakers, max_speakers."""
    speakers = _parse_count(upload.get("speakers") or upload.get("num_speakers"), "speakers")
    low = _parse_count(upload.get("min_speakers"), "min_speakers")
    high = _parse_count(upload.get("max_speakers"), "max_speakers")
    if low and high and low > high:
        raise ApiError(400, "'min_speakers' must not be larger than 'max_speakers'", "invalid_value",
                       param="min_speakers")
    if not diarize and (speakers or low or high):
        raise ApiError(400, "speaker counts need diarization: add diarize=true (or response_format=diarized_json)",
                       "invalid_value", param="diarize")
    return {"diarize": diarize, "speakers": speakers, "min_speakers": low, "max_speakers": high}


def parse_language(service: JobService, value: str | None) -> str | None:
    if value is None or value.strip() == "" or value.strip().lower() == "auto":
        return None
    language = value.strip().lower()
    try:
        service.check_language(language)
    except UnsupportedLanguage as exc:
        raise _language_error(exc) from exc
    return language


async def submit(service: JobService, upload: Upload, options: JobOptions) -> JobRecord:
    """Submit the upload as a job, turning every domain failure into an OpenAI-shaped error."""
    filename = upload.file.filename or "audio"
    try:
        return await service.submit(upload.file.file, filename=filename, options=options, client=upload.client)
    except QueueFull as exc:
        raise queue_full_error(exc) from exc
    except AudioTooLong as exc:
        # Both in minutes, as the setting is; the duration keeps its fraction (61 s is not "1").
        limit = service.max_duration / 60
        raise ApiError(
            413,
            f"the audio is {_seconds_text(exc.duration)} long; this node's limit is {limit:g} minutes "
            "(setting SAYIT_MAX_DURATION_MINUTES)",
            "audio_too_long", param="file",
            extra={"duration": round(exc.duration / 60, 3), "maxDuration": int(limit) if float(limit).is_integer() else limit},
        ) from exc
    except AudioError as exc:
        raise ApiError(400, str(exc), exc.code, param="file") from exc
    except UnsupportedLanguage as exc:
        raise _language_error(exc) from exc
    except UnsupportedTask as exc:
        raise ApiError(400, str(exc), "unsupported_task", param="model") from exc
    except (DiskLow, StoreFull) as exc:
        raise ApiError(503, "the server is low on disk space; try again later", "insufficient_storage",
                       type="server_error", headers={"Retry-After": "60"}) from exc
