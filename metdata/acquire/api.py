"""The Met Collection API: URLs, and what each answer means.

``classify`` is pure: it turns (status, content type, body) into an outcome. What holds on
every host (429 and 5xx are transient, the bot protection's page is a block, even with status
200) is decided once, in ``fetch.classify``; this module adds the API's meanings: JSON records,
and the messages of its 404 and 400 answers. Only outcomes that can succeed later
(``transient``, ``blocked``) are ever retried.
"""

from __future__ import annotations

import json

from metdata.core.statuses import Status
from metdata.net import fetch
from metdata.net.fetch import Answer, Reply

__all__ = ["DEFAULT_API", "Answer", "classify", "judge", "parse_json"]

#: The real service; ``--api`` defaults to it.
DEFAULT_API = "https://collectionapi.metmuseum.org/public/collection/v1"


def parse_json(body: bytes) -> tuple[object, str]:
    """(payload, "") or (None, why the body is not usable JSON); never raises.

    >>> parse_json(b'{"a": 1}')
    ({'a': 1}, '')
    >>> parse_json(b"[" * 200_000 + b"]" * 200_000)[1]
    'JSON nested too deep'
    """
    try:
        return json.loads(body), ""
    except RecursionError:
        return None, "JSON nested too deep"
    except ValueError:  # UnicodeDecodeError included
        return None, "not JSON"


def classify(status: int, content_type: str, body: bytes) -> Answer:
    """Classify one HTTP answer of the collection API.

    Args:
        status: the HTTP status code.
        content_type: the Content-Type header ("" if absent).
        body: the raw body.

    >>> classify(404, "application/json", b'{"message":"Not a valid object"}').outcome
    <Status.NOT_VALID: 'not_valid'>
    >>> classify(200, "text/html", b"<html>Incapsula incident ID: 1</html>").outcome
    <Status.BLOCKED: 'blocked'>
    """
    shared = fetch.classify(status, content_type, body)
    if shared.outcome in (Status.TRANSIENT, Status.BLOCKED):
        return shared
    payload, problem = parse_json(body)
    if problem:
        return Answer(Status.FAILED, error=f"HTTP {status} {content_type or 'no content type'}, {problem}")
    message = payload.get("message", "") if isinstance(payload, dict) else ""
    message = message if isinstance(message, str) else ""
    if status == 200:
        return Answer(Status.OK, payload)
    if status == 404 and message == "ObjectID not found":
        return Answer(Status.NOT_FOUND, error=message)
    if status == 404 and message == "Not a valid object":
        return Answer(Status.NOT_VALID, error=message)
    if status == 400 and message == "could not parse objectID":
        return Answer(Status.INVALID_ID, error=message)
    return Answer(Status.FAILED, error=f"HTTP {status}: {message or str(payload)[:200]}")


def judge(reply: Reply) -> Answer:
    """What a ``fetch.Reply`` from the API means: the transport's outcome, else ``classify``."""
    if reply.outcome is not None:
        return Answer(reply.outcome, error=reply.error)
    return classify(reply.status, reply.content_type, reply.body)
