"""One declaration per upload route of the multipart fields it reads: the OpenAPI requestBody
is generated from it, and the handler can only read a field it declares.

The routes parse their body with forms.py (streamed, bounded), not with Litestar, so Litestar
cannot see the fields; `UploadForm.operation_class()` hands Litestar an Operation that carries
the requestBody built from the declaration (`@post(..., operation_class=...)`), and
`uploads.Upload.get` refuses (LookupError, a 500) a name the route's form does not declare.
Fields a route does not declare are ignored, as OpenAI's own API ignores what it does not know.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from litestar.openapi.spec import OpenAPIFormat, OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema

from ..jobs.transcript import FORMAT_ALIASES, FORMATS
from .forms import FIELD_LIMITS, MAX_FIELD_CHARS

Kind = Literal["file", "string", "number", "integer", "boolean"]
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
# What format / response_format accept (case-insensitive; empty is json): the names and their aliases.
FORMAT_VALUES = (*FORMATS, *FORMAT_ALIASES)
GRANULARITIES = ("word", "segment")
TEMPERATURE_RANGE = (0.0, 1.0)
MAX_SPEAKERS = 20


@dataclass(frozen=True)
class FormField:
    name: str
    kind: Kind
    description: str
    enum: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    default: Any = None
    repeated: bool = False  # every value counts (an array); otherwise the last one does
    required: bool = False

    @property
    def max_length(self) -> int | None:
        """The cap forms.py enforces on a text part (files are capped by the upload limit)."""
        return None if self.kind == "file" else FIELD_LIMITS.get(self.name, MAX_FIELD_CHARS)

    def schema(self) -> Schema:
        if self.kind == "file":
            return Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY, description=self.description)
        value = Schema(type=OpenAPIType(self.kind), enum=list(self.enum) if self.enum else None,
                       minimum=self.minimum, maximum=self.maximum,
                       max_length=self.max_length if self.kind == "string" and not self.enum else None)
        if self.repeated:
            return Schema(type=OpenAPIType.ARRAY, items=value, description=self.description,
                          default=self.default)
        value.description = self.description
        value.default = self.default
        return value


@dataclass(frozen=True)
class UploadForm:
    fields: tuple[FormField, ...]
    one_file_of: tuple[str, ...] = ()  # the file may come in any of these fields, the first found wins

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        assert len(names) == len(set(names)), names
        assert set(self.file_fields) >= set(self.one_file_of)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(f.name for f in self.fields)

    @property
    def text_names(self) -> frozenset[str]:
        return frozenset(f.name for f in self.fields if f.kind != "file")

    @property
    def file_fields(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.kind == "file")

    def check_read(self, name: str) -> None:
        """A handler reading a text field its form does not declare is a bug: the spec would not show it."""
        if name not in self.text_names:
            raise LookupError(f"the form field '{name}' is read but not declared in the route's UploadForm")

    def field(self, name: str) -> FormField:
        return next(f for f in self.fields if f.name == name)

    def request_body(self) -> RequestBody:
        schema = Schema(type=OpenAPIType.OBJECT, properties={f.name: f.schema() for f in self.fields},
                        required=[f.name for f in self.fields if f.required] or None)
        if self.one_file_of:
            schema.any_of = [Schema(required=[name]) for name in self.one_file_of]
        return RequestBody(
            content={"multipart/form-data": OpenAPIMediaType(schema=schema)}, required=True,
            description=f"Text fields are at most {MAX_FIELD_CHARS} characters (prompt: see its maxLength); "
                        "an empty field is the same as no field; a repeated field counts once, "
                        "its last value (arrays: every value); fields not listed are ignored.")

    def operation_class(self) -> type[Operation]:
        """For `@post(operation_class=...)`: Litestar builds the operation with no requestBody
        (the handler takes no `data`), this one fills it in."""
        form = self

        def __post_init__(self: Operation) -> None:
            self.request_body = form.request_body()

        return dataclass(type("UploadOperation", (Operation,), {"__post_init__": __post_init__}))


# --- the fields the upload routes share ----------------------------------------------------------

def boolean(name: str, description: str) -> FormField:
    return FormField(name, "boolean", f"{description}; true/false, 1/0, yes/no or on/off", default=False)


def speaker_count(name: str, description: str) -> FormField:
    return FormField(name, "integer", f"{description}; needs diarization", minimum=1, maximum=MAX_SPEAKERS)


def format_field(name: str, description: str) -> FormField:
    return FormField(name, "string", f"{description}; case-insensitive, txt is text", enum=FORMAT_VALUES,
                     default="json")


MODEL = FormField("model", "string", "whisper-1 or this node's model (GET /v1/models); any other is 404 "
                                     "model_not_found; empty: this node's model")
LANGUAGE = FormField("language", "string", "the spoken language, a code the model knows (GET /api/health "
                                           "`languages`); empty or auto: detected")
PROMPT = FormField("prompt", "string", "text to condition the model on (names, spelling, style)")
DIARIZE = boolean("diarize", "label speakers on segments and words (diarized_json implies it)")
SPEAKERS = (
    speaker_count("speakers", "how many speakers the audio has, if known"),
    speaker_count("num_speakers", "another name for speakers (speakers wins)"),
    speaker_count("min_speakers", "at least this many speakers"),
    speaker_count("max_speakers", "at most this many speakers (not below min_speakers)"),
)

OPENAI_FORM = UploadForm((
    FormField("file", "file", "the audio (any format FFmpeg decodes), up to the node's upload limit",
              required=True),
    MODEL,
    format_field("response_format", "the transcript's format"),
    FormField("timestamp_granularities[]", "string", "word adds word timestamps (verbose_json); segments "
              "always have theirs", enum=GRANULARITIES, repeated=True),
    FormField("timestamp_granularities", "string", "another name for timestamp_granularities[] (both count)",
              enum=GRANULARITIES, repeated=True),
    boolean("stream", "server-sent events of the text as parts finish (transcript.text.delta, then "
                      "transcript.text.done) instead of one answer"),
    LANGUAGE,
    PROMPT,
    FormField("temperature", "number", "sampling temperature", minimum=TEMPERATURE_RANGE[0],
              maximum=TEMPERATURE_RANGE[1], default=0.0),
    DIARIZE,
    *SPEAKERS,
))

TRANSCRIBE_FORM = UploadForm((
    FormField("audio", "file", "the audio (any format FFmpeg decodes), up to the node's upload limit; "
                               "this field or 'file' is required"),
    FormField("file", "file", "another name for audio (audio wins)"),
    MODEL,
    format_field("format", "the transcript's format"),
    format_field("response_format", "another name for format (format wins)"),
    boolean("async", "answer 202 with the job at once instead of waiting for the transcript"),
    boolean("words", "word timestamps (verbose_json words)"),
    LANGUAGE,
    PROMPT,
    DIARIZE,
    *SPEAKERS,
), one_file_of=("audio", "file"))

