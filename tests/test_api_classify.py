"""Classification of API answers: every status and body the real service sends."""

from __future__ import annotations

import pytest

from metdata.acquire.api import classify
from metdata.core.statuses import Status
from metdata.emulator.protection import block_page
from metdata.net import fetch

JSON = "application/json; charset=UTF-8"


@pytest.mark.parametrize(
    ("status", "ctype", "body", "expected"),
    [
        (200, JSON, b'{"objectID": 1}', Status.OK),
        (404, JSON, b'{"message":"ObjectID not found"}', Status.NOT_FOUND),
        (404, JSON, b'{"message":"Not a valid object"}', Status.NOT_VALID),
        (400, JSON, b'{"message":"could not parse objectID"}', Status.INVALID_ID),
        (403, "text/html", block_page(12345, 1), Status.BLOCKED),
        (200, "text/html", block_page(12345, 1), Status.BLOCKED),  # a block with status 200
        (502, "text/html", b"<html>502 Bad Gateway</html>", Status.TRANSIENT),
        (503, JSON, b"{}", Status.TRANSIENT),
        (
            400,
            JSON,
            b'"Date not valid. Dates must be in the format YYYY-MM-DD e.g. 1987-05-03"',
            Status.FAILED,
        ),
        (410, JSON, b'{"message":"retired"}', Status.FAILED),
        (200, "application/octet-stream", b"\x00\x01garbage", Status.FAILED),
        (429, "text/html", b"<html>slow down</html>", Status.TRANSIENT),
        (200, "text/html", b"<html>Welcome to the portal</html>", Status.BLOCKED),  # markup where JSON was asked
        (200, JSON, b"[" * 200_000 + b"]" * 200_000, Status.FAILED),  # nested too deep: not a RecursionError
        (404, JSON, b'{"message": ["ObjectID not found"]}', Status.FAILED),  # a message of the wrong type
    ],
)
def test_classify(status, ctype, body, expected):
    answer = classify(status, ctype, body)
    assert answer.outcome is expected
    assert (answer.error == "") == (expected is Status.OK)
    assert answer.outcome.retryable == (expected in (Status.BLOCKED, Status.TRANSIENT))


def test_failed_answers_name_the_reason():
    assert "Date not valid" in classify(400, JSON, b'"Date not valid. Dates must be ..."').error
    assert classify(200, "application/octet-stream", b"\x00").error == ("HTTP 200 application/octet-stream, not JSON")


@pytest.mark.parametrize("status", [200, 403, 404, 429, 500, 502, 503])
@pytest.mark.parametrize("body", [block_page(1, 1), b"<html>hello</html>", b'{"objectID": 1}'])
def test_block_and_transient_are_decided_once_for_every_host(status, body):
    shared = fetch.classify(status, "text/html", body).outcome
    api = classify(status, "text/html", body).outcome
    assert (api in (Status.BLOCKED, Status.TRANSIENT)) == (shared in (Status.BLOCKED, Status.TRANSIENT))
    if shared in (Status.BLOCKED, Status.TRANSIENT):
        assert api is shared
