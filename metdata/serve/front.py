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


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline on the request head and a connection cap.

    uvicorn only times out a connection idle after a response (``timeout_keep_alive``, cancelled
    by any byte received): a client that connects and says nothing, or trickles its head a byte a
    second, is kept for ever. Here a request head must be complete ``head_deadline`` seconds after
    the connection opened (or after the previous response), however its bytes arrive; a
    connection beyond ``max_connections`` of this worker is answered 503 and closed at once.
    """

    head_deadline: float = 10.0
    max_connections: int = 500

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._head_timer = None
        self._refused = len(self.connections) > self.max_connections
        if self._refused:  # answered at once; what the client sends is read and dropped for a second, so
            body = b'{"error": "too many connections to this server; retry in a moment"}'  # no reset loses it
            transport.write(
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\nretry-after: 1\r\nconnection: close\r\n\r\n%s" % (len(body), body)
            )
            if transport.can_write_eof():
                transport.write_eof()
            self._head_timer = self.loop.call_later(1.0, transport.close)
            return
        self._arm()

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()  # the next request's head on a kept-alive connection has its own deadline

    def connection_lost(self, exc) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer = self.loop.call_later(self.head_deadline, self._head_expired)

    def _head_expired(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():  # no whole head yet
            self.transport.close()


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
    """

    def __init__(self, wsgi, health, max_body: int, body_deadline: float, threads: int):
        from a2wsgi import WSGIMiddleware

        self.health = health
        self.max_body = max_body
        self.body_deadline = body_deadline
        self.wsgi = WSGIMiddleware(wsgi, workers=threads)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                return await self.wsgi(scope, receive, send)
            return None  # no websockets here
        if scope["path"] in ("/healthz", "/readyz") and scope["method"] in ("GET", "HEAD"):
            status, payload = self.health(scope["path"])
            start, body = _json(status, payload)
            await send(start)
            return await send(body if scope["method"] == "GET" else {**body, "body": b""})
        length = _content_length(scope)
        if length is not None and length > self.max_body:  # refused before a byte of it is read
            return await _answer(send, 413, f"the request is over the {self.max_body:,} byte cap (--max-upload-mb)")
        body = bytearray()
        try:
            async with asyncio.timeout(self.body_deadline):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    body += message.get("body", b"")
                    if len(body) > self.max_body:
                        return await _answer(send, 413, f"the request is over the {self.max_body:,} byte cap")
                    if not message.get("more_body"):
                        break
        except TimeoutError:
            return await _answer(send, 408, f"the request body did not arrive within {self.body_deadline:g} s")
        await self.wsgi(scope, _replay(bytes(body), receive), _whole_response(send))
        return None


def _content_length(scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # h11 has already refused a malformed one
    return None


async def _answer(send, status: int, error: str) -> None:
    start, body = _json(status, {"error": error}, close=True)
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
