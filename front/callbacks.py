"""Checking the API's callbacks: the HMAC signature, its timestamp, and replays.

The API signs each callback with `X-Signature-Timestamp: <unix seconds>` and
`X-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>`. The timestamp is inside
the signed text, so an old event cannot be sent again with a fresh time; within the allowed age,
the exact same signed message sent twice is a replay, which `store.JobStore.remember_signature`
catches. The front is deployed apart from the API, so this is its own copy of the check (it must
not import api.*); tests/test_front.py checks it against the API's signer.
"""
from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass

SIGNATURE_HEADER = "X-Signature"
TIMESTAMP_HEADER = "X-Signature-Timestamp"
PREFIX = "sha256="


@dataclass(frozen=True)
class Verdict:
    """Whether a callback is authentic; `reason` says why not, in words for the log and the reply."""

    ok: bool
    reason: str = ""
    timestamp: int = 0
    signature: str = ""

    def __bool__(self) -> bool:
        return self.ok


def expected_signature(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of `"<timestamp>." + body` keyed with `secret` (the API's format)."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign_headers(secret: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """Headers as the API sends them; for tests and for tools that replay an event on purpose."""
    timestamp = int(time.time() if now is None else now)
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: PREFIX + expected_signature(secret, timestamp, body)}


def verify(secret: str, body: bytes, headers: Mapping[str, str], *, max_age_s: float = 300,
           now: float | None = None) -> Verdict:
    """A `Verdict` on one callback: its signature matches `body` under `secret` and its timestamp is
    within `max_age_s` of now (either way, for clock skew). Never raises on bad input: missing,
    malformed or non-ASCII headers give a refusal with a reason."""
    if not secret:
        return Verdict(False, "no CALLBACK_SECRET configured to check signatures with")
    lower = {str(k).lower(): v for k, v in headers.items()}
    raw_ts = lower.get(TIMESTAMP_HEADER.lower())
    signature = lower.get(SIGNATURE_HEADER.lower())
    if not isinstance(raw_ts, str) or not raw_ts.strip():
        return Verdict(False, f"missing {TIMESTAMP_HEADER}")
    if not isinstance(signature, str) or not signature.strip():
        return Verdict(False, f"missing {SIGNATURE_HEADER}")
    raw_ts, signature = raw_ts.strip(), signature.strip()
    if not (raw_ts.isascii() and raw_ts.isdigit()) or len(raw_ts) > 12:
        return Verdict(False, f"{TIMESTAMP_HEADER} is not a unix time in seconds")
    if not signature.startswith(PREFIX):
        return Verdict(False, f"{SIGNATURE_HEADER} does not start with {PREFIX}")
    timestamp = int(raw_ts)
    current = time.time() if now is None else now
    if abs(current - timestamp) > max_age_s:
        return Verdict(False, f"timestamp is {int(current - timestamp)} s from now (more than {max_age_s:g} s)")
    given = signature[len(PREFIX):]
    if not given.isascii() or not hmac.compare_digest(given.lower(), expected_signature(secret, timestamp, body)):
        return Verdict(False, "signature does not match the body")
    return Verdict(True, timestamp=timestamp, signature=given.lower())
