"""Reading a multipart form: file parts spooled to disk, text parts small and strictly decoded.

Litestar's own parser keeps every text part whole in memory and decodes it with whatever
charset the part names, so a 20 MB `prompt` is read in full and a bad byte or an unknown
charset ends in a 500. Here a text part is refused (400) as soon as it passes its cap, and
decoding errors are the client's.
"""

from __future__ import annotations

import codecs
from collections.abc import Mapping

from litestar import Request
from litestar.datastructures import UploadFile
from litestar.exceptions import InternalServerException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from multipart import MultipartError, MultipartSegment, PushMultipartParser

from .errors import ApiError, upload_limit_message

# Whisper uses at most 223 prompt tokens (half its 448-token context); 2000 characters is
# well past that for any language and keeps faster-whisper's per-chunk tokenizing cheap.
MAX_PROMPT_CHARS = 2000
MAX_FIELD_CHARS = 256  # language, model, format, temperature, flags, ...
FIELD_LIMITS: Mapping[str, int] = {"prompt": MAX_PROMPT_CHARS}
MAX_PARTS = 64
MAX_NAME_CHARS = 64


def _field_error(name: str, message: str, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, code, param=name[:MAX_NAME_CHARS])


def _decode(segment: MultipartSegment, data: bytes) -> str:
    name = segment.name or ""
    charset = segment.charset or "utf-8"
    try:
        codecs.lookup(charset)
        return data.decode(charset)
    except LookupError as exc:
        raise _field_error(name, f"the field '{name}' names an unknown charset '{charset[:40]}'",
                           "unsupported_charset") from exc
    except UnicodeDecodeError as exc:
        raise _field_error(name, f"the field '{name}' is not valid {charset[:40]} text", "invalid_encoding") from exc


class Form:
    """Text fields by name (every value, in order) and file parts as (name, file)."""

    def __init__(self) -> None:
        self.fields: dict[str, list[str]] = {}
        self.files: list[tuple[str, UploadFile]] = []

    def file(self, names: tuple[str, ...]) -> UploadFile | None:
        for wanted in names:
            for name, upload in self.files:
                if name == wanted:
                    return upload
        return None

    async def close(self) -> None:
        for _, upload in self.files:
            await upload.close()


async def read_form(request: Request) -> Form:
    """Parse a multipart body as it streams in; the caller closes the form's files."""
    _, options = request.content_type
    boundary = options.get("boundary")
    if not boundary:
        raise ApiError(400, "the multipart boundary is missing from Content-Type", "invalid_request")
    form = Form()
    segment: MultipartSegment | None = None
    text = bytearray()
    upload: UploadFile | None = None
    try:
        with PushMultipartParser(boundary.encode("latin-1"), max_segment_count=MAX_PARTS) as parser:
            async for chunk in request.stream():
                for event in parser.parse(chunk):
                    if isinstance(event, MultipartSegment):
                        segment, text, upload = event, bytearray(), None
                        name = segment.name or ""
                        if len(name) > MAX_NAME_CHARS:
                            raise _field_error(name, "a form field name is too long", "invalid_request")
                        if segment.filename:
                            upload = UploadFile(content_type=segment.content_type or "application/octet-stream",
                                                filename=segment.filename[:255], headers=dict(segment.headerlist))
                            form.files.append((name, upload))
                    elif event is not None:  # a piece of the current part's body
                        if upload is not None:
                            await upload.write(event)
                            continue
                        text.extend(event)
                        limit = FIELD_LIMITS.get(segment.name or "", MAX_FIELD_CHARS)
                        if len(text) > 4 * limit:  # no charset spends more than 4 bytes per character
                            raise _field_error(segment.name or "", f"the field '{segment.name}' is longer than "
                                               f"{limit} characters", "field_too_long")
                    elif segment is not None:  # the part ended
                        if upload is not None:
                            await upload.seek(0)
                        else:
                            name = segment.name or ""
                            value = _decode(segment, bytes(text))
                            limit = FIELD_LIMITS.get(name, MAX_FIELD_CHARS)
                            if len(value) > limit:
                                raise _field_error(name, f"the field '{name}' is longer than {limit} characters",
                                                   "field_too_long")
                            form.fields.setdefault(name, []).append(value)
                        segment, upload = None, None
                if parser.closed:
                    break
    except RequestEntityTooLarge as exc:
        await form.close()
        raise ApiError(413, upload_limit_message(request), "upload_too_large", param="file") from exc
    except MultipartError as exc:
        await form.close()
        message = "the form has too many parts" if "limit" in str(exc).lower() else "the multipart form is malformed"
        raise ApiError(400, message, "invalid_request") from exc
    except InternalServerException as exc:  # Litestar's "client disconnected prematurely"
        await form.close()
        raise ApiError(400, "the upload ended before the form was complete", "invalid_request") from exc
    except BaseException:
        await form.close()
        raise
    return form
