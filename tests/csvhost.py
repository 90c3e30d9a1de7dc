"""A real HTTP server on 127.0.0.1 that serves CSV files (and what a hostile host answers instead).

``CsvHost.serve(path, body, ...)`` publishes an answer at a path and returns its URL. The emulator
will serve its own catalog as ``GET /openaccess/MetObjects.csv`` (``MetEmulator.csv_url``); a test
that only needs a well-formed file can take that URL instead of ``serve``'s.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CHUNK = 1 << 20


@dataclass(frozen=True)
class Answer:
    """What the host answers at one path.

    ``body`` is bytes or a file streamed in chunks (never read whole); ``cut_after`` sends only that
    many bytes, then drops the connection; ``length`` False sends no Content-Length (the body ends
    when the connection closes).
    """

    body: bytes | Path = b""
    status: int = 200
    content_type: str = "text/csv; charset=utf-8"
    headers: dict = field(default_factory=dict)
    cut_after: int | None = None
    length: bool = True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        answer = self.server.answers.get(self.path)
        if answer is None:
            answer = Answer(b"<html><body>404 Not Found</body></html>", 404, "text/html")
        size = answer.body.stat().st_size if isinstance(answer.body, Path) else len(answer.body)
        self.send_response(answer.status)
        if answer.content_type:
            self.send_header("Content-Type", answer.content_type)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        if answer.length:
            self.send_header("Content-Length", str(size))
        self.send_header("Connection", "close")
        self.end_headers()
        budget = size if answer.cut_after is None else answer.cut_after
        for chunk in _chunks(answer.body):
            if budget <= 0:
                break
            self.wfile.write(chunk[:budget])
            budget -= len(chunk)
        self.close_connection = True


def _chunks(body: bytes | Path):
    if isinstance(body, bytes):
        yield body
        return
    with body.open("rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


class CsvHost:
    """The server; ``stop()`` when done (the fixture does)."""

    def __init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.answers = {}
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def serve(self, path: str, body: bytes | Path = b"", **fields) -> str:
        """Answer ``body`` (or what ``fields`` say, as ``Answer``) at ``path``; return its URL."""
        self._server.answers[path] = Answer(body, **fields)
        return self.base + path

    def redirect(self, path: str, location: str, status: int = 302) -> str:
        """Redirect ``path`` to ``location``; return its URL."""
        return self.serve(path, b"", status=status, content_type="", headers={"Location": location})

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
