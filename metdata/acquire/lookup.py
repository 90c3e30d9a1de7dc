"""Looking objects up in the Collection API, within the shared budget, surviving its failures.

Requests go out at the pace of the budget (``dispatch.Dispatcher``: one budget per host for the
whole cluster, as many in flight as rate x latency makes them), each through ``fetch.fetch``
(the API's own scheme, host and port only, one deadline, a byte cap). Answers are classified
(``api.classify``); transient failures go back to the queue after an exponential backoff with
jitter, blocks are reported to the pacer (which pauses everyone) and retried after the pause,
both a bounded number of times. Every id ends as a row: a record or the reason there is none,
even when handling it raised (a bug): that row is ``failed`` with the exception, and its
traceback is logged.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

import requests

from metdata.acquire import api
from metdata.acquire.api import DEFAULT_API, Answer
from metdata.core.records import all_fitted, error_row, record_row
from metdata.core.schema import MAX_OBJECT_ID
from metdata.core.statuses import Status
from metdata.errors import UserError
from metdata.net.dispatch import Done, Figures, Tuning, paid_first
from metdata.net.fetch import Policy, fetch, new_session
from metdata.net.pacing import Pacer

__all__ = [
    "LATE",
    "LookupOptions",
    "Pacer",
    "fetch_listing",
    "get",
    "lookup_batch",
    "new_session",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LookupOptions(Tuning):
    """How lookups behave: the API, and how its requests are sent (``dispatch.Tuning``).

    Attributes:
        api: the API base URL.
        max_bytes: a record answer longer than this (after decompression) is ``too_large``: a
            record is a few KB, so 4 MB leaves room and bounds memory (the id listing, 3.4 MB
            in 2026, has its own cap, ``LISTING_MAX_BYTES``).
    """

    api: str = DEFAULT_API
    max_bytes: int = 4 << 20

    @property
    def policy(self) -> Policy:
        """Requests reach only the API's own scheme, host and port, within the deadline and cap."""
        return Policy.same_origin(self.api, deadline=self.timeout, max_bytes=self.max_bytes)


#: The id listing's byte cap: the full listing is ~3.4 MB (500,000 ids); room to grow 20 times.
LISTING_MAX_BYTES = 64 << 20


def host_of(url: str) -> str:
    """The budget key of a URL: its host.

    >>> host_of("https://collectionapi.metmuseum.org/public/collection/v1/objects/1")
    'collectionapi.metmuseum.org'
    """
    return urlsplit(url).netloc


def get(
    session: requests.Session,
    url: str,
    options: LookupOptions,
    pacer: Pacer,
    params: dict | None = None,
    max_bytes: int | None = None,
) -> tuple[Answer, int]:
    """GET one API URL within the budget, retrying what can succeed later (the listing).

    ``max_bytes`` overrides ``options.max_bytes`` (the listing is larger than a record).
    Returns the final classified answer and how many requests it took; never raises for
    what the network does.
    """
    host = host_of(url)
    policy = options.policy if max_bytes is None else replace(options.policy, max_bytes=max_bytes)
    dispatcher = options.dispatcher(pacer, 1)

    def attempt(target: str) -> tuple[str, Answer]:
        answer = api.judge(fetch(session, target, policy, wait=paid_first(dispatcher.slots, host_of), params=params))
        return answer.outcome.value, answer

    (done,) = dispatcher.run([url], lambda _: host, attempt)
    if done.error is not None:
        raise done.error
    return done.value, done.attempts


#: Key of a row whose handling raised (a bug or an unforeseen answer); not a column.
UNEXPECTED = "unexpected"


#: Key of a row handed on (``late_after``): seconds until it may be tried again; not a column.
LATE = "late"


def lookup_batch(
    ids: list[int],
    options: LookupOptions,
    pacer: Pacer,
    tries: list[int] | None = None,
    finished: Callable[[int], None] | None = None,
    late_after: float | None = None,
) -> tuple[list[dict], Figures]:
    """Look many ids up at the budget's pace; one row per id, in order, and how the requests went.

    Never raises for one id: whatever goes wrong with it becomes a ``failed`` row naming the
    exception (marked ``unexpected`` so the task can count it), and the traceback is logged.
    ``tries``: attempts each id already had (a follow-up task); ``finished(k)`` as id ``k`` ends.
    With ``late_after`` (``dispatch.Dispatcher.late_after``), ids still waiting on a hanging answer
    or a long backoff when the rest is done come back as ``transient`` rows marked ``late`` (the
    seconds until they may go again), for a follow-up task; none is lost. So do ids whose request
    hangs past that while the in-flight bound holds others back (``Dispatcher.hand_on_hanging``),
    unless ``options.max_in_flight`` was given: then it bounds every request still open.
    """
    pacer = pacer.bind()
    dispatcher = options.dispatcher(pacer, len(ids))
    dispatcher.late_after = late_after
    # hanging answers do not eat the in-flight bound, unless the user set it (then it bounds every socket)
    dispatcher.hand_on_hanging = late_after is not None and not options.max_in_flight
    base, host, policy = options.api.rstrip("/"), host_of(options.api), options.policy
    with new_session(dispatcher.threads) as session:

        def attempt(object_id: int) -> tuple[str, Answer]:
            url = f"{base}/objects/{object_id}"
            answer = api.judge(fetch(session, url, policy, wait=paid_first(dispatcher.slots, host_of)))
            return answer.outcome.value, answer

        done = dispatcher.run(ids, lambda _: host, attempt, tries=tries, finished=finished)
    rows = [_row(object_id, result) for object_id, result in zip(ids, done, strict=True)]
    return all_fitted(rows), dispatcher.figures


def _row(object_id: int, done: Done[Answer]) -> dict:
    """The row of one id from its last answer; a ``failed``/``unexpected`` row if that raised; a
    ``transient`` row marked ``late`` if it was handed on."""
    if done.late:
        last = done.value.error if done.value is not None else "no answer yet"
        reason = f"{last} (pending: a follow-up task retries it)"[:500]
        return {
            **error_row(object_id, Status.TRANSIENT, reason, done.attempts, dt.datetime.now(dt.UTC)),
            LATE: done.due,
        }
    try:
        if done.error is not None:
            raise done.error
        return _answer_row(object_id, done.value, done.attempts)
    except Exception as exc:  # per-item isolation: one id never sinks its shard
        log.error("looking up object %s failed unexpectedly", object_id, exc_info=exc)
        reason = f"{type(exc).__name__}: {exc}"[:500]
        return {**error_row(object_id, Status.FAILED, reason, done.attempts, dt.datetime.now(dt.UTC)), UNEXPECTED: True}


def _answer_row(object_id: int, answer: Answer, attempts: int) -> dict:
    now = dt.datetime.now(dt.UTC)
    if answer.outcome is not Status.OK:
        return error_row(object_id, answer.outcome.value, answer.error, attempts, now)
    got = answer.payload.get("objectID") if isinstance(answer.payload, dict) else type(answer.payload).__name__
    if type(got) is not int or got != object_id:  # True == 1 in Python: a bool is not this id
        return error_row(object_id, Status.FAILED, f"the API answered a record for {got!r}"[:300], attempts, now)
    return record_row(answer.payload, attempts, now)  # checked against the schema by lookup_batch


class ListingError(UserError):
    """The id listing could not be read; the message says why and what to do."""


def checked_ids(values: object) -> list[int]:
    """A listing's ids, sorted and without repeats, if every one is an integer from 1 to 2**53.

    >>> checked_ids([3, 1, 3])
    [1, 3]
    >>> checked_ids([1, -5])
    Traceback (most recent call last):
    ValueError: id -5 is not an integer from 1 to 9007199254740992

    Raises:
        ValueError: not a list, or an id that is not such an integer (a bool, a float, a string, ...).
    """
    if values is None:
        return []
    if not isinstance(values, list):
        raise ValueError(f"objectIDs is a {type(values).__name__}, not a list")
    for value in values:
        if type(value) is not int or not 1 <= value <= MAX_OBJECT_ID:  # type(): True is an int too
            raise ValueError(f"id {str(value)[:40]} is not an integer from 1 to {MAX_OBJECT_ID}")
    return sorted(set(values))


def fetch_listing(
    options: LookupOptions,
    pacer: Pacer,
    department_ids: str | None = None,
    metadata_date: str | None = None,
) -> list[int]:
    """Fetch ``GET /objects`` (optionally filtered) and return its ids, sorted.

    Raises:
        ListingError: unreachable API, a page that is not the API, a block, a bad filter.
    """
    params = {}
    if department_ids:
        params["departmentIds"] = department_ids
    if metadata_date:
        params["metadataDate"] = metadata_date
    url = f"{options.api.rstrip('/')}/objects"
    pacer = pacer.bind()
    with new_session(1) as session:
        answer, _ = get(session, url, options, pacer, params=params, max_bytes=LISTING_MAX_BYTES)
    if answer.outcome is Status.OK and isinstance(answer.payload, dict) and "objectIDs" in answer.payload:
        try:
            return checked_ids(answer.payload["objectIDs"])
        except ValueError as exc:
            raise ListingError(
                f"the id listing at {url} is not usable ({exc}): is --api the API base URL, like {DEFAULT_API}?"
            ) from exc
    if answer.outcome is Status.TRANSIENT:
        hint = "the API is unreachable or failing; check --api and the network, then retry"
    elif answer.outcome is Status.BLOCKED:
        hint = "the Met's bot protection blocked this address; wait (up to an hour), lower --rate"
    elif answer.outcome is Status.OK:
        hint = "the answer has no objectIDs: is --api the base URL, like " + DEFAULT_API + "?"
    elif "Date not valid" in answer.error:
        hint = "the metadata date must be YYYY-MM-DD, e.g. 2024-05-03"
    else:
        hint = "is --api the API base URL, like " + DEFAULT_API + "?"
    raise ListingError(f"could not read the id listing at {url} ({answer.outcome.value}: {answer.error}): {hint}")
