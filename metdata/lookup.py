"""Looking objects up in the Collection API, within the shared budget, surviving its failures.

Every request first waits for a slot from the pacer (one budget per host for the whole
cluster). Answers are classified (``api.classify``); transient failures are retried with
exponential backoff and jitter, blocks are reported to the pacer (which pauses everyone) and
retried after the pause, both a bounded number of times. Every id ends as a row: a record or
the reason there is none.
"""

from __future__ import annotations

import datetime as dt
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from metdata.api import DEFAULT_API, Answer, Outcome, classify
from metdata.errors import UserError
from metdata.pacing import retrying
from metdata.records import error_row, record_row

log = logging.getLogger(__name__)


class Pacer(Protocol):
    def bind(self) -> Pacer: ...
    def wait(self, host: str) -> None: ...
    def blocked(self, host: str) -> None: ...


@dataclass(frozen=True)
class LookupOptions:
    """How lookups behave.

    Attributes:
        api: the API base URL.
        threads: concurrent requests per task (they still share the cluster's budget).
        timeout: seconds before a request counts as a transient failure.
        max_attempts: attempts per id before a transient or blocked outcome is final for this run.
        backoff: base seconds of the exponential backoff after a transient failure.
    """

    api: str = DEFAULT_API
    threads: int = 4
    timeout: float = 30.0
    max_attempts: int = 5
    backoff: float = 2.0


def host_of(url: str) -> str:
    """The budget key of a URL: its host.

    >>> host_of("https://collectionapi.metmuseum.org/public/collection/v1/objects/1")
    'collectionapi.metmuseum.org'
    """
    return urlsplit(url).netloc


def new_session(threads: int) -> requests.Session:
    """A session whose connection pool fits ``threads`` concurrent requests."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=2, pool_maxsize=max(threads, 1), max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = "metdata (+https://github.com/metdata/metdata)"
    return session


def get(
    session: requests.Session,
    url: str,
    options: LookupOptions,
    pacer: Pacer,
    params: dict | None = None,
) -> tuple[Answer, int]:
    """GET an API URL within the budget, retrying what can succeed later.

    Returns the final classified answer and how many requests it took.
    """
    host = host_of(url)

    def once() -> Answer:
        pacer.wait(host)
        try:
            response = session.get(url, params=params, timeout=options.timeout)
        except (requests.ConnectionError, requests.Timeout) as exc:
            return Answer(Outcome.TRANSIENT, error=f"{type(exc).__name__}: {exc}"[:300])
        except requests.RequestException as exc:  # e.g. an invalid URL: asking again will not help
            return Answer(Outcome.FAILED, error=f"{type(exc).__name__}: {exc}"[:300])
        return classify(response.status_code, response.headers.get("Content-Type", ""), response.content)

    return retrying(once, lambda answer: answer.outcome.value, options.max_attempts, options.backoff, pacer, host)


def lookup_one(session: requests.Session, object_id: int, options: LookupOptions, pacer: Pacer) -> dict:
    """Look one object up; return its row (the record, or why there is none)."""
    answer, attempts = get(session, f"{options.api.rstrip('/')}/objects/{object_id}", options, pacer)
    now = dt.datetime.now(dt.UTC)
    if answer.outcome is Outcome.OK:
        if not isinstance(answer.payload, dict) or answer.payload.get("objectID") != object_id:
            got = answer.payload.get("objectID") if isinstance(answer.payload, dict) else type(answer.payload).__name__
            return error_row(object_id, "failed", f"the API answered a record for {got!r}", attempts, now)
        return record_row(answer.payload, attempts, now)
    return error_row(object_id, answer.outcome.value, answer.error, attempts, now)


def lookup_ids(ids: list[int], options: LookupOptions, pacer: Pacer) -> list[dict]:
    """Look up many ids with a pooled session and a small thread pool; one row per id."""
    pacer = pacer.bind()
    with new_session(options.threads) as session, ThreadPoolExecutor(options.threads) as pool:
        return list(pool.map(lambda i: lookup_one(session, i, options, pacer), ids))


class ListingError(UserError):
    """The id listing could not be read; the message says why and what to do."""


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
        answer, _ = get(session, url, options, pacer, params=params)
    if answer.outcome is Outcome.OK and isinstance(answer.payload, dict) and "objectIDs" in answer.payload:
        return sorted(set(answer.payload["objectIDs"] or []))
    if answer.outcome is Outcome.TRANSIENT:
        hint = "the API is unreachable or failing; check --api and the network, then retry"
    elif answer.outcome is Outcome.BLOCKED:
        hint = "the Met's bot protection blocked this address; wait (up to an hour), lower --rate"
    elif answer.outcome is Outcome.OK:
        hint = "the answer has no objectIDs: is --api the base URL, like " + DEFAULT_API + "?"
    elif "Date not valid" in answer.error:
        hint = "the metadata date must be YYYY-MM-DD, e.g. 2024-05-03"
    else:
        hint = "is --api the API base URL, like " + DEFAULT_API + "?"
    raise ListingError(f"could not read the id listing at {url} ({answer.outcome.value}: {answer.error}): {hint}")
