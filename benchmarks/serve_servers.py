"""The servers `metdata serve` could run on, against the same slow clients, with real sockets.

One toy WSGI app (``/healthz`` at once; ``/work`` about 20 ms of CPU under a lock, as a model
call is) is served in one process with 4 threads by: gunicorn ``gthread`` (what `metdata serve`
ran before), waitress, hypercorn, plain uvicorn (a2wsgi), and `metdata serve`'s own stack
(gunicorn + uvicorn-worker + ``metdata.serve.front``). For each: how long a client trickling its
request head a byte a second, and a client that connects and says nothing, stay connected (cut
after N s, or still open at --hold s); then, while 30 trickling and 30 idle connections are held
(each opened again when cut), the share of /healthz probes answered within 2 s and the /work
requests/s of 4 clients, against the same without (measured in the same run). Servers not
installed are skipped (waitress and hypercorn are not metdata dependencies).

    python benchmarks/serve_servers.py [--hold 20] [--seconds 4]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

SERVERS = ("gthread", "waitress", "hypercorn", "uvicorn", "metdata")
_lock = threading.Lock()


def toy(environ, start_response):
    """``/healthz``: at once. Anything else: ~20 ms of hashing under one lock (the model's)."""
    if environ["PATH_INFO"] != "/healthz":
        with _lock:
            end = time.perf_counter() + 0.02
            while time.perf_counter() < end:
                hashlib.sha256(b"x" * 4096).digest()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


def serve(name: str, port: int) -> None:
    """Run ``toy`` under server ``name`` on 127.0.0.1:port (in this process, until killed)."""
    if name == "waitress":
        import logging

        import waitress

        logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "Task queue depth is N", per request

        waitress.serve(toy, host="127.0.0.1", port=port, threads=4, channel_timeout=10, _quiet=True)
    elif name == "hypercorn":
        import asyncio

        from hypercorn.asyncio import serve as hserve
        from hypercorn.config import Config

        config = Config()
        config.bind = [f"127.0.0.1:{port}"]
        config.keep_alive_timeout = 10
        config.read_timeout = 10
        asyncio.run(hserve(toy, config, mode="wsgi"))
    elif name == "uvicorn":
        import uvicorn
        from a2wsgi import WSGIMiddleware

        uvicorn.run(WSGIMiddleware(toy, workers=4), host="127.0.0.1", port=port, log_level="warning")
    else:
        from gunicorn.app.base import BaseApplication

        settings = {"bind": f"127.0.0.1:{port}", "workers": 1, "loglevel": "warning", "control_socket_disable": True}
        if name == "gthread":
            settings |= {"worker_class": "gthread", "threads": 4}
            app = toy
        else:
            from metdata.serve.front import Front
            from metdata.serve.server import Limits, worker_class

            settings["worker_class"] = worker_class(Limits(head_deadline=10))
            app = Front(toy, lambda path: (200, {"status": "live"}), 1 << 20, 30.0, 4)

        class Application(BaseApplication):
            def load_config(self):
                for key, value in settings.items():
                    self.cfg.set(key, value)

            def load(self):
                return app

        sys.argv = sys.argv[:1]
        Application().run()


def held_for(port: int, kind: str, hold: float) -> float | None:
    """Seconds until the server cut one ``head`` (a byte a second) or ``idle`` connection, or None."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.settimeout(1.0)
        trickle = iter(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000)
        while time.monotonic() - started < hold:
            try:
                if kind == "head":
                    sock.sendall(bytes([next(trickle)]))
                sock.recv(1)
                return time.monotonic() - started
            except TimeoutError:
                continue
            except OSError:
                return time.monotonic() - started
    return None


def _cut(into: dict, port: int, kind: str, hold: float) -> None:
    into[kind] = held_for(port, kind, hold)


def attacker(port: int, kind: str, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.settimeout(1.0)
                trickle = iter(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100_000)
                while not stop.is_set():
                    if kind == "head":
                        sock.sendall(bytes([next(trickle)]))
                    try:
                        sock.recv(1)
                        break
                    except TimeoutError:
                        continue
        except OSError:
            time.sleep(0.2)


def measure(port: int, seconds: float) -> tuple[float, int, int]:
    """/work requests/s of 4 clients, and /healthz probes (within 2 s, total) meanwhile."""
    done = [0]
    end = time.monotonic() + seconds

    def client():
        with requests.Session() as session:
            while time.monotonic() < end:
                try:
                    session.get(f"http://127.0.0.1:{port}/work", timeout=5)
                    done[0] += 1
                except requests.RequestException:
                    pass

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    ok = total = 0
    while time.monotonic() < end:
        total += 1
        with contextlib.suppress(requests.RequestException):
            ok += requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok
        time.sleep(0.25)
    for t in threads:
        t.join()
    return done[0] / seconds, ok, total


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hold", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--servers", nargs="+", default=list(SERVERS))
    parser.add_argument("--serve", nargs=2, metavar=("NAME", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve[0], int(args.serve[1]))
    for name in args.servers:
        module = {"gthread": "gunicorn", "metdata": "uvicorn_worker"}.get(name, name)
        try:
            __import__(module)
        except ImportError:
            print(f"{name:>9}: not installed, skipped")
            continue
        port = free_port()
        server = subprocess.Popen([sys.executable, __file__, "--serve", name, str(port)], cwd=Path(__file__).parent)
        try:
            for _ in range(100):
                try:
                    requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                    break
                except requests.RequestException:
                    time.sleep(0.2)
            cuts: dict = {}
            threads = [threading.Thread(target=_cut, args=(cuts, port, k, args.hold)) for k in ("head", "idle")]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            quiet, _, _ = measure(port, args.seconds)
            stop = threading.Event()
            attack = [
                threading.Thread(target=attacker, args=(port, k, stop), daemon=True)
                for k in ["head"] * 30 + ["idle"] * 30
            ]
            for t in attack:
                t.start()
            time.sleep(2)
            busy, ok, total = measure(port, args.seconds)
            stop.set()
            shown = {k: "still open" if v is None else f"cut at {v:.1f} s" for k, v in cuts.items()}
            print(
                f"{name:>9}: trickled head {shown['head']}, idle {shown['idle']} (of {args.hold:g} s); "
                f"with 30 trickling + 30 idle: /healthz {ok}/{total} within 2 s, "
                f"/work {busy:.0f} req/s vs {quiet:.0f} without ({busy / quiet if quiet else 0:.2f})",
                flush=True,
            )
        finally:
            server.terminate()
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()


if __name__ == "__main__":
    main()
