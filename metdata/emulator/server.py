"""The Met emulator's HTTP server: both Met hosts, their errors and their bot protection.

One threaded server on one port answers the collection API under ``/public/collection/`` and
the image host under ``/CRDImages/``; the two keep separate throttle budgets, as the real hosts
do. Counters are readable at ``/__emulator__/stats``, outside the API paths and unthrottled.

In-process use (tests, the demo)::

    with MetEmulator(EmulatorConfig(objects=100, throttle=False)) as met:
        requests.get(f"{met.url}/objects/{some_id}")
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import socket
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from metdata.core.schema import DEPARTMENTS
from metdata.emulator import openaccess, search
from metdata.emulator.catalog import CACHE_BYTES, Image, open_catalog
from metdata.emulator.faults import FaultPlan, draw
from metdata.emulator.protection import Throttle, ThrottleConfig, block_page
from metdata.emulator.synthetic import IMAGE_HOST

log = logging.getLogger(__name__)

API_PREFIX = "/public/collection"
STATS_PATH = "/__emulator__/stats"
BAD_DATE = "Date not valid. Dates must be in the format YYYY-MM-DD e.g. 1987-05-03"
RETIRED = {
    "message": "The /public/collection/v1/search endpoint was retired on 2026-10-01; "
    "use /public/collection/v1.1/search instead.",
    "replacement": "/public/collection/v1.1/search",
}
NOT_FOUND_PAGE = (
    b"<!DOCTYPE html><html><head><title>404 - File or directory not found.</title></head>"
    b"<body><h2>404 - File or directory not found.</h2><p>The resource you are looking for "
    b"might have been removed, had its name changed, or is temporarily unavailable.</p>"
    b"</body></html>"
)
_OBJECT = re.compile(r"^/public/collection/v1/objects/(?P<id>[^/]+)$")
_ID = re.compile(r"^-?\d{1,18}$")  # longer than an int64: "could not parse", as the real API
#: A GET carries no body; one this small is read and dropped so keep-alive stays in step.
MAX_REQUEST_BODY = 1 << 20
#: Seconds an idle keep-alive connection is kept open (and its thread), as real servers do.
IDLE_TIMEOUT = 120.0


@dataclass(frozen=True)
class EmulatorConfig:
    """Everything the emulator can be told; the CLI builds one from its flags.

    Attributes:
        host, port: where to listen; port 0 picks a free port.
        objects, seed: size and seed of the synthetic catalog.
        catalog: a replay catalog folder instead of the synthetic one.
        latency: seconds added to every answer.
        throttle: the bot protection on or off; ``throttle_*`` its budget.
        block_200_share: share of block pages sent with status 200 instead of 403.
        fault_rate, faults: which faults, how often (see ``faults``).
        slow_seconds: how long a ``slow`` fault holds its answer.
        image_cache_bytes: the most bytes of drawn images the synthetic catalog keeps (on disk,
            in a temporary folder removed by ``stop()``), so each image is drawn once.
        mix: the synthetic catalog's proportions: ``"real"`` (paintings ~2 % of objects, ~60 %
            of them public domain) or ``"dense"`` (~17 % paintings: small tests, the demo).
        csv_date: the date of the Open Access CSV served at ``csv_url``: it holds the listed
            objects last updated before it (by default all but the newest ~4 %).
        prebuild_search: build the search index in ``start()``, before serving (about 5 s per
            100,000 objects), instead of on the first search: a benchmark's first search then
            costs what later ones do.
    """

    host: str = "127.0.0.1"
    port: int = 0
    objects: int = 10_000
    seed: int = 0
    catalog: Path | None = None
    latency: float = 0.0
    throttle: bool = True
    throttle_window: float = ThrottleConfig.window
    throttle_burst: int = ThrottleConfig.burst
    throttle_penalty: float = ThrottleConfig.penalty
    block_200_share: float = 0.2
    fault_rate: float = 0.0
    faults: frozenset[str] = field(default_factory=frozenset)
    slow_seconds: float = 30.0
    image_cache_bytes: int = CACHE_BYTES
    mix: str = "real"
    csv_date: dt.date = openaccess.CSV_DATE
    prebuild_search: bool = False


class _Stats:
    """Per-host counters, updated from many handler threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, Counter] = defaultdict(Counter)

    def add(self, host: str, *names: str) -> None:
        with self._lock:
            for name in names:
                self._counts[host][name] += 1

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {host: dict(counts) for host, counts in self._counts.items()}


class MetEmulator:
    """A running (or ready-to-run) emulator. The socket is bound on construction, so ``url``
    is valid before ``start()`` and requests queue until the server thread accepts them.

    Raises:
        OSError: if the address cannot be bound.
        ValueError: for a bad catalog folder or catalog size.
    """

    def __init__(self, config: EmulatorConfig = EmulatorConfig()) -> None:
        self.config = config
        self.catalog = open_catalog(config.objects, config.seed, config.catalog, config.image_cache_bytes, config.mix)
        self.throttle = Throttle(ThrottleConfig(config.throttle_window, config.throttle_burst, config.throttle_penalty))
        self.faults = FaultPlan(config.seed, config.fault_rate, frozenset(config.faults))
        self.stats = _Stats()
        self._attempts: Counter[str] = Counter()
        self._attempts_lock = threading.Lock()
        self._incidents = 0
        self._server = _Server((config.host, config.port), _Handler)
        self._server.emulator = self
        self._thread: threading.Thread | None = None

    @property
    def base(self) -> str:
        """``http://HOST:PORT``, the address of both hosts."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def url(self) -> str:
        """The API base URL, what ``--api`` takes: ``http://HOST:PORT/public/collection/v1``."""
        return f"{self.base}{API_PREFIX}/v1"

    @property
    def csv_url(self) -> str:
        """The Open Access CSV of the catalog: ``http://HOST:PORT/openaccess/MetObjects.csv``."""
        return f"{self.base}{openaccess.CSV_PATH}"

    def start(self) -> MetEmulator:
        """Serve in a background thread (after building the search index if ``prebuild_search``); return self."""
        if self.config.prebuild_search:
            self.catalog.search_index  # noqa: B018 - built on first access
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-met", daemon=True)
        self._thread.start()
        log.info("Met emulator serving %d objects at %s", len(self.catalog), self.url)
        return self

    def stop(self) -> None:
        """Stop serving (if started), close the socket and remove the drawn images."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()
        self.catalog.close()

    def __enter__(self) -> MetEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def attempt(self, key: str) -> int:
        """Count one request for ``key``; return how many came before it."""
        with self._attempts_lock:
            n = self._attempts[key]
            self._attempts[key] += 1
            return n

    def incident(self) -> int:
        """Number the next block incident."""
        with self._attempts_lock:
            self._incidents += 1
            return self._incidents


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    emulator: MetEmulator

    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):  # a client that gave up: normal under faults
            log.debug("connection from %s ended early", client_address, exc_info=True)
        else:  # a bug: the client saw its connection close without an answer
            log.error("answering %s failed", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive, so clients can pool connections: every answer has a
    Content-Length (HEAD's is the GET's) and says ``Connection: close`` when the server will
    close; a request body is read and dropped, so the next (pipelined) request is read from its
    start; ``Expect: 100-continue`` gets its ``100 Continue`` (``BaseHTTPRequestHandler``); an
    HTTP/1.0 client keeps its connection only when it asks to, and is told so."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without this, Nagle + delayed ACK add 40 ms.
    disable_nagle_algorithm = True
    timeout = IDLE_TIMEOUT
    server_version = "fake-met"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s " + format, self.client_address[0], *args)

    # -- plumbing ---------------------------------------------------------------------------

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        # The base class only knows a Connection header that is exactly "close" or "keep-alive".
        tokens = {t.strip().lower() for t in self.headers.get("Connection", "").split(",")}
        if "close" in tokens:
            self.close_connection = True
        elif "keep-alive" in tokens:
            self.close_connection = False
        return True

    def _send(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        elif self.request_version == "HTTP/1.0":
            self.send_header("Connection", "keep-alive")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: object, **headers: str) -> None:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        self._send(status, body, "application/json; charset=UTF-8", **headers)

    def _stream(self, chunks: Iterator[bytes], content_type: str) -> None:
        """A 200 whose body is made as it is sent: chunked (HTTP/1.0: until the connection closes)."""
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        chunked = self.request_version != "HTTP/1.0"
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.close_connection = True
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command == "HEAD":
            return
        for chunk in chunks:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _html(self, status: int, body: bytes, **headers: str) -> None:
        self._send(status, body, "text/html; charset=UTF-8", **headers)

    def _drop(self) -> None:
        """Close the connection without an answer, as a failing proxy does."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.connection.close()

    def _skip_body(self) -> bool:
        """Read and drop the request's body; if its framing is bad or it is too large, answer
        400 or 413 and close. Return whether the request goes on."""
        if "Transfer-Encoding" not in self.headers and "Content-Length" not in self.headers:
            return True  # the usual GET
        try:
            if "Transfer-Encoding" in self.headers:
                if self.headers["Transfer-Encoding"].lower().rsplit(",", 1)[-1].strip() != "chunked":
                    raise ValueError("a Transfer-Encoding that does not end in chunked")
                return _skip_chunked(self.rfile, MAX_REQUEST_BODY) or self._refuse(413)
            lengths = set(self.headers.get_all("Content-Length", ["0"]))
            if len(lengths) != 1 or not next(iter(lengths)).strip().isdigit():
                raise ValueError(f"Content-Length {sorted(lengths)}")
            length = int(lengths.pop())
            if length > MAX_REQUEST_BODY:
                return self._refuse(413)
            if len(self.rfile.read(length)) != length:
                raise ValueError("a body shorter than its Content-Length")
        except ValueError:
            return self._refuse(400)
        return True

    def _refuse(self, status: int) -> bool:
        self.close_connection = True
        self._html(status, f"<html><body><h1>{status} {self.responses[status][0]}</h1></body></html>".encode())
        return False

    # -- the request path -------------------------------------------------------------------

    def do_GET(self) -> None:
        """Answer GET, and HEAD: the same status and headers without the body."""
        if self._skip_body():
            self._answer()

    do_HEAD = do_GET

    def _not_allowed(self) -> None:
        if self._skip_body():
            self._html(405, b"<html><body><h1>405 Method Not Allowed</h1></body></html>", Allow="GET, HEAD")

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _not_allowed

    def _answer(self) -> None:
        met = self.server.emulator
        parts = urlsplit(self.path)
        path, params = parts.path, dict(parse_qsl(parts.query, keep_blank_values=True))
        if path == STATS_PATH:
            return self._json(200, met.stats.snapshot())
        if path == openaccess.CSV_PATH:  # a file host of its own, outside the Met's bot protection
            met.stats.add("csv", "requests")
            ids = met.catalog.csv_ids(met.config.csv_date)
            return self._stream(openaccess.stream(ids, met.catalog.record), "text/csv; charset=UTF-8")
        host = "images" if path.startswith("/CRDImages/") else "api"
        met.stats.add(host, "requests")
        if met.config.latency:
            time.sleep(met.config.latency)
        if met.config.throttle and not met.throttle.admit(self.client_address[0], host):
            return self._block(met, host)
        fault = met.faults.transient(self.path, met.attempt(self.path))
        if fault is not None:
            met.stats.add(host, f"fault_{fault}")
            if fault == "slow":  # the right answer, too late for the client
                time.sleep(met.config.slow_seconds)
            else:
                return self._transient(met, host, fault)
        if host == "images":
            return self._image(met, path)
        return self._api(met, path, params)

    def _block(self, met: MetEmulator, host: str) -> None:
        n = met.incident()
        page = block_page(1_000_000_000 + n * 7919 + met.config.seed, int(time.time()))
        as_200 = draw(met.config.seed, "block-200", n) < met.config.block_200_share
        met.stats.add(host, "blocked", "blocked_200" if as_200 else "blocked_403")
        self._html(200 if as_200 else 403, page)

    def _transient(self, met: MetEmulator, host: str, fault: str) -> None:
        """A fault that ends the request: a dropped connection or a 5xx page."""
        if fault == "drop":
            return self._drop()
        status = int(fault)
        reason = self.responses.get(status, ("Error",))[0]
        self._html(status, f"<html><body><h1>{status} {reason}</h1></body></html>".encode())

    def _api(self, met: MetEmulator, path: str, params: dict[str, str]) -> None:
        if path == f"{API_PREFIX}/v1/objects":
            return self._listing(met, params)
        if path == f"{API_PREFIX}/v1/departments":
            payload = {"departments": [{"departmentId": i, "displayName": n} for i, n in DEPARTMENTS]}
            return self._json(200, payload)
        if path == f"{API_PREFIX}/v1/search":
            return self._json(410, RETIRED)
        if path == f"{API_PREFIX}/v1.1/search":
            return self._search(met, params)
        match = _OBJECT.match(path)
        if match:
            return self._object(met, match["id"])
        self._html(404, NOT_FOUND_PAGE)

    def _listing(self, met: MetEmulator, params: dict[str, str]) -> None:
        since = None
        if "metadataDate" in params:
            try:
                if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", params["metadataDate"]):
                    raise ValueError
                since = dt.date.fromisoformat(params["metadataDate"])
            except ValueError:
                return self._json(400, BAD_DATE)
        departments = None
        if "departmentIds" in params:
            departments = {int(d) for d in params["departmentIds"].split("|") if d.strip().isdigit()}
        ids = met.catalog.listing(departments, since)
        self._json(200, {"total": len(ids), "objectIDs": ids})

    def _object(self, met: MetEmulator, raw_id: str) -> None:
        if not _ID.match(raw_id):
            return self._json(400, {"message": "could not parse objectID"})
        object_id = int(raw_id)
        body = met.catalog.record_bytes(object_id) if object_id > 0 else None
        if body is None and object_id > 0 and met.catalog.is_withdrawn(object_id):
            met.stats.add("api", "withdrawn")
            return self._json(404, {"message": "Not a valid object"})
        if body is None:
            return self._json(404, {"message": "ObjectID not found"})
        if met.faults.permanent("not-valid", object_id):
            met.stats.add("api", "fault_not-valid")
            return self._json(404, {"message": "Not a valid object"})
        met.stats.add("api", "ok")
        self._send(
            200,
            body.replace(IMAGE_HOST.encode(), met.base.encode()),
            "application/json; charset=UTF-8",
        )

    def _search(self, met: MetEmulator, params: dict[str, str]) -> None:
        index = met.catalog.search_index
        cache = "HIT" if index.seen(urlsplit(self.path).query) else "MISS"
        self._json(200, search.page(index.search(params), params), **{"X-Search-Cache": cache})

    def _image(self, met: MetEmulator, path: str) -> None:
        image: Image | None = met.catalog.image(path)
        if image is None or met.faults.permanent("image-404", path):
            if image is not None:
                met.stats.add("images", "fault_image-404")
            return self._html(404, NOT_FOUND_PAGE)
        if met.faults.permanent("not-image", path):
            met.stats.add("images", "fault_not-image")
            return self._send(200, NOT_FOUND_PAGE, image.content_type)
        body = image.body
        if met.faults.permanent("truncate", path):
            met.stats.add("images", "fault_truncate")
            body = body[: max(64, int(len(body) * (0.2 + 0.6 * draw(met.config.seed, "cut", path))))]
        met.stats.add("images", "ok")
        self._send(200, body, image.content_type)


def _skip_chunked(rfile, limit: int) -> bool:
    """Read a chunked body to its end and drop it; False once it passes ``limit`` bytes.

    Raises:
        ValueError: for a malformed or cut body.
    """
    total = 0
    while True:
        size = int(rfile.readline(1024).split(b";", 1)[0].strip() or b"-", 16)
        if size < 0:
            raise ValueError("a negative chunk size")
        total += size
        if total > limit:
            return False
        if size == 0:
            break
        if len(rfile.read(size)) != size or rfile.read(2) != b"\r\n":
            raise ValueError("a cut chunk")
    for _ in range(100):  # trailer fields, up to the empty line
        line = rfile.readline(8192)
        if line in (b"\r\n", b"\n"):
            return True
        if not line:
            raise ValueError("a body cut in its trailer")
    raise ValueError("too many trailer fields")
