"""The I/O side of a server worker: where a slow client costs a socket, not a model thread.

Runs on the worker's event loop (uvicorn, under gunicorn): ``DeadlineH11Protocol`` gives every
request head a whole deadline (not a per-byte one) and caps the connections of a worker;
``Front`` answers ``/healthz`` and ``/readyz`` on the loop itself, reads a whole body under a size
cap and a body deadline, and only then hands the complete request to the Flask app's threads
(the ones that run the model), through a2wsgi; their answer is taken whole from the thread, and
written at the client's pace by the loop.
"""

from __future__ import annotations

import asyncio
import json
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)


#: the paths answered on the loop, never by the app's threads
HEALTH_PATHS = ("/healthz", "/readyz")
#: the largest request head (its header lines) answered; h11 (``h11_max_incomplete_event_size``) bounds
#: only a head still incomplete, so a whole larger head that arrives in one read is refused here (431)
MAX_HEAD = 64 << 10


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with deadlines on the request head and the answer's writing, and a connection cap.

    uvicorn only times out a connection idle after a response (``timeout_keep_alive``, cancelled
    by any byte received): a client that connects and says nothing, or trickles its head a byte a
    second, is kept for ever. Here a request head must be complete ``head_deadline`` seconds after
    the connection opened (or after the previous response), however its bytes arrive.

    An answer must be written out (to the kernel) within ``write_deadline`` seconds of its end, or
    the connection is dropped with what is unsent (``transport.close`` would keep it until the
    client reads): a client that never reads holds at most one answer for that long. While an
    answer waits on a full write buffer, the next pipelined request is not read.

    Beyond ``max_connections`` of this worker, ``HEALTH_RESERVE`` more connections are read under
    a one-second head deadline and answered once: ``GET``/``HEAD`` ``/healthz`` and ``/readyz``
    as usual (so a probe is not refused because clients hold the cap), anything else 503, then
    closed. Beyond those, a connection is answered 503 and closed at once, unread.
    """

    head_deadline: float = 10.0
    write_deadline: float = 30.0
    max_connections: int = 500

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._head_timer = None
        self._write_timer = None
        self._waiting_write = False
        over = len(self.connections) - self.max_connections
        self._refused = over > HEALTH_RESERVE
        if self._refused:  # answered at once; what the client sends is read and dropped for a second, so
            self.connections.discard(self)  # (not counted meanwhile: a flood of refused ones must not refuse a probe)
            body = b'{"error": "too many connections to this server; retry in a moment"}'  # no reset loses it
            transport.write(
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\nretry-after: 1\r\nconnection: close\r\n\r\n%s" % (len(body), body)
            )
            if transport.can_write_eof():
                transport.write_eof()
            self._head_timer = self.loop.call_later(1.0, transport.close)
            return
        if over > 0:  # the health reserve: one request, a short head deadline
            self.app = _over_cap(self.app)
            self._head_timer = self.loop.call_later(min(1.0, self.head_deadline), self._head_expired)
            return
        self._arm()

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)

    def on_response_complete(self) -> None:
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        if self.transport.get_write_buffer_size():  # this answer, at least, is not out yet
            self._write_timer = self.loop.call_later(self.write_deadline, self._write_expired)
        if self.flow.write_paused and not self.transport.is_closing():
            if self._head_timer is not None:  # no next request is read until the buffer drains (resume_writing)
                self._head_timer.cancel()
                self._head_timer = None
            self._waiting_write = True
            return
        super().on_response_complete()
        self._arm()  # the next request's head on a kept-alive connection has its own deadline

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._waiting_write and not self.transport.is_closing():
            self._waiting_write = False
            super().on_response_complete()
            self._arm()

    def connection_lost(self, exc) -> None:
        for timer in (self._head_timer, self._write_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._write_timer = None
        self._waiting_write = False
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer = self.loop.call_later(self.head_deadline, self._head_expired)

    def _head_expired(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():  # no whole head yet
            self.transport.close()

    def _write_expired(self) -> None:
        self._write_timer = None
        if self.transport.get_write_buffer_size():  # the last answer is still not written: drop it and the client
            log.debug("an answer was not read within %g s; connection dropped", self.write_deadline)
            self.transport.abort()


#: connections beyond ``max_connections`` read for one request (health answered, anything else 503)
HEALTH_RESERVE = 16


def _over_cap(app):
    """The ASGI app of a connection over the cap: health through ``app``, anything else 503; then closed."""

    async def guarded(scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] in HEALTH_PATHS and scope["method"] in ("GET", "HEAD"):
            return await app(scope, receive, _closing(send))
        start, body = _json(503, {"error": "too many connections to this server; retry in a moment"}, close=True)
        start["headers"].append((b"retry-after", b"1"))
        await send(start)
        await send(body)
        return None

    return guarded


def _closing(send):
    """An ASGI ``send`` that marks its answer ``connection: close``."""

    async def closing(message) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
            message = {**message, "headers": [*headers, (b"connection", b"close")]}
        await send(message)

    return closing


def _json(status: int, payload: dict, close: bool = False) -> tuple[dict, dict]:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    return {"type": "http.response.start", "status": status, "headers": headers}, {
        "type": "http.response.body",
        "body": body,
    }


class Front:
    """The ASGI app of a worker: health on the loop, whole bodies under a cap and a deadline, then WSGI.

    Args:
        wsgi: the Flask app (the dashboard and the JSON API).
        health: called on the loop for ``GET /healthz`` and ``GET /readyz`` (the path), returns
            (status, JSON payload); it must not block.
        max_body: the largest body read, in bytes (a larger declared length is refused unread).
        body_deadline: seconds for a whole body to arrive, from the end of its head.
        threads: the threads that run the Flask app (and so the model).
        max_buffered: the request body bytes this worker holds at once, read or being answered
            (default 4 x ``max_body``; never under ``max_body``); a request that would go over it
            is answered 503 with ``Retry-After`` (a declared length counts whole from its first byte).
    """

    def __init__(
        self, wsgi, health, max_body: int, body_deadline: float, threads: int, max_buffered: int | None = None
    ):
        from a2wsgi import WSGIMiddleware

        self.health = health
        self.max_body = max_body
        self.max_buffered = max(max_body, max_buffered if max_buffered is not None else 4 * max_body)
        self.buffered = 0
        self.body_deadline = body_deadline
        self.wsgi = WSGIMiddleware(wsgi, workers=threads)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                return await self.wsgi(scope, receive, send)
            return None  # no websockets here
        if sum(len(name) + len(value) + 4 for name, value in scope["headers"]) > MAX_HEAD:
            return await _answer(send, 431, f"the request's headers are over {MAX_HEAD >> 10} KiB")
        if scope["path"] in HEALTH_PATHS and scope["method"] not in ("GET", "HEAD"):
            start, body = _json(405, {"error": f"{scope['method']} is not allowed here: GET {scope['path']}"}, True)
            start["headers"].append((b"allow", b"GET, HEAD"))
            await send(start)
            return await send(body)
        if scope["path"] in HEALTH_PATHS:
            status, payload = self.health(scope["path"])
            start, body = _json(status, payload, close=_has_body(scope))  # its body unread: the connection ends
            await send(start)
            return await send(body if scope["method"] == "GET" else {**body, "body": b""})
        length = _content_length(scope)
        if length is not None and length > self.max_body:  # refused before a byte of it is read
            return await _answer(send, 413, f"the request is over the {self.max_body:,} byte cap (--max-upload-mb)")
        held = 0  # this request's share of the worker's body budget, from its first byte to its answer
        try:
            body = bytearray()
            try:
                async with asyncio.timeout(self.body_deadline):
                    while True:
                        message = await receive()
                        if message["type"] == "http.disconnect":
                            return None
                        chunk = message.get("body", b"")
                        if len(body) + len(chunk) > self.max_body:
                            return await _answer(send, 413, f"the request is over the {self.max_body:,} byte cap")
                        want = max(len(body) + len(chunk), length or 0) - held  # a declared length, reserved whole
                        if want > 0:
                            if self.buffered + want > self.max_buffered:
                                return await _answer(send, 503, _BUSY, retry_after=True)
                            self.buffered += want
                            held += want
                        body += chunk
                        if not message.get("more_body"):
                            break
            except TimeoutError:
                return await _answer(send, 408, f"the request body did not arrive within {self.body_deadline:g} s")
            await self.wsgi(scope, _replay(bytes(body), receive), _whole_response(send))
            return None
        finally:
            self.buffered -= held


_BUSY = "this server is holding as many uploads as it can (--max-buffered-mb); retry in a moment"


def _has_body(scope) -> bool:
    """Whether a request declares a body (a non-zero length, or chunks)."""
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() not in (b"0", b"")):
            return True
    return False


def _content_length(scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # h11 has already refused a malformed one
    return None


async def _answer(send, status: int, error: str, retry_after: bool = False) -> None:
    start, body = _json(status, {"error": error}, close=True)
    if retry_after:
        start["headers"].append((b"retry-after", b"2"))
    await send(start)
    await send(body)


def _whole_response(send):
    """An ASGI ``send`` that holds a response until its last part, then sends it whole.

    a2wsgi's thread waits while its queue of response parts is full, and the queue drains only as
    fast as the client reads: a client that never reads a large answer (a script bundle) would
    hold a model thread. Held here, the parts leave the thread at once; the socket's writing, at
    the client's pace, is the loop's.
    """
    start: dict | None = None
    parts: list[bytes] = []

    async def held(message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            start = message
            return
        parts.append(message.get("body", b""))
        if message.get("more_body"):
            return
        await send(start)
        await send({"type": "http.response.body", "body": b"".join(parts), "more_body": False})

    return held


def _replay(body: bytes, receive):
    """The ASGI ``receive`` of a request whose body was read whole: the body once, then the real one."""
    sent = False

    async def replayed():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
