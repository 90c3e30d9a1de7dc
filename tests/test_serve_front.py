"""The pure parts of `metdata serve`'s front (fast tier): the body cap and deadline, the replayed
body, health on the loop, run names and the cut-image rule. The real sockets are in test_serve.py."""

from __future__ import annotations

import asyncio
import json
import time

import cv2
import numpy as np
import pytest

from metdata.core import imaging
from metdata.serve.front import Front
from metdata.serve.state import ServeConfig


def echo(environ, start_response):
    """A real WSGI app: answers the body it was given, and counts its calls."""
    echo.calls += 1
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))])
    return [body]


echo.calls = 0


def call(front: Front, method: str, path: str, chunks: list[bytes | float], headers=()) -> tuple[int, bytes, dict]:
    """One request through ``front``; a float in ``chunks`` is a pause (seconds) of the client."""
    sent: list[dict] = []
    pending = list(chunks)

    async def receive():
        while pending and isinstance(pending[0], float):
            await asyncio.sleep(pending.pop(0))
        if not pending:
            await asyncio.sleep(3600)  # the client says nothing more
        chunk = pending.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

    async def send(message):
        sent.append(message)

    scope = _scope(method, path, headers)
    asyncio.run(asyncio.wait_for(front(scope, receive, send), 30))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], body, {k.decode(): v.decode() for k, v in start["headers"]}


def make_front(max_body: int = 100, deadline: float = 0.5) -> Front:
    return Front(echo, lambda path: (200, {"status": "live", "path": path}), max_body, deadline, 2)


def test_a_whole_body_is_read_then_given_to_the_app():
    status, body, _ = call(make_front(), "POST", "/api/predict", [b"abc", 0.05, b"def", b"g"])
    assert status == 200 and body == b"abcdefg"


def test_a_declared_body_over_the_cap_is_refused_unread():
    before = echo.calls
    status, body, headers = call(make_front(), "POST", "/x", [], headers=[("content-length", "101")])
    assert status == 413 and "100 byte cap" in json.loads(body)["error"] and headers["connection"] == "close"
    status, body, _ = call(make_front(), "POST", "/x", [b"a" * 60, b"a" * 60])  # chunked: counted as it comes
    assert status == 413
    assert echo.calls == before  # the app never saw either


def test_a_body_slower_than_its_deadline_is_408_in_total_not_per_chunk():
    before = echo.calls
    trickle = [b"a", 0.2] * 10  # each pause under the deadline, the whole over it
    status, body, headers = call(make_front(deadline=0.5), "POST", "/api/predict", trickle)
    assert status == 408 and "0.5 s" in json.loads(body)["error"] and headers["connection"] == "close"
    assert echo.calls == before


def test_health_is_answered_without_the_app():
    before = echo.calls
    for path in ("/healthz", "/readyz"):
        status, body, _ = call(make_front(), "GET", path, [])
        assert status == 200 and json.loads(body)["path"] == path
    status, body, _ = call(make_front(), "HEAD", "/healthz", [])
    assert status == 200 and body == b""
    assert echo.calls == before


@pytest.mark.parametrize("header", [("content-length", "1000000"), ("transfer-encoding", "chunked")])
def test_health_with_a_body_is_answered_and_the_connection_closed(header):
    """The body is never read, so the connection must not be kept for a next request (nor a trickle)."""
    status, body, headers = call(make_front(), "GET", "/healthz", [b"a", 2.0, b"b"], headers=[header])
    assert status == 200 and json.loads(body)["status"] == "live" and headers["connection"] == "close"
    status, _, headers = call(make_front(), "GET", "/healthz", [], headers=[("content-length", "0")])
    assert status == 200 and "connection" not in headers


def test_answers_name_the_run_not_its_path():
    config = ServeConfig(run="/srv/secret/runs/painting-culture/", data="s3://bucket/data")
    assert config.run_name == "painting-culture"
    text = config.public("OSError: /srv/secret/runs/painting-culture/run.json and s3://bucket/data/images.zarr")
    assert text == "OSError: painting-culture/run.json and data/images.zarr"


@pytest.mark.parametrize("fmt", [".jpg", ".png"])
def test_a_cut_image_is_truncated_and_a_whole_one_is_not(fmt):
    rng = np.random.default_rng(0)
    whole = cv2.imencode(fmt, rng.integers(0, 255, (64, 80, 3), np.uint8))[1].tobytes()
    kind = imaging.sniff(whole)[0]
    assert not imaging.truncated(whole, kind)
    assert imaging.decode(whole)[0].shape == (64, 80, 3)
    for cut in (whole[: len(whole) // 2], whole[:-2]):
        assert imaging.truncated(cut, kind)
        with pytest.raises(imaging.BadImage, match="ends before its end"):
            imaging.decode(cut)
    assert not imaging.truncated(whole + b"\0" * 16, kind)  # padding after the end is not a cut


def test_an_answer_leaves_the_thread_before_the_client_reads_it():
    """30 parts (a2wsgi queues 10): the app's thread is done before the first byte goes to the client."""
    import threading

    done = threading.Event()

    def parts(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield from (b"x" * 1000 for _ in range(30))
        done.set()

    front = Front(parts, lambda path: (200, {}), 100, 1.0, 1)
    seen = []

    async def slow_client(message):  # the client reads nothing until the app's thread has finished
        if not seen:
            seen.append(await asyncio.to_thread(done.wait, 10))
        seen.append(message)

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": "GET", "path": "/big", "query_string": b"", "headers": [], "root_path": ""}
    scope |= {"http_version": "1.1", "scheme": "http", "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 5)}
    asyncio.run(asyncio.wait_for(front(scope, receive, slow_client), 30))
    assert seen[0] is True  # the thread finished without waiting for the client
    assert seen[1]["status"] == 200 and seen[2]["body"] == b"x" * 30_000


def _serve(app, **attrs):
    """A real uvicorn server on 127.0.0.1 with ``DeadlineH11Protocol`` (``attrs`` set on it) over
    ``app``; yields (its address, its uvicorn ``Server``)."""
    import socket
    import threading

    import uvicorn

    from metdata.serve.front import DeadlineH11Protocol

    protocol = type("P", (DeadlineH11Protocol,), attrs)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, http=protocol, lifespan="off", log_level="error", timeout_keep_alive=30)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(100):  # bounded: the loop is up within a few seconds
        if server.started:
            break
        time.sleep(0.05)
    yield sock.getsockname(), server
    server.should_exit = True
    thread.join(10)
    sock.close()


async def ok_app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture
def deadline_server():
    """``_serve`` with a 1 s head deadline, 8 connections at most, over a trivial ASGI app; yields its address."""
    for address, _ in _serve(ok_app, head_deadline=1.0, max_connections=8):
        yield address


def _closed_after(sock, trickle: bytes = b"", limit: float = 10.0) -> float | None:
    """Seconds until the server closes ``sock`` (sending ``trickle`` a byte per 0.25 s meanwhile)."""
    started = time.monotonic()
    sock.settimeout(0.25)
    pending = iter(trickle)
    while time.monotonic() - started < limit:
        byte = next(pending, None)
        try:
            if byte is not None:
                sock.sendall(bytes([byte]))
            if sock.recv(1) == b"":
                return time.monotonic() - started
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - started
    return None


def test_a_head_has_a_whole_deadline_and_a_worker_a_connection_cap(deadline_server):
    import socket

    trickle = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100  # a byte every 0.25 s: never idle 1 s
    with socket.create_connection(deadline_server) as slow, socket.create_connection(deadline_server) as idle:
        cut_slow = _closed_after(slow, trickle)
        cut_idle = _closed_after(idle)
    assert cut_slow is not None and 0.8 <= cut_slow <= 5, cut_slow  # the whole head's deadline, not per byte
    assert cut_idle is not None and cut_idle <= 5, cut_idle
    held = [socket.create_connection(deadline_server) for _ in range(8)]
    try:
        with socket.create_connection(deadline_server, timeout=5) as ninth:
            ninth.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b"".join(iter(lambda: ninth.recv(4096), b""))
        assert answer.startswith(b"HTTP/1.1 503") and b"too many connections" in answer
        with socket.create_connection(deadline_server, timeout=5) as probe:  # over the cap, health still answers
            probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b"".join(iter(lambda: probe.recv(4096), b""))  # then the connection is closed
        assert answer.startswith(b"HTTP/1.1 200") and b"connection: close" in answer.lower()
    finally:
        for s in held:
            s.close()
    time.sleep(0.2)
    with socket.create_connection(deadline_server, timeout=5) as quick:  # a whole head in time is answered
        quick.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert quick.recv(4096).startswith(b"HTTP/1.1 200")
        assert _closed_after(quick) is not None  # and the next head on it has its own deadline


def test_an_answer_never_read_is_dropped_after_the_write_deadline_and_holds_no_next_one():
    """A client pipelines 3 requests for a 4 MB answer and reads nothing: the server computes the
    first answer only, and drops the connection (and the unsent bytes) after the write deadline."""
    import socket

    calls = []

    async def big(scope, receive, send):
        calls.append(scope["path"])
        body = b"x" * (4 << 20)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})

    for address, server in _serve(big, head_deadline=5.0, write_deadline=1.0, max_connections=8):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(address)
        try:
            sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n" * 3)
            for _ in range(200):  # bounded: 20 s, the deadline is 1 s
                if calls and not server.server_state.connections:
                    break
                time.sleep(0.1)
            assert not server.server_state.connections  # dropped, its unsent answer with it
            assert calls == ["/big"]  # the pipelined requests behind an unread answer were never run
        finally:
            sock.close()


def _scope(method: str, path: str, headers=()) -> dict:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "scheme": "http",
        "http_version": "1.1",
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 5),
        "headers": [(k.encode(), v.encode()) for k, v in headers],
    }


def test_a_worker_holds_a_budget_of_body_bytes_then_answers_503():
    """Max body 100, budget 250: two uploads that stall one byte short hold 200 (their declared
    lengths); a third is 503 with Retry-After, unread; once the two time out, uploads pass again."""
    front = Front(echo, lambda path: (200, {}), 100, 0.5, 2, max_buffered=250)
    answers: list[tuple[int, dict]] = []

    def client(chunks: list[bytes], stall: bool):
        pending = list(chunks)

        async def receive():
            if not pending:
                await asyncio.sleep(3600 if stall else 0)
            chunk = pending.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(pending) or stall}

        async def send(message):
            if message["type"] == "http.response.start":
                answers.append((message["status"], {k.decode(): v.decode() for k, v in message["headers"]}))

        return receive, send

    async def scenario():
        length = [("content-length", "100")]
        stalled = [
            asyncio.create_task(front(_scope("POST", "/x", length), *client([b"a" * 99], stall=True))) for _ in range(2)
        ]
        await asyncio.sleep(0.1)
        assert front.buffered == 200
        await front(_scope("POST", "/x", length), *client([b"b" * 100], stall=False))
        await asyncio.gather(*stalled)
        assert front.buffered == 0
        await front(_scope("POST", "/x", length), *client([b"c" * 100], stall=False))

    asyncio.run(asyncio.wait_for(scenario(), 30))
    busy, late1, late2, ok = answers
    assert busy[0] == 503 and busy[1]["retry-after"] and busy[1]["connection"] == "close"
    assert late1[0] == late2[0] == 408 and ok[0] == 200


def test_a_jpeg_header_scan_is_linear_and_bounded():
    """20 MB of 0xFF fill (or of junk) where a JPEG's header should be: refused in milliseconds,
    not walked a byte at a time in Python (seconds); a whole JPEG with junk between segments still reads."""
    whole = cv2.imencode(".jpg", np.full((40, 60, 3), 90, np.uint8))[1].tobytes()
    scan = whole.index(b"\xff\xda")
    fill = whole[:scan] + b"\xff" * (20 << 20) + whole[scan:]  # fill bytes before SOS are legal, 20 MB of them are not
    started = time.monotonic()
    assert imaging.sniff(b"\xff\xd8" + b"\xff" * (20 << 20)) is None
    assert imaging.sniff(fill) == ("jpeg", 60, 40)
    with pytest.raises(imaging.BadImage, match="within the first 2 MB"):
        imaging.decode(fill)
    with pytest.raises(imaging.BadImage, match="within the first 2 MB"):
        imaging.decode(b"\xff\xd8" + b"\xff" * (20 << 20))
    with pytest.raises(imaging.BadImage, match="within the first 2 MB"):
        imaging.decode(b"\xff\xd8" + b"\xff\x00" * (10 << 20))
    assert time.monotonic() - started < 2.0  # generous: each is milliseconds; the byte loop took seconds
    small_fill = whole[:scan] + b"\xff" * 1000 + whole[scan:]
    assert imaging.decode(small_fill)[0].shape == (40, 60, 3)


def _detailed_jpeg(**params) -> bytes:
    rng = np.random.default_rng(1)
    image = cv2.GaussianBlur(rng.integers(0, 255, (400, 600, 3), np.uint8), (9, 9), 3)
    return cv2.imencode(".jpg", image, [*params.get("flags", [])])[1].tobytes()


def _junk_between_segments(jpeg: bytes) -> bytes:
    """Three junk bytes between APP0 and DQT: libjpeg warns and decodes the image whole."""
    dqt = jpeg.index(b"\xff\xdb")
    return jpeg[:dqt] + b"\x12\x34\x56" + jpeg[dqt:]


def _judged(data: bytes) -> tuple[str, str]:
    """The verdict of both paths: ``prediction.prepare_image``'s (the API's 400) and the images stage's status."""
    from metdata.images.images import Fetched, ImageOptions, process
    from metdata.predict import prediction

    try:
        prediction.prepare_image(data, 64, "squash")
        api = "ok"
    except prediction.ImageRejected as exc:
        api = f"{exc.status}"
    return api, process(Fetched("ok", data=data), ImageOptions()).status


def test_a_cut_jpeg_with_an_eoi_appended_is_refused_on_both_paths():
    ramp = np.tile(np.arange(3000, dtype=np.uint16)[None, :] % 256, (3000, 1)).astype(np.uint8)
    big = cv2.imencode(".jpg", ramp, [cv2.IMWRITE_JPEG_QUALITY, 50])[1].tobytes()
    declared_big = big[:1200] + b"\xff\xd9"  # its scan is far shorter than 3000x3000 needs
    assert imaging.scan_too_short(declared_big) and not imaging.scan_too_short(big)
    whole = _detailed_jpeg()
    for cut in (declared_big, whole[: len(whole) // 2] + b"\xff\xd9", whole[: len(whole) // 10] + b"\xff\xd9"):
        with pytest.raises(imaging.BadImage, match="ends before its end"):
            imaging.decode(cut)
        assert _judged(cut) == ("400", "bad_image")


def test_whole_jpegs_pngs_and_junk_between_segments_are_accepted_on_both_paths():
    whole = _detailed_jpeg()
    flat = np.full((400, 600, 3), 128, np.uint8)  # exact grey, as libjpeg fills a cut scan: not a cut
    grey_bottom = cv2.GaussianBlur(np.random.default_rng(2).integers(0, 255, (400, 600, 3), np.uint8), (9, 9), 3)
    grey_bottom[300:] = 128
    accepted = {
        "junk between segments": _junk_between_segments(whole),
        "progressive": cv2.imencode(".jpg", grey_bottom, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes(),
        "trailing bytes": whole + b"garbage after the end" * 10,
        "all grey": cv2.imencode(".jpg", flat)[1].tobytes(),
        "grey bottom": cv2.imencode(".jpg", grey_bottom)[1].tobytes(),
        "restart markers": cv2.imencode(".jpg", flat, [cv2.IMWRITE_JPEG_RST_INTERVAL, 4])[1].tobytes(),
        "png": cv2.imencode(".png", grey_bottom)[1].tobytes(),
        "png, trailing bytes": cv2.imencode(".png", grey_bottom)[1].tobytes() + b"\0" * 50,
    }
    for name, data in accepted.items():
        assert imaging.decode(data)[0].shape == (400, 600, 3), name
        assert imaging.decode(data, 64)[0].shape[0] >= 64, name
        assert _judged(data) == ("ok", "ok"), name


def test_health_with_another_method_is_a_json_405_and_a_huge_head_a_431():
    status, body, headers = call(make_front(), "POST", "/healthz", [b""], headers=[("content-length", "0")])
    assert status == 405 and "GET /healthz" in json.loads(body)["error"] and headers["allow"] == "GET, HEAD"
    status, body, headers = call(make_front(), "GET", "/healthz", [], headers=[("x-a", "a" * (70 << 10))])
    assert status == 431 and "64 KiB" in json.loads(body)["error"] and headers["connection"] == "close"


def test_uvicorns_invalid_request_warning_is_a_debug_line():
    import logging

    from metdata.serve.server import _quiet_bad_requests

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("uvicorn.error", logging.WARNING, __file__, 1, message, None, None)

    assert not _quiet_bad_requests(record("Invalid HTTP request received."))
    assert _quiet_bad_requests(record("Exception in ASGI application"))


def test_a_cut_png_with_an_iend_appended_is_cut_before_libpng_reads_it():
    png = cv2.imencode(".png", np.random.default_rng(3).integers(0, 255, (300, 400, 3), np.uint8))[1].tobytes()
    iend = png[png.rindex(b"IEND") - 4 :]
    cut = png[: len(png) // 2] + iend  # its IDAT's length runs past the appended IEND
    assert not imaging.truncated(png, "png") and imaging.truncated(cut, "png")
    with pytest.raises(imaging.BadImage, match="ends before its end"):
        imaging.decode(cut)


def test_junk_between_segments_and_a_cut_png_decode_or_refuse_without_stderr_noise(capfd):
    """libjpeg and libpng print to the process's stderr (OpenCV's log level does not reach them):
    junk is dropped before the decoder sees it, a cut PNG refused before libpng reads it."""
    whole = _detailed_jpeg()
    png = cv2.imencode(".png", np.zeros((30, 40, 3), np.uint8))[1].tobytes()
    capfd.readouterr()
    assert imaging.decode(_junk_between_segments(whole))[0].shape == (400, 600, 3)
    with pytest.raises(imaging.BadImage):
        imaging.decode(png[: len(png) // 2] + png[png.rindex(b"IEND") - 4 :])
    assert capfd.readouterr().err == ""
