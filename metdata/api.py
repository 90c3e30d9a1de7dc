"""The Met Collection API: URLs, and what each answer means.

``classify`` is pure: it turns (status, content type, body) into an outcome, so that a block
page sent with status 200 is a block and not data, and only outcomes that can succeed later
(``transient``, ``blocked``) are ever retried.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum

#: The real service; ``--api`` defaults to it.
DEFAULT_API = "https://collectionapi.metmuseum.org/public/collection/v1"


class Outcome(StrEnum):
    """What one API answer means for the object asked about."""

    OK = "ok"
    NOT_FOUND = "not_found"  # 404 "ObjectID not found"
    NOT_VALID = "not_valid"  # 404 "Not a valid object" (withdrawn, on loan)
    INVALID_ID = "invalid_id"  # 400 "could not parse objectID"
    BLOCKED = "blocked"  # the bot protection's HTML page, with 403 or 200
    TRANSIENT = "transient"  # 5xx, timeouts, dropped connections
    FAILED = "failed"  # anything else, with its reason

    @property
    def retryable(self) -> bool:
        """Whether asking again later can give a different answer."""
        return self.value in RETRYABLE


#: The statuses worth asking again, in every stage: the rest are final.
RETRYABLE = frozenset({Outcome.TRANSIENT.value, Outcome.BLOCKED.value})


@dataclass(frozen=True)
class Answer:
    """A classified answer: the outcome, the parsed JSON when ok, and a reason otherwise."""

    outcome: Outcome
    payload: object = None
    error: str = ""


def _is_block_page(body: bytes) -> bool:
    head = body[:2048].lower()
    return b"incapsula" in head or b"<html" in head


def classify(status: int, content_type: str, body: bytes) -> Answer:
    """Classify one HTTP answer of the collection API.

    Args:
        status: the HTTP status code.
        content_type: the Content-Type header ("" if absent).
        body: the raw body.

    >>> classify(404, "application/json", b'{"message":"Not a valid object"}').outcome
    <Outcome.NOT_VALID: 'not_valid'>
    >>> classify(200, "text/html", b"<html>Incapsula incident ID: 1</html>").outcome
    <Outcome.BLOCKED: 'blocked'>
    """
    if status >= 500 or status == 429:
        return Answer(Outcome.TRANSIENT, error=f"HTTP {status}")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        if status in (200, 403) and _is_block_page(body):
            return Answer(Outcome.BLOCKED, error=f"HTTP {status} bot-protection page")
        return Answer(Outcome.FAILED, error=f"HTTP {status} {content_type or 'no content type'}, not JSON")
    message = payload.get("message", "") if isinstance(payload, dict) else ""
    if status == 200:
        return Answer(Outcome.OK, payload)
    if status == 404 and message == "ObjectID not found":
        return Answer(Outcome.NOT_FOUND, error=message)
    if status == 404 and message == "Not a valid object":
        return Answer(Outcome.NOT_VALID, error=message)
    if status == 400 and message == "could not parse objectID":
        return Answer(Outcome.INVALID_ID, error=message)
    return Answer(Outcome.FAILED, error=f"HTTP {status}: {message or str(payload)[:200]}")
