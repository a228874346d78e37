"""JSON from clients, bounded: every request body and every JSON-in-a-string field is read here.

Python's parser recurses once per nesting level, so `[[[[...` 100,000 deep raises RecursionError
(a 500) in the parser, or later in whatever walks the value (fingerprints, Redis, jsonify). And a
chunked body (no Content-Length) would otherwise be read up to MAX_UPLOAD_BYTES, a limit meant for
image uploads, before being refused. Here a body is read only up to MAX_JSON_BYTES (413 past it,
reading stops) and a value nested deeper than MAX_JSON_DEPTH is a 400 naming the field.
"""
from __future__ import annotations

import json
from typing import Any

from flask import current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from .errors import ApiError, InputError

# A start request is a few documents (URLs of at most 8 KiB) and parameters: far below this.
MAX_JSON_BYTES = 2**20
# Documents and parameters nest 3 levels; anything near Python's recursion limit is an attack.
MAX_JSON_DEPTH = 32


def loads(text: str | bytes, field: str) -> Any:
    """`text` parsed, or InputError naming `field` when it is not JSON or nests too deep."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise _too_deep(field) from None
    except ValueError as exc:  # JSONDecodeError, and UnicodeDecodeError for bytes
        raise InputError(field, f"not valid JSON: {exc}") from None
    if nesting_depth(value) > MAX_JSON_DEPTH:
        raise _too_deep(field)
    return value


def nesting_depth(value: Any) -> int:
    """How many arrays/objects deep `value` goes (iteratively: a deep value must not recurse)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def request_json(field: str = "body") -> Any:
    """The request's body parsed as JSON. Past `json_limit()` bytes reading stops with a 413, also
    for a chunked body whose size is not announced."""
    limit = json_limit()
    # Werkzeug stops reading at this many bytes (413 at once for a larger Content-Length); a chunked
    # body just ends there, so one byte more than the limit tells a body that goes on.
    request.max_content_length = limit + 1
    try:
        data = request.get_data(cache=True)
    except RequestEntityTooLarge:
        data = None
    if data is None or len(data) > limit:
        raise ApiError(f"JSON body larger than {limit} bytes; send files as multipart/form-data uploads",
                       status=413, code="too_large")
    return loads(data, field)


def json_limit() -> int:
    """MAX_JSON_BYTES, or the app's whole-request limit (MAX_UPLOAD_BYTES) when that is smaller."""
    whole = current_app.config.get("MAX_CONTENT_LENGTH")
    return min(MAX_JSON_BYTES, whole) if whole else MAX_JSON_BYTES


def _too_deep(field: str) -> InputError:
    return InputError(field, f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
