"""One way to fetch from a host that may be hostile: the API, the image host, ``predict``'s URLs.

``fetch`` makes one request under a ``Policy``: redirects are followed by hand, and only to the
allowed hosts and schemes; the whole request (connect, headers, every read) has one deadline;
the body is capped while it streams, counted after decompression, so a gzip bomb stops at the
cap. Whatever the network does ends as a ``Reply``, never an exception: a timeout, a cut body,
a reset, bad gzip or a malformed answer (headers, framing) is ``transient``; a body over the cap
is ``too_large``; a malformed URL (the request's or a redirect's) or a redirect off the allowed
hosts is ``failed``.

The deadline is enforced by ``metdata.net.session``'s watchdog: sessions from ``new_session`` hand
it the connection of each request, and past the deadline it shuts the socket down, the blocked
read fails, and the request ends ``transient``.

``classify`` is the one rule, for every host, of what an HTTP answer means before anything
host-specific: 429 and 5xx are ``transient``; the bot protection's page (HTML naming
Incapsula, with 403 or 200) is ``blocked``; 404 is ``not_found``; 200 is ``ok``. The API adds
its JSON meanings on top (``api.classify``); the image host uses it as is.
"""

from __future__ import annotations

import http.client
import logging
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlencode, urljoin, urlsplit

import requests
import urllib3

from metdata.core.statuses import Status
from metdata.net.session import Pool, new_session, proxies_for, watched

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    """A classified answer: the outcome, the payload when ok, and a reason otherwise."""

    outcome: Status
    payload: object = None
    error: str = ""


@dataclass(frozen=True)
class Policy:
    """What one request may do.

    Attributes:
        hosts: the ``host[:port]`` a request and its redirects may reach.
        schemes: the schemes they may use.
        deadline: seconds for one HTTP request, all of it: connect, headers and the whole body.
            Each redirect hop is a request of its own, with its own deadline (after its own wait).
        max_bytes: the body's cap, counted after decompression.
        max_redirects: redirects followed before giving up.
    """

    hosts: frozenset[str]
    schemes: frozenset[str] = frozenset({"http", "https"})
    deadline: float = 30.0
    max_bytes: int = 4 << 20
    max_redirects: int = 4

    @classmethod
    def same_origin(cls, url: str, **fields) -> Policy:
        """A policy that allows only ``url``'s own scheme and ``host:port``; a malformed
        ``url`` allows nothing (``fetch`` then answers ``failed``)."""
        try:
            parts = urlsplit(url)
        except ValueError:
            return cls(hosts=frozenset(), schemes=frozenset(), **fields)
        return cls(hosts=frozenset({parts.netloc.lower()}), schemes=frozenset({parts.scheme.lower()}), **fields)


@dataclass(frozen=True)
class Reply:
    """One answer read within the policy: the HTTP status, content type and body; or, when
    the transport decided (``outcome`` set), why there is no usable answer."""

    url: str
    status: int = 0
    content_type: str = ""
    body: bytes = b""
    outcome: Status | None = None
    error: str = ""


#: Body bytes per read: small, so the cap is checked often.
READ_SIZE = 1 << 16
_ENCODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def shown(text: str, limit: int = 200) -> str:
    """``repr`` of a URL or its part for a message, cut to ``limit`` characters (a hostile URL can be huge).

    >>> shown("ftp://" + "a" * 500)[-20:]
    "aaaaaa…' (506 chars)"
    """
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}"[:-1] + f"…' ({len(text)} chars)"


def refusal(url: str, policy: Policy) -> str:
    """Why ``url`` may not be fetched under ``policy`` ("" when it may).

    >>> refusal("http://[::1", Policy(frozenset({"a"})))
    "malformed URL 'http://[::1' (Invalid IPv6 URL)"
    >>> refusal("ftp://a/x", Policy(frozenset({"a"})))
    "scheme 'ftp' is not allowed (allowed: http, https): 'ftp://a/x'"
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises on a port that is not a number in range
    except ValueError as exc:
        return f"malformed URL {shown(url)} ({exc})"
    if parts.scheme.lower() not in policy.schemes:
        allowed = ", ".join(sorted(policy.schemes)) or "none"
        return f"scheme {shown(parts.scheme)} is not allowed (allowed: {allowed}): {shown(url)}"
    if not parts.hostname:
        return f"malformed URL {shown(url)} (no host)"
    if parts.netloc.lower() not in policy.hosts:
        return f"host {shown(parts.netloc)} is not allowed (allowed: {', '.join(sorted(policy.hosts))})"
    return ""


def fetch(
    session: requests.Session,
    url: str,
    policy: Policy,
    wait: Callable[[str], None] | None = None,
    params: dict | None = None,
) -> Reply:
    """GET ``url`` under ``policy``; never raises for anything the network or the URL does.

    ``policy.deadline`` bounds each HTTP request as a whole (connect, headers, body), however
    slowly the server sends them; each redirect hop is a request of its own, with its own deadline
    starting after ``wait`` lets it go (the pacer's budget slot).

    Args:
        session: from ``new_session`` or ``new_pool`` (their pools let the watchdog end a request at
            its deadline).
        url: the URL; checked against the policy like every redirect target.
        policy: hosts, schemes, deadline, byte cap.
        wait: called with each URL before it is requested (the pacer's budget).
        params: query parameters of the first request.
    """
    for hop in range(policy.max_redirects + 1):
        refused = refusal(url, policy)
        if refused:
            return Reply(url, outcome=Status.FAILED, error=("redirected: " if hop else "") + refused)
        if wait is not None:
            wait(url)
        deadline = time.monotonic() + policy.deadline
        try:
            with watched(deadline), _get(session, url, params, policy.deadline) as response:
                if response.status in _REDIRECTS and "Location" in response.headers:  # checked at the next hop
                    url, params = urljoin(url, response.headers["Location"]), None
                    continue
                return _read(response, url, policy, deadline)
        except (
            requests.exceptions.InvalidURL,
            requests.exceptions.InvalidSchema,
            requests.exceptions.MissingSchema,
            urllib3.exceptions.LocationValueError,
        ) as exc:
            return Reply(url, outcome=Status.FAILED, error=_describe(exc))
        except (requests.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as exc:
            # refused or reset, timeouts, cut bodies, malformed headers or framing: asking again may work
            late = time.monotonic() >= deadline
            error = f"no complete answer within {policy.deadline:g} s" if late else _describe(exc)
            return Reply(url, outcome=Status.TRANSIENT, error=error)
        except ValueError as exc:  # parsing a redirect's Location (requests does even when not following it)
            return Reply(url, outcome=Status.FAILED, error=f"malformed URL in the request or its redirect ({exc})")
    return Reply(url, outcome=Status.FAILED, error=f"more than {policy.max_redirects} redirects")


#: The statuses whose ``Location`` is a redirect (as ``requests``' ``is_redirect``).
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class _Response:
    """One answer's status line and headers, and its body's stream, whichever client got it."""

    status: int
    headers: object  # case-insensitive: requests' CaseInsensitiveDict or urllib3's HTTPHeaderDict
    raw: urllib3.BaseHTTPResponse


@contextmanager
def _get(session: requests.Session | Pool, url: str, params: dict | None, seconds: float) -> Iterator[_Response]:
    """GET one URL, no redirect followed, the body left to stream; its connection is given back
    (read to the end) or closed when the block ends."""
    if not isinstance(session, Pool):
        with session.get(
            url,
            params=params,
            stream=True,
            allow_redirects=False,
            timeout=(seconds, seconds),
            proxies=proxies_for(url),
        ) as response:
            yield _Response(response.status_code, response.headers, response.raw)
        return
    if params:
        url += ("&" if urlsplit(url).query else "?") + urlencode(params)
    raw = session.urlopen(
        "GET",
        url,
        redirect=False,
        retries=False,
        preload_content=False,
        decode_content=False,
        timeout=urllib3.Timeout(connect=seconds, read=seconds),
    )
    try:
        yield _Response(raw.status, raw.headers, raw)
    finally:
        if raw.connection is not None:  # not read to the end (``_read`` gives a whole one back): drop it
            raw.close()
        raw.release_conn()


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


def _read(response: _Response, url: str, policy: Policy, deadline: float) -> Reply:
    """Read the body within the deadline and the cap, decompressing it ourselves (bounded)."""
    cap = policy.max_bytes
    too_large = Reply(url, outcome=Status.TOO_LARGE, error=f"more than {cap:,} bytes")
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity") and encoding not in _ENCODINGS:
        return Reply(url, outcome=Status.FAILED, error=f"unsupported Content-Encoding {encoding!r}")
    decoder = zlib.decompressobj(_ENCODINGS[encoding]) if encoding in _ENCODINGS else None
    length = response.headers.get("Content-Length", "")
    if decoder is None and length.isdigit() and int(length) > cap:
        return too_large
    raw = response.raw
    late = Reply(url, outcome=Status.TRANSIENT, error=f"no complete answer within {policy.deadline:g} s")
    body = bytearray()
    while True:
        if time.monotonic() >= deadline:
            return late
        chunk = raw.read1(READ_SIZE, decode_content=False)  # the watchdog ends a read past the deadline
        data = chunk
        if decoder is not None:
            try:  # at most one byte past the cap comes out, however much the chunk inflates
                data = decoder.decompress(chunk, cap - len(body) + 1) if chunk else decoder.flush()
                while decoder.eof and decoder.unused_data and len(body) + len(data) <= cap:
                    # gzip allows several members end to end: each one inflates under the same cap
                    rest, decoder = decoder.unused_data, zlib.decompressobj(_ENCODINGS[encoding])
                    data += decoder.decompress(rest, cap - len(body) - len(data) + 1)
            except zlib.error as exc:
                return Reply(url, outcome=Status.TRANSIENT, error=f"bad {encoding} body ({exc})")
        body += data
        if len(body) > cap:
            return too_large
        if not chunk:
            break
    if time.monotonic() >= deadline:  # the watchdog's shutdown looks like the end of a body without a length
        return late
    if decoder is not None and not decoder.eof:
        return Reply(url, outcome=Status.TRANSIENT, error=f"the {encoding} body ended early")
    raw.release_conn()  # read to the end: the connection can serve the next request
    return Reply(url, response.status, response.headers.get("Content-Type", ""), bytes(body))


def is_block_page(content_type: str, body: bytes) -> bool:
    """The bot protection's page: an HTML page where JSON or an image was asked for (the same rule
    on every host). The Met's page names Incapsula; any markup served as ``text/html`` counts too,
    since neither host answers data in HTML and a wrong guess costs only a pause. Markup sent
    with an image content type is a dead link's page (``bad_image``), not a block.

    >>> is_block_page("text/html", b"<html>Request unsuccessful. Incapsula incident ID: 1</html>")
    True
    >>> is_block_page("text/html", b"<html>Welcome</html>"), is_block_page("text/html", b"\\xff\\xd8")
    (True, False)
    >>> is_block_page("image/jpeg", b"<html>Not found</html>")
    False
    """
    head = body[:4096].lstrip().lower()
    if not head.startswith(b"<"):  # JSON or image bytes, whatever the content type says
        return False
    return b"incapsula" in head or content_type.lower().startswith("text/html")


def classify(status: int, content_type: str, body: bytes) -> Answer:
    """What an HTTP answer means on any host: the one place that decides blocked and transient.

    >>> classify(429, "text/html", b"").outcome, classify(502, "", b"").outcome
    (<Status.TRANSIENT: 'transient'>, <Status.TRANSIENT: 'transient'>)
    >>> classify(200, "text/html", b"<html>Incapsula incident ID: 1</html>").outcome
    <Status.BLOCKED: 'blocked'>
    >>> classify(200, "image/jpeg", b"\\xff\\xd8").payload
    b'\\xff\\xd8'
    """
    if status == 429 or status >= 500:
        return Answer(Status.TRANSIENT, error=f"HTTP {status}")
    if status in (200, 403) and is_block_page(content_type, body):
        return Answer(Status.BLOCKED, error=f"HTTP {status} bot-protection page")
    if status == 200:
        return Answer(Status.OK, body)
    if status == 404:
        return Answer(Status.NOT_FOUND, error="HTTP 404")
    return Answer(Status.FAILED, error=f"HTTP {status} {content_type or 'no content type'}")


def judge(reply: Reply) -> Answer:
    """The answer a ``Reply`` means on any host: the transport's outcome, else ``classify``."""
    if reply.outcome is not None:
        return Answer(reply.outcome, error=reply.error)
    return classify(reply.status, reply.content_type, reply.body)


#: ``read_url``'s byte cap: an original rendition is 1-8 MB; 50 MB is the image stage's cap too.
URL_MAX_BYTES = 50 << 20

_HINTS = {
    Status.TRANSIENT: "the host is slow or failing; try again later, or download the file and pass its path",
    Status.BLOCKED: "the host's bot protection blocked this address; wait (up to an hour) and try again",
    Status.TOO_LARGE: "pass a smaller rendition of the image, or a local file",
}


def fetch_one(url: str, policy: Policy) -> Reply:
    """``fetch`` of one user-given URL in a session of its own (``read_url``, the server's image URLs)."""
    with new_session(1) as session:
        return fetch(session, url, policy)


def read_url(url: str, deadline: float = 30.0, max_bytes: int = URL_MAX_BYTES) -> bytes:
    """One user-given URL's body (``predict``): one request, redirects only on the URL's own
    host, ``deadline`` seconds in all, at most ``max_bytes`` after decompression.

    Raises:
        UserError: the URL is malformed or refused, or the answer is not a whole 200 within bounds.
    """
    from metdata.errors import UserError

    hosts = Policy.same_origin(url).hosts
    answer = judge(fetch_one(url, Policy(hosts, deadline=deadline, max_bytes=max_bytes)))
    if answer.outcome is not Status.OK:
        hint = _HINTS.get(answer.outcome, "pass an http(s) URL of the image itself, or download it and pass the file")
        raise UserError(f"cannot download {url} ({answer.outcome.value}: {answer.error}): {hint}")
    return answer.payload
