"""The emulator speaks HTTP/1.1 as clients expect: keep-alive through every answer and fault,
HEAD, request bodies, pipelining, ``Expect: 100-continue``, HTTP/1.0; and it draws each image once."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import subprocess

import pytest
from test_emulator_faults import public_objects

from metdata.emulator.catalog import DrawingCache

DEPARTMENTS = "/public/collection/v1/departments"


def connection(met) -> http.client.HTTPConnection:
    host, port = met._server.server_address[:2]
    return http.client.HTTPConnection(host, port, timeout=10)


def exchange(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None, **headers):
    """One request on ``conn``; the response read whole."""
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    return response, response.read()


def raw(met, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data`` on a new socket and read until the server closes it."""
    out = b""
    with socket.create_connection(met._server.server_address[:2], timeout=timeout) as sock:
        sock.sendall(data)
        while chunk := sock.recv(65536):
            out += chunk
    return out


def responses(stream: bytes, methods: list[str]) -> list[tuple[int, dict[str, str], bytes]]:
    """Split a byte stream of HTTP responses (framed by Content-Length) into (status, headers, body)."""
    out = []
    for method in methods:
        while True:  # interim 1xx answers carry no body
            head, stream = stream.split(b"\r\n\r\n", 1)
            status_line, *fields = head.decode("latin-1").split("\r\n")
            status = int(status_line.split()[1])
            if status >= 200:
                break
        headers = {k.lower(): v.strip() for k, v in (f.split(":", 1) for f in fields)}
        length = 0 if method == "HEAD" else int(headers["content-length"])
        out.append((status, headers, stream[:length]))
        stream = stream[length:]
    assert stream == b"", "bytes after the last expected response"
    return out


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({}, {200, 400, 404, 405, 410}),
        ({"fault_rate": 0.3, "faults": frozenset({"500", "502", "503", "slow"}), "slow_seconds": 0.1}, {500, 502, 503}),
        ({"throttle": True, "throttle_burst": 5}, {403}),
    ],
    ids=["answers", "faults", "blocks"],
)
def test_one_connection_serves_every_kind_of_answer(start_met, config, expected):
    met = start_met(**config)
    conn = connection(met)
    conn.connect()
    sock = conn.sock
    statuses = []
    answers = [
        ("GET", DEPARTMENTS),
        ("GET", "/public/collection/v1/objects/0"),  # 404 JSON
        ("GET", "/public/collection/v1/objects/abc"),  # 400 JSON
        ("GET", "/public/collection/v1/search?q=x"),  # 410
        ("GET", "/nowhere"),  # 404 HTML
        ("POST", DEPARTMENTS),  # 405
        ("HEAD", DEPARTMENTS),
    ] * 4
    for method, path in answers:
        response, body = exchange(conn, method, path, body=b"{}" if method == "POST" else None)
        statuses.append(response.status)
        if method == "HEAD":
            assert body == b""
        else:
            assert len(body) == int(response.getheader("Content-Length"))
        assert response.getheader("Connection") is None
    assert conn.sock is sock  # never reconnected
    assert expected <= set(statuses)


def test_head_answers_the_get_headers_without_the_body(met, http):
    conn = connection(met)
    for path in (DEPARTMENTS, "/nowhere", public_objects(met, http, 1)[0]["primaryImageSmall"].removeprefix(met.base)):
        get, body = exchange(conn, "GET", path)
        head, nothing = exchange(conn, "HEAD", path)
        assert (head.status, nothing) == (get.status, b"")
        assert head.getheader("Content-Length") == get.getheader("Content-Length") == str(len(body))
        assert head.getheader("Content-Type") == get.getheader("Content-Type")


def test_pipelined_requests_with_bodies_stay_in_step(met):
    get = f"GET {DEPARTMENTS} HTTP/1.1\r\nHost: x\r\n"
    stream = raw(
        met,
        (
            f"{get}Content-Length: 5\r\n\r\nhello"
            f"{get}Transfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n3\r\nabc\r\n0\r\nTrailer: t\r\n\r\n"
            f"HEAD {DEPARTMENTS} HTTP/1.1\r\nHost: x\r\n\r\n"
            f"{get}Expect: 100-continue\r\nContent-Length: 3\r\n\r\nabc"
            f"GET /public/collection/v1/objects/{'9' * 40} HTTP/1.1\r\nHost: x\r\n\r\n"
            f"{get}Connection: keep-alive, close\r\n\r\n"
        ).encode(),
    )
    answers = responses(stream, ["GET", "GET", "HEAD", "GET", "GET", "GET"])
    assert [status for status, _, _ in answers] == [200, 200, 200, 200, 400, 200]
    assert answers[0][2] == answers[1][2] == answers[3][2] == answers[5][2]
    assert json.loads(answers[0][2])["departments"]
    assert json.loads(answers[4][2]) == {"message": "could not parse objectID"}  # not a dropped connection
    assert b"100 Continue" in stream
    assert answers[5][1]["connection"] == "close"  # and then the server closed (raw() returned)


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ("Content-Length: abc", ""),
        ("Content-Length: 3\r\nContent-Length: 4", "abcd"),
        ("Transfer-Encoding: gzip", ""),
        ("Transfer-Encoding: chunked", "zz\r\n"),
        ("Transfer-Encoding: chunked", "3\r\nabcdef\r\n"),
        (f"Content-Length: {(1 << 20) + 1}", ""),
    ],
)
def test_a_body_that_cannot_be_skipped_is_refused_and_the_connection_closed(met, headers, body):
    stream = raw(met, f"GET {DEPARTMENTS} HTTP/1.1\r\nHost: x\r\n{headers}\r\n\r\n{body}".encode())
    [(status, answer, _)] = responses(stream, ["GET"])  # and raw() returned: the server closed
    assert status in (400, 413) and answer["connection"] == "close"


def test_http_1_0_clients(met):
    closed = raw(met, f"GET {DEPARTMENTS} HTTP/1.0\r\n\r\n".encode())  # returns: the server closed
    [(status, headers, _)] = responses(closed, ["GET"])
    assert status == 200 and headers["connection"] == "close"
    kept = raw(
        met, f"GET {DEPARTMENTS} HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET {DEPARTMENTS} HTTP/1.0\r\n\r\n".encode()
    )
    first, second = responses(kept, ["GET", "GET"])
    assert first[1]["connection"] == "keep-alive" and second[1]["connection"] == "close"


def test_a_dropped_request_closes_only_its_connection(start_met):
    met = start_met(fault_rate=1.0, faults=frozenset({"drop"}))
    conn = connection(met)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        exchange(conn, "GET", DEPARTMENTS)
    conn.close()
    response, _ = exchange(conn, "GET", "/__emulator__/stats")  # a new connection works
    assert response.status == 200


def test_slow_answers_keep_the_connection_usable(start_met):
    met = start_met(fault_rate=1.0, faults=frozenset({"slow"}), slow_seconds=0.2)
    conn = connection(met)
    conn.connect()
    sock = conn.sock
    for _ in range(3):
        response, body = exchange(conn, "GET", DEPARTMENTS)
        assert response.status == 200 and json.loads(body)["departments"]
    assert conn.sock is sock


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-s", *args], capture_output=True, text=True, timeout=30, check=True)


def statuses_seen(verbose: str) -> list[str]:
    return [line.split()[2] for line in verbose.splitlines() if line.startswith("< HTTP/")]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_reuses_one_connection_and_sends_head(met):
    urls = [f"{met.url}/departments", f"{met.url}/objects/0", f"{met.base}/nowhere", f"{met.url}/departments"]
    out = curl("-v", *["-o", "/dev/null"] * 4, *urls).stderr
    assert out.count("Re-using existing") == 3  # "connection #0" or "http: connection" (curl 8.10+)
    assert statuses_seen(out) == ["200", "404", "404", "200"]
    assert curl("-I", urls[0]).stdout.startswith("HTTP/1.1 200")
    body = ["-X", "GET", "-H", "Expect: 100-continue", "--data-binary", "x" * 2000]
    out = curl("-v", *["-o", "/dev/null"] * 2, *body, urls[0], urls[0]).stderr
    assert "Re-using existing" in out
    assert statuses_seen(out) == ["100", "200", "100", "200"]


def test_each_image_is_drawn_once_and_removed_at_stop(start_met, http):
    met = start_met()
    urls = [record["primaryImageSmall"] for record in public_objects(met, http, 3)]
    first = [http.get(url).content for url in urls]
    assert [http.get(url).content for url in urls] == first
    drawings = met.catalog.drawings
    assert drawings.draws == 3 and drawings.stored_bytes == sum(map(len, first))
    folder = drawings.folder
    met.stop()
    assert not folder.exists()


def test_the_drawing_cache_holds_more_than_the_old_512():
    calls = []

    def draw(key: int) -> bytes:
        calls.append(key)
        return f"picture {key};".encode() * 50

    cache = DrawingCache()
    keys = range(1500)
    first = [cache.get(("spec", k), lambda k=k: draw(k)) for k in keys]
    assert [cache.get(("spec", k), lambda k=k: draw(k)) for k in keys] == first
    assert len(calls) == cache.draws == 1500
    folder = cache.folder
    assert len(list(folder.iterdir())) == 1500
    cache.close()
    assert not folder.exists()
    assert cache.get(("spec", 1), lambda: draw(1)) == first[1]  # a new folder after close


def test_the_drawing_cache_stops_storing_at_its_cap():
    cache = DrawingCache(max_bytes=1000)
    for _ in range(2):
        for k in range(5):
            assert cache.get(k, lambda k=k: bytes([k]) * 400) == bytes([k]) * 400
    assert cache.stored_bytes == 800 and cache.draws == 2 + 2 * 3
    cache.close()


NODE_CLIENT = """
const http = require("http");
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const [base, ...paths] = process.argv.slice(2);
(async () => {
  const seen = [];
  for (const [method, path] of paths.map((p) => p.split(" "))) {
    seen.push(await new Promise((resolve, reject) => {
      const req = http.request(base + path, { method, agent }, (res) => {
        let bytes = 0;
        res.on("data", (d) => (bytes += d.length));
        res.on("end", () => resolve([res.statusCode, req.reusedSocket, bytes, +res.headers["content-length"]]));
      });
      req.on("error", reject);
      req.end();
    }));
  }
  console.log(JSON.stringify(seen));
  agent.destroy();
})();
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_a_node_keep_alive_agent_reuses_its_socket(met, tmp_path):
    script = tmp_path / "client.js"
    script.write_text(NODE_CLIENT)
    paths = [
        f"GET {DEPARTMENTS}",
        "GET /nowhere",
        "HEAD /public/collection/v1/objects/0",
        "DELETE /x",
        f"GET {DEPARTMENTS}",
    ]
    out = subprocess.run(
        ["node", str(script), met.base, *paths], capture_output=True, text=True, timeout=60, check=True
    )
    seen = json.loads(out.stdout)
    assert [status for status, *_ in seen] == [200, 404, 404, 405, 200]
    assert [reused for _, reused, *_ in seen] == [False, True, True, True, True]
    assert all(size == length for _, _, size, length in seen if size)
