"""HTTP sessions whose every request has one deadline, and the environment read once.

The deadline is enforced by one watchdog thread shared by every request (``_Watchdog``): a
socket timeout bounds each read, not the request, so a server that trickles its headers a byte
at a time, floods ``100 Continue`` or never ends a chunked body's trailers would otherwise hold a
request forever. Sessions from ``new_session`` use connection pools that hand the watchdog the
connection of each request while ``watched(deadline)`` is in force; past the deadline it shuts
the socket down, and the blocked read fails.

``new_pool`` is the same without ``requests`` (urllib3's pools, watched the same way: a third of
the CPU per request), and ``shared_pool`` is one such pool per process, which the images stage's
chunk tasks share so that each reuses the connections of the ones before it. Both fall back to
``new_session`` when the environment sets a proxy.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

#: How soon the watchdog looks again at a connection past its deadline that has no socket yet
#: (still resolving or connecting: the connect timeout bounds that part).
_RECHECK = 0.05


@dataclass(eq=False)
class _Watch:
    """One request's connection and the moment its socket is shut down."""

    conn: object
    deadline: float
    active: bool = True
    fired: bool = False


@dataclass
class _Watchdog:
    """One thread for every request in the process: a heap of deadlines under a Condition.

    ``watch`` registers a connection; ``cancel`` (under the same lock as the shutdown) ends the
    watch, so once it returns the watchdog never touches that connection again. A cancelled
    watch stays in the heap until it comes to the top and is dropped.
    """

    heap: list = field(default_factory=list)
    condition: threading.Condition = field(default_factory=threading.Condition)
    order: Iterator[int] = field(default_factory=itertools.count)
    thread: threading.Thread | None = None

    def watch(self, conn: object, deadline: float) -> _Watch:
        watch = _Watch(conn, deadline)
        with self.condition:
            heapq.heappush(self.heap, (deadline, next(self.order), watch))
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="metdata-fetch-watchdog", daemon=True)
                self.thread.start()
            if self.heap[0][2] is watch:  # the earliest deadline now: wake the thread to wait less
                self.condition.notify()
        return watch

    def cancel(self, watch: _Watch | None) -> None:
        if watch is not None:
            with self.condition:
                watch.active = False

    def _run(self) -> None:
        with self.condition:
            while True:
                while self.heap and not self.heap[0][2].active:
                    heapq.heappop(self.heap)
                if not self.heap:
                    self.condition.wait()
                    continue
                left = self.heap[0][0] - time.monotonic()
                if left > 0:
                    self.condition.wait(left)
                    continue
                watch = heapq.heappop(self.heap)[2]
                sock = getattr(watch.conn, "sock", None)
                if sock is None:  # not connected yet: the socket to shut may still come
                    heapq.heappush(self.heap, (time.monotonic() + _RECHECK, next(self.order), watch))
                    continue
                watch.active, watch.fired = False, True
                with suppress(OSError):  # the plain socket's shutdown, even under TLS: the read ends
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)


_WATCHDOG = _Watchdog()
_local = threading.local()  # .deadline: the current request's, while fetch runs it; .watches


@contextmanager
def watched(deadline: float) -> Iterator[None]:
    """Every connection this thread takes from a pool until the block ends is shut at ``deadline``."""
    _local.deadline, _local.watches = deadline, []
    try:
        yield
    finally:
        for watch in _local.watches:
            _WATCHDOG.cancel(watch)
        _local.deadline, _local.watches = None, []


class _WatchedPool:
    """A connection pool whose connections are watched while ``_watched`` is in force."""

    def _get_conn(self, timeout: float | None = None):
        conn = super()._get_conn(timeout)
        deadline = getattr(_local, "deadline", None)
        if deadline is not None:
            conn.metdata_watch = _WATCHDOG.watch(conn, deadline)
            _local.watches.append(conn.metdata_watch)
        return conn

    def _put_conn(self, conn) -> None:
        if conn is not None:  # back to the pool: the next request must find its socket whole
            _WATCHDOG.cancel(getattr(conn, "metdata_watch", None))
        super()._put_conn(conn)


class _WatchedHTTPPool(_WatchedPool, HTTPConnectionPool):
    pass


class _WatchedHTTPSPool(_WatchedPool, HTTPSConnectionPool):
    pass


class _WatchedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


#: What every request of ours says about itself, and the encodings ``fetch`` can decode under its cap.
HEADERS = {
    "User-Agent": "metdata (+https://github.com/metdata/metdata)",
    "Accept-Encoding": "gzip, deflate",
    "Accept": "*/*",
}
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy")


def new_session(threads: int) -> requests.Session:
    """A session whose connection pool fits ``threads`` concurrent requests, watched so that
    ``fetch``'s deadline covers each whole request; it asks only for the encodings ``fetch``
    can decode under its cap.

    The environment is read once, not on every request (``requests`` re-reads every variable
    for proxies, and ``~/.netrc``, per request: a quarter of its CPU per lookup): proxies per
    origin through ``proxies_for`` (``HTTP(S)_PROXY``/``NO_PROXY`` as ``requests`` reads them),
    the CA bundle from ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` here; no ``.netrc``
    credentials go to hosts that answer data anyone may read.
    """
    session = requests.Session()
    session.trust_env = False
    session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    adapter = _WatchedAdapter(pool_connections=2, pool_maxsize=max(threads, 1), max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers.update(HEADERS)
    return session


class Pool(urllib3.PoolManager):
    """``new_pool``'s connection pools: urllib3's, watched like ``new_session``'s, without ``requests``."""

    def __init__(self, threads: int, hosts: int = 2) -> None:
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if bundle is None:
            import certifi  # what requests verifies with by default

            bundle = certifi.where()
        super().__init__(
            num_pools=hosts, headers=dict(HEADERS), maxsize=max(threads, 1), cert_reqs="CERT_REQUIRED", ca_certs=bundle
        )
        self.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


def new_pool(threads: int) -> Pool | requests.Session:
    """Like ``new_session`` for ``fetch``, at a third of its CPU per request (``requests`` prepares,
    merges settings and wraps every request and answer: ~0.35 ms of Python each, what the images
    stage pays per image): urllib3's pools directly, watched by the same watchdog, the same headers
    and CA bundle. ``fetch`` takes either. When the environment sets a proxy, this is
    ``new_session``, whose per-origin proxies (and ``NO_PROXY``) ``fetch`` then applies as before.
    """
    return new_session(threads) if _proxied() else Pool(threads)


def _proxied() -> bool:
    return any(os.environ.get(name) or os.environ.get(name.upper()) for name in _PROXY_VARIABLES)


#: ``shared_pool``'s connections kept per host: more than the tasks of a worker keep in flight at once.
SHARED_CONNECTIONS = 512
_shared: list[Pool] = []
_shared_lock = threading.Lock()


@contextmanager
def shared_pool(threads: int) -> Iterator[Pool | requests.Session]:
    """For a block: this process's one ``Pool``, shared by every task it runs (the images stage's), so a
    chunk task reuses the connections the ones before it opened instead of connecting again for a
    few images each (a TCP connect, and a thread of the host's, per connection). It is never closed:
    idle connections stay open until the host drops them (urllib3 checks before reusing one). With a
    proxy in the environment, a ``new_session`` of ``threads`` for the block instead (``new_pool``).
    """
    if _proxied():
        with new_session(threads) as session:
            yield session
        return
    with _shared_lock:
        if not _shared:
            _shared.append(Pool(SHARED_CONNECTIONS, hosts=8))
    yield _shared[0]


@functools.lru_cache(maxsize=256)
def _origin_proxies(scheme: str, netloc: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(requests.utils.get_environ_proxies(f"{scheme}://{netloc}/").items()))


def proxies_for(url: str) -> dict[str, str]:
    """The proxies the environment sets for ``url``'s origin, read once per origin.

    >>> proxies_for("http://127.0.0.1:1/x") == {} or "http" in proxies_for("http://127.0.0.1:1/x")
    True
    """
    parts = urlsplit(url)
    return dict(_origin_proxies(parts.scheme.lower(), parts.netloc.lower()))
