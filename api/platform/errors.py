"""One error type for the API, rendered always as JSON `{"error": {"code", "message"}}`.

Raise `ApiError` (or a subclass) anywhere under a request; the handlers registered by
`register_error_handlers` turn it, and every other failure, into a JSON body with the right status.
A traceback never reaches a client.
"""
from __future__ import annotations

import logging
import re

import redis
from flask import Flask, current_app, jsonify
from werkzeug.exceptions import HTTPException

from .queue import INFRASTRUCTURE_ERRNOS

log = logging.getLogger(__name__)

# Retry-After of the 503s, which cannot read the queue: Redis restarts in seconds (the supervisor
# retries it at once); a full disk waits for the retention sweeper or a person.
REDIS_DOWN_RETRY_S = 5
STORAGE_RETRY_S = 60


class ApiError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 retry_after: int | None = None, details: dict | None = None):
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after  # seconds, sent as Retry-After (429, 503)
        self.details = details or {}  # more keys of the error object, e.g. expired_at for a 410
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code


class InputError(ApiError):
    """A client's request or document is malformed: 400, naming the field."""

    code = "invalid_input"

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


class NotFound(ApiError):
    status, code = 404, "not_found"


class Conflict(ApiError):
    status, code = 409, "conflict"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class QueueFull(ApiError):
    status, code = 429, "queue_full"


class Gone(ApiError):
    """The job existed, and the retention sweeper deleted it (RESULT_TTL_DAYS): 410 "expired"."""

    status, code = 410, "expired"


class InsufficientStorage(ApiError):
    """A new job would take DATA_FOLDER past DATA_MAX_BYTES: 507."""

    status, code = 507, "insufficient_storage"


HTTP_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
              409: "conflict", 410: "gone", 413: "too_large", 415: "unsupported_media_type",
              429: "too_many_requests", 503: "unavailable", 507: "insufficient_storage"}


def error_response(status: int, code: str, message: str, field: str = "", retry_after: int | None = None,
                   details: dict | None = None):
    body = {"code": code, "message": message, **({"field": field} if field else {}), **(details or {})}
    response = jsonify({"error": body})
    response.status_code = status
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def capped_retry(seconds: int) -> int:
    """`seconds` within [1, RETRY_AFTER_MAX_S] of the app answering."""
    cfg = getattr(current_app.extensions.get("api"), "cfg", None)
    return max(1, min(seconds, cfg.retry_after_max_s if cfg else seconds))


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, getattr(exc, "field", ""), exc.retry_after,
                              exc.details)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        status = exc.code or 500
        message = exc.description or exc.name
        if status == 413:
            message = "request body too large (see MAX_UPLOAD_BYTES)"
        return error_response(status, HTTP_CODES.get(status, "http_error"), message)

    @app.errorhandler(redis.ConnectionError)
    @app.errorhandler(redis.TimeoutError)
    def _redis_down(exc: Exception):
        log.error("redis unreachable: %s", exc)
        return error_response(503, "unavailable", "the job store (Redis) is unreachable; try again later",
                              retry_after=capped_retry(REDIS_DOWN_RETRY_S))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal error; see the API log")

    @app.errorhandler(redis.ResponseError)
    @app.errorhandler(OSError)
    def _storage_failing(exc: Exception):
        reason = storage_failure(exc)
        if reason is None:
            return _unexpected(exc)
        log.error("storage failing: %s", exc)
        return error_response(503, "unavailable", f"{reason}; try again later",
                              retry_after=capped_retry(STORAGE_RETRY_S))


SCRIPT_ERROR = re.compile(r"^Error running script .*?@user_script: ?\d+: -([A-Z]+) ")


def redis_error_code(exc: redis.ResponseError) -> str:
    """The error code Redis answered ("MISCONF", "ERR", ...), also when redis-py prefixed the
    message with the pipeline command that caused it."""
    message = str(exc).rpartition(" of pipeline caused error: ")[2]
    in_script = SCRIPT_ERROR.search(message)  # a write refused inside a Lua script (EVAL / EVALSHA)
    return in_script.group(1) if in_script else message.split(" ", 1)[0]


def storage_failure(exc: BaseException) -> str | None:
    """What a client should read when `exc` means the server cannot store anything now (a full or
    failing disk under DATA_FOLDER, or Redis refusing writes: MISCONF after a failed save, a
    read-only replica), else None. Such a request may succeed later, so it is a 503, not a 500."""
    if isinstance(exc, redis.ReadOnlyError) or (
            isinstance(exc, redis.ResponseError) and redis_error_code(exc) == "MISCONF"):
        return "the job store (Redis) refuses writes (its disk is full or failing)"
    if isinstance(exc, OSError) and exc.errno in INFRASTRUCTURE_ERRNOS:
        return "the server's disk is full or failing"
    return None
