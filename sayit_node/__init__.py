"""SayIt node: chunked, parallel Whisper transcription behind an OpenAI-compatible API."""

__version__ = "0.1.0"
