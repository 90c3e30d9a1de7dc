"""The app of ``metdata serve`` and the gunicorn application that runs it.

gunicorn's master binds the port and forks the workers; each worker then builds its own app
(``preload_app`` off), which starts loading the model in a thread: one model per worker
process, loaded after the fork, never at import. A worker is an event loop (uvicorn, through
its gunicorn worker class): connections, request heads and bodies are read there, under
deadlines (``front``), and only whole requests reach the threads that run the Flask app and the
model; ``/healthz`` and ``/readyz`` are answered on the loop, even while every thread is busy.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass

from metdata.predict import prediction
from metdata.serve.state import ServeConfig, Worker

log = logging.getLogger(__name__)

#: Dash sends an upload base64-encoded inside its callback's JSON: 4/3 of the file, and some room
DASH_OVERHEAD = 1 << 20


@dataclass(frozen=True)
class Limits:
    """What a client may hold of a worker.

    Attributes:
        head_deadline: seconds for a whole request head, from the connection (or the previous response).
        body_deadline: seconds for a whole request body, from the end of its head.
        max_connections: open connections per worker process; more are answered 503 and closed.
        keepalive: seconds an idle kept-alive connection stays open after a response.
        max_buffered: request body bytes a worker holds at once (None: 4 x the largest body); more are 503.
    """

    head_deadline: float = 10.0
    body_deadline: float = 30.0
    write_deadline: float = 30.0
    max_connections: int = 500
    keepalive: float = 5.0
    max_buffered: int | None = None


def max_body(config: ServeConfig) -> int:
    """The largest request body read at all: a Dash upload of the largest image allowed (base64, in JSON)."""
    return config.max_bytes * 4 // 3 + DASH_OVERHEAD


def create_app(config: ServeConfig, threads: int = 4, limits: Limits = Limits()):
    """The ASGI app of one worker: ``front.Front`` over the Flask app (the JSON routes and the Dash
    dashboard, run in ``threads`` threads); the model loads in a thread.

    Raises:
        UserError: RUN is not a finished run (read from its run.json, without TensorFlow).
    """
    from flask import Flask

    from metdata.serve import dashboard, routes
    from metdata.serve.front import Front

    logging.getLogger("uvicorn.error").addFilter(_quiet_bad_requests)
    meta = prediction.read_settings(config.run, config.storage_options, config.checkpoint)
    server = Flask("metdata.serve")
    server.config["MAX_CONTENT_LENGTH"] = max_body(config)
    worker = Worker(config).start()
    routes.add_routes(server, worker)
    dashboard.create_dash(worker, meta, config.data is not None, server)
    return Front(
        server,
        lambda path: routes.health(worker, path),
        max_body=max_body(config),
        body_deadline=limits.body_deadline,
        threads=threads,
        max_buffered=limits.max_buffered,
    )


def _quiet_bad_requests(record: logging.LogRecord) -> bool:
    """uvicorn's warning for each malformed request (already answered 400) is a debug line of metdata's."""
    if record.getMessage() == "Invalid HTTP request received.":
        log.debug("an invalid HTTP request was answered 400")
        return False
    return True


def worker_class(limits: Limits):
    """The gunicorn worker class: uvicorn's worker on the asyncio loop, with ``front``'s HTTP/1.1 protocol."""
    from uvicorn_worker import UvicornWorker

    from metdata.serve.front import MAX_HEAD, DeadlineH11Protocol

    protocol = type(
        "ServeProtocol",
        (DeadlineH11Protocol,),
        {
            "head_deadline": limits.head_deadline,
            "write_deadline": limits.write_deadline,
            "max_connections": limits.max_connections,
        },
    )

    class ServeWorker(UvicornWorker):
        CONFIG_KWARGS = {  # noqa: RUF012 - uvicorn-worker's documented override
            "loop": "asyncio",
            "http": protocol,
            "lifespan": "off",
            "ws": "none",
            "timeout_keep_alive": limits.keepalive,
            "h11_max_incomplete_event_size": MAX_HEAD,  # an incomplete head over 64 KiB: 400; a whole one: 431
        }

    return ServeWorker


def run(
    config: ServeConfig,
    host: str = "127.0.0.1",
    port: int = 8050,
    workers: int = 1,
    threads: int = 4,
    limits: Limits = Limits(),
) -> None:
    """Serve until stopped (SIGTERM or Ctrl-C); the URL is printed once the port is bound.

    ``port`` 0 takes a free port (the printed URL names it).
    """
    from gunicorn.app.base import BaseApplication

    def when_ready(arbiter) -> None:
        bound = arbiter.LISTENERS[0].sock.getsockname()
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        print(f"metdata serve: http://{shown}:{bound[1]}/  (API: POST /api/predict; Ctrl-C stops)", flush=True)

    settings = {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": workers,
        "worker_class": worker_class(limits),
        "preload_app": False,  # each worker builds the app, and loads the model, after the fork
        "timeout": 120,
        "graceful_timeout": 20,
        "backlog": 2048,
        "control_socket_disable": True,
        "when_ready": when_ready,
        "accesslog": None,
        "loglevel": "warning",
    }

    class Application(BaseApplication):
        def load_config(self):
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self):
            return create_app(config, threads, limits)

    sys.argv = sys.argv[:1]  # gunicorn must not read metdata's options as its own
    Application().run()
