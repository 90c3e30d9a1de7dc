"""A hostile HTTP server for the tests: every kind of bad answer, one per path, on 127.0.0.1.

``/objects/<id>`` answers as the API would, with the behaviour ``API_CASES[id]`` names;
``/img/<kind>`` answers as the image host would, with the behaviour ``kind``. Every handler
ends within ``MAX_SECONDS`` (a trickle stops, a stall returns), so a test that waits on it is
bounded even when the client under test is not. ``Hostile.hits`` counts requests per path;
a second server (``Hostile()`` again) stands for "another port" that must never be reached.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections import Counter
from contextlib import suppress
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

MAX_SECONDS = 20.0
BLOCK = b"<html><body>Request unsuccessful. Incapsula incident ID: 1234-5678</body></html>"
DECODED_BOMB = 200 << 20  # bytes a gzip bomb decodes to (its compressed body is ~200 KB)
HUGE = 100 << 20  # bytes of a huge plain body (sent lazily, 1 MB at a time)


@cache
def gzip_bomb(prefix: bytes = b"", suffix: bytes = b"") -> bytes:
    """``prefix`` + DECODED_BOMB spaces + ``suffix``, gzipped: ~200 KB on the wire, huge decoded
    (gzip members end to end, as the format allows: one MB of spaces compressed once)."""
    megabyte = gzip.compress(b" " * (1 << 20), 9)
    return gzip.compress(prefix) + megabyte * (DECODED_BOMB >> 20) + gzip.compress(suffix)


@cache
def png(side: int = 40) -> bytes:
    """A small real PNG (a gradient, so it is not blank)."""
    pixels = (np.arange(side * side * 3) % 251).astype(np.uint8).reshape(side, side, 3)
    return cv2.imencode(".png", pixels)[1].tobytes()


def record(object_id, **fields) -> dict:
    """A minimal API record."""
    return {"objectID": object_id, "title": f"Object {object_id}", "primaryImageSmall": "", **fields}


#: id -> (behaviour, the status its row must end with)
API_CASES = {
    1: ("bool_id", "failed"),  # {"objectID": true}: not the record of id 1
    2: ("ok", "ok"),
    3: ("gzip_bomb", "too_large"),
    4: ("huge", "too_large"),
    28: ("huge_stream", "too_large"),  # no Content-Length: the cap must hold while streaming
    5: ("deep", "failed"),
    6: ("trickle", "transient"),
    7: ("cut", "transient"),
    8: ("bad_gzip", "transient"),
    9: ("redirect_ftp", "failed"),
    10: ("redirect_other_port", "failed"),
    11: ("redirect_malformed", "failed"),
    12: ("redirect_same", "ok"),
    13: ("429", "transient"),
    14: ("503", "transient"),
    15: ("block_403", "blocked"),
    16: ("block_200", "blocked"),
    17: ("html_200", "blocked"),  # markup with 200: the block page without its name
    18: ("octet_stream", "failed"),
    19: ("json_as_text", "ok"),  # a JSON record with a wrong content type is still the record
    20: ("wrong_types", "failed"),  # values that do not fit the schema
    21: ("list_body", "failed"),
    22: ("not_found", "not_found"),
    23: ("stall", "transient"),
    24: ("huge_int", "failed"),
    25: ("deep_field", "failed"),
    26: ("ok_gzip", "ok"),
    27: ("measurements_str", "failed"),  # makes records.record_row itself raise
    29: ("header_trickle", "transient"),
    30: ("continue_flood", "transient"),
    31: ("slow_headers", "transient"),
    32: ("endless_trailers", "transient"),
    33: ("two_lengths", "transient"),
}

#: The answers that never end unless the client's deadline covers the whole request: every read
#: gets a byte in time (the headers, ``100 Continue`` after ``100 Continue``, a chunked body's trailers).
ENDLESS = ("header_trickle", "continue_flood", "slow_headers", "endless_trailers")

#: image kind -> the status its slot must end with
IMAGE_CASES = {
    "good": "ok",
    "good_as_html": "ok",  # real image bytes, wrong content type
    "redirect_same": "ok",
    "gzip_bomb": "too_large",
    "huge": "too_large",
    "huge_stream": "too_large",
    "trickle": "transient",
    "stall": "transient",
    "cut": "transient",
    "bad_gzip": "transient",
    "redirect_ftp": "failed",
    "redirect_other_port": "failed",
    "redirect_malformed": "failed",
    "429": "transient",
    "503": "transient",
    "block_403": "blocked",
    "block_200": "blocked",
    "html_200": "blocked",
    "not_found": "not_found",
    "header_trickle": "transient",
    "continue_flood": "transient",
    "slow_headers": "transient",
    "endless_trailers": "transient",
    "two_lengths": "transient",  # a malformed answer from the server, not a malformed URL
}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass  # clients that hang up on a hostile answer are the point, not an error


class Hostile:
    """The server: ``start()``, ``url``, ``hits`` (Counter of paths), ``stop()``; a context manager."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.other: Hostile | None = None  # the server that redirect_other_port points at
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> Hostile:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                owner.hits[self.path] += 1
                with suppress(BrokenPipeError, ConnectionResetError):  # the client gave up, as it should
                    owner.answer(self)

        self._server = _Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Hostile:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- answers -------------------------------------------------------------------------------

    def answer(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path.split("?")[0]
        if path == "/objects":  # the id listing: every case
            return send(
                h, 200, "application/json", json.dumps({"total": len(API_CASES), "objectIDs": list(API_CASES)}).encode()
            )
        if path.startswith("/objects/"):
            try:
                object_id = int(path.rsplit("/", 1)[1])
            except ValueError:
                return send(h, 400, "application/json", b'{"message":"could not parse objectID"}')
            kind = "ok" if h.path.endswith("?moved") else API_CASES.get(object_id, ("ok", "ok"))[0]
            return self.api(h, kind, object_id)
        if path.startswith("/img/"):
            return self.image(h, path.removeprefix("/img/").split(".")[0])
        send(h, 404, "text/plain", b"no such path")

    def api(self, h, kind: str, object_id: int) -> None:
        body = {
            "ok": record(object_id),
            "bool_id": record(True),
            "json_as_text": record(object_id),
            "wrong_types": record(object_id, isPublicDomain="yes", objectBeginDate="soon"),
            "list_body": [object_id],
            "huge_int": record(object_id, objectBeginDate=10**30),
            "measurements_str": record(object_id, measurements="tall"),
            "ok_gzip": record(object_id),
        }.get(kind)
        if kind == "json_as_text":
            return send(h, 200, "text/plain", json.dumps(body).encode())
        if kind == "ok_gzip":
            return send(h, 200, "application/json", gzip.compress(json.dumps(body).encode()), gzip=True)
        if body is not None:
            return send(h, 200, "application/json", json.dumps(body).encode())
        if kind == "gzip_bomb":
            bomb = gzip_bomb(b'{"objectID": %d, "title": "' % object_id, b'"}')
            return send(h, 200, "application/json", bomb, gzip=True)
        if kind == "huge":
            prefix = b'{"objectID": %d, "title": "' % object_id
            return send_lazily(h, 200, "application/json", prefix, HUGE, b'"}')
        if kind == "huge_stream":
            prefix = b'{"objectID": %d, "title": "' % object_id
            return send_lazily(h, 200, "application/json", prefix, HUGE, b'"}', announce=False)
        if kind == "deep":
            return send(h, 200, "application/json", b"[" * 200_000 + b"]" * 200_000)
        if kind == "deep_field":
            return send(
                h, 200, "application/json", b'{"objectID": 25, "title": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
            )
        if kind == "not_found":
            return send(h, 404, "application/json", b'{"message":"ObjectID not found"}')
        if kind == "octet_stream":
            return send(h, 200, "application/octet-stream", b"\x00\x01garbage")
        self.common(h, kind, good=json.dumps(record(object_id)).encode(), same=f"/objects/{object_id}?moved")

    def image(self, h, kind: str) -> None:
        if kind == "good":
            return send(h, 200, "image/png", png())
        if kind == "good_as_html":
            return send(h, 200, "text/html", png())
        if kind == "gzip_bomb":
            return send(h, 200, "image/jpeg", gzip_bomb(), gzip=True)
        if kind == "huge":
            return send_lazily(h, 200, "image/jpeg", b"\xff\xd8\xff", HUGE, b"")
        if kind == "huge_stream":
            return send_lazily(h, 200, "image/jpeg", b"\xff\xd8\xff", HUGE, b"", announce=False)
        if kind == "not_found":
            return send(h, 404, "text/html", b"<html>Not found</html>")
        self.common(h, kind, good=png(), same="/img/good.png")

    def common(self, h, kind: str, good: bytes, same: str) -> None:
        """The behaviours both hosts share."""
        if kind == "trickle":  # 1 byte a second, for at most MAX_SECONDS
            h.send_response(200)
            h.send_header("Content-Type", "application/octet-stream")
            h.send_header("Content-Length", str(len(good)))
            h.end_headers()
            for byte in good[: int(MAX_SECONDS)]:
                h.wfile.write(bytes([byte]))
                h.wfile.flush()
                time.sleep(1)
            h.close_connection = True
        elif kind == "stall":  # headers never come
            time.sleep(MAX_SECONDS)
            h.close_connection = True
        elif kind == "cut":  # promise more than is sent, then close
            h.send_response(200)
            h.send_header("Content-Type", "application/octet-stream")
            h.send_header("Content-Length", str(len(good) + 1000))
            h.end_headers()
            h.wfile.write(good[: len(good) // 2])
            h.close_connection = True
        elif kind == "header_trickle":  # the status line, then a header one byte every 0.5 s
            dribble(h, b"HTTP/1.1 200 OK\r\n", b"X", 0.5)
        elif kind == "continue_flood":  # "100 Continue", again and again: the real answer never comes
            dribble(h, b"", b"HTTP/1.1 100 Continue\r\n\r\n" * 100, 0.01)
        elif kind == "slow_headers":  # 99 headers 0.3 s apart, then the answer
            dribble(h, b"HTTP/1.1 200 OK\r\n", b"X-A: 1\r\n", 0.3, 99, b"Content-Length: 2\r\n\r\nok")
        elif kind == "endless_trailers":  # a chunked body whose trailer lines never end
            head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n"
            dribble(h, head, b"X-T: 1\r\n" * 100, 0.01)
        elif kind == "two_lengths":
            h.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde")
            h.close_connection = True
        elif kind == "bad_gzip":
            send(h, 200, "application/json", b"\x1f\x8b\x08\x00garbage, not deflate" * 10, gzip=True)
        elif kind == "redirect_ftp":
            redirect(h, "ftp://127.0.0.1/x")
        elif kind == "redirect_other_port":
            redirect(h, f"{self.other.url if self.other else 'http://127.0.0.1:9'}{same}")
        elif kind == "redirect_malformed":
            redirect(h, "http://[::1")
        elif kind == "redirect_same":
            redirect(h, same)
        elif kind in ("429", "503"):
            send(h, int(kind), "text/html", b"<html>try later</html>")
        elif kind == "block_403":
            send(h, 403, "text/html", BLOCK)
        elif kind == "block_200":
            send(h, 200, "text/html", BLOCK)
        elif kind == "html_200":
            send(h, 200, "text/html", b"<html><body>Welcome to our portal</body></html>")
        else:
            send(h, 500, "text/plain", f"unknown behaviour {kind}".encode())


def send(h, status: int, ctype: str, body: bytes, gzip: bool = False) -> None:
    h.send_response(status)
    h.send_header("Content-Type", ctype)
    h.send_header("Content-Length", str(len(body)))
    if gzip:
        h.send_header("Content-Encoding", "gzip")
    h.end_headers()
    h.wfile.write(body)


def send_lazily(h, status: int, ctype: str, prefix: bytes, n: int, suffix: bytes, announce: bool = True) -> None:
    """A body of ``prefix`` + n spaces + ``suffix``, never held in memory at once; without
    ``announce``, no Content-Length: the body ends when the connection closes."""
    h.send_response(status)
    h.send_header("Content-Type", ctype)
    if announce:
        h.send_header("Content-Length", str(len(prefix) + n + len(suffix)))
    else:
        h.send_header("Connection", "close")
        h.close_connection = True
    h.end_headers()
    h.wfile.write(prefix)
    block = b" " * (1 << 20)
    for _ in range(n >> 20):
        h.wfile.write(block)
    h.wfile.write(suffix)


def dribble(h, head: bytes, piece: bytes, every: float, times: int = 1 << 30, tail: bytes = b"") -> None:
    """Raw bytes: ``head``, then ``piece`` every ``every`` seconds (``times`` times, for at most
    MAX_SECONDS), then ``tail``; then the connection closes."""
    h.close_connection = True
    h.wfile.write(head)
    end = time.monotonic() + MAX_SECONDS
    for _ in range(times):
        if time.monotonic() >= end:
            return
        h.wfile.write(piece)
        time.sleep(every)
    h.wfile.write(tail)


def redirect(h, location: str) -> None:
    h.send_response(302)
    h.send_header("Location", location)
    h.send_header("Content-Length", "0")
    h.end_headers()
