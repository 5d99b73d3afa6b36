"""OpenAI-shaped errors: {"error": {"message", "type", "param", "code"}} on every failure.

Messages name the problem; never a server path or a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str, *, param: str | None = None,
                 type: str = "invalid_request_error", extra: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.type = type
        self.extra = extra or {}
        self.headers = headers or {}


def error_body(message: str, code: str, *, type: str = "invalid_request_error", param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def upload_limit_message(request: Request) -> str:
    limit = request.app.state.node.settings.max_upload_mb
    return f"the upload is larger than this node's limit of {limit:g} MB (setting SAYIT_MAX_UPLOAD_MB)"


def api_error_response(exc: ApiError) -> Response:
    body = error_body(exc.message, exc.code, type=exc.type, param=exc.param) | exc.extra
    return Response(body, status_code=exc.status, headers=exc.headers)


def _api_error_handler(_: Request, exc: ApiError) -> Response:
    return api_error_response(exc)


_HTTP_CODES = {
    400: "bad_request", 401: "invalid_api_key", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 413: "upload_too_large", 415: "unsupported_media_type", 429: "rate_limited",
}


def _http_error_handler(request: Request, exc: HTTPException) -> Response:
    status = exc.status_code
    if status >= 500:
        return _internal_error_handler(request, exc)
    message = exc.detail if isinstance(exc.detail, str) and exc.detail else "request failed"
    if status == 413:
        message = upload_limit_message(request)
    if isinstance(exc, NotFoundException) and message == "Not Found":
        message = "no such route"
    body = error_body(message, _HTTP_CODES.get(status, "request_error"))
    return Response(body, status_code=status, headers=getattr(exc, "headers", None))


def _validation_error_handler(_: Request, exc: ValidationException) -> Response:
    param = None
    if isinstance(exc.extra, list) and exc.extra and isinstance(exc.extra[0], dict):
        param = exc.extra[0].get("key")
    return Response(error_body(str(exc.detail), "invalid_request", param=param), status_code=400)


def _internal_error_handler(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    body = error_body("internal server error", "internal_error", type="server_error")
    return Response(body, status_code=HTTP_500_INTERNAL_SERVER_ERROR)


EXCEPTION_HANDLERS = {
    ApiError: _api_error_handler,
    ValidationException: _validation_error_handler,
    HTTPException: _http_error_handler,
    Exception: _internal_error_handler,
}
