"""metdata.net.session's pools for ``fetch``: urllib3's directly (``new_pool``), one per process for the
images stage (``shared_pool``), ``requests`` when the environment sets a proxy. Against a real
HTTP/1.1 server on 127.0.0.1 that counts the connections it accepts."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from metdata.net.fetch import Policy, fetch, judge
from metdata.net.session import Pool, new_pool, shared_pool

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


class _Counting(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a pooled connection serves several requests

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections += 1

    def do_GET(self) -> None:
        body = b"x" * 1000
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    httpd.daemon_threads, httpd.connections, httpd.lock = True, 0, threading.Lock()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def no_proxy(monkeypatch):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def url_of(httpd) -> str:
    return f"http://127.0.0.1:{httpd.server_address[1]}"


def test_new_pool_is_urllib3_unless_a_proxy_is_set(no_proxy, monkeypatch):
    with new_pool(4) as pool:
        assert isinstance(pool, Pool)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    with new_pool(4) as session:
        assert isinstance(session, requests.Session)  # its per-origin proxies apply, as before
    with shared_pool(4) as session:
        assert isinstance(session, requests.Session)


def test_shared_pool_reuses_connections_across_tasks(no_proxy, server):
    url = url_of(server)
    policy = Policy.same_origin(url, deadline=5)
    for task in range(3):  # three tasks of one worker, one after the other
        with shared_pool(8) as pool:
            assert isinstance(pool, Pool)
            for k in range(4):
                answer = judge(fetch(pool, f"{url}/img/{task}-{k}.jpg", policy))
                assert answer.outcome == "ok" and answer.payload == b"x" * 1000
    assert server.connections == 1  # one connection, read to the end each time and given back


def test_a_new_pool_is_its_own(no_proxy, server):
    url = url_of(server)
    policy = Policy.same_origin(url, deadline=5)
    for _ in range(2):
        with new_pool(2) as pool:
            assert judge(fetch(pool, f"{url}/a.jpg", policy)).outcome == "ok"
    assert server.connections == 2
