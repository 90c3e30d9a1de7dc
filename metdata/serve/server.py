"""The WSGI app of ``metdata serve`` and the gunicorn application that runs it.

gunicorn's master binds the port and forks the workers; each worker then builds its own app
(``preload_app`` off), which starts loading the model in a thread: one model per worker
process, loaded after the fork, never at import. Threads (``gthread``) let ``/healthz``
answer while a prediction runs.
"""

from __future__ import annotations

import logging
import sys

from metdata import prediction
from metdata.serve.state import ServeConfig, Worker

log = logging.getLogger(__name__)

#: Dash sends an upload base64-encoded inside its callback's JSON: 4/3 of the file, and some room
DASH_OVERHEAD = 1 << 20


#: Seconds a request may wait for more of its body before its connection is dropped.
BODY_TIMEOUT_S = 30.0


def create_app(config: ServeConfig):
    """The Flask app of one worker: the JSON routes and the Dash dashboard; the model loads in a thread.

    Raises:
        UserError: RUN is not a finished run (read from its run.json, without TensorFlow).
    """
    from flask import Flask, request

    from metdata.serve import dashboard, routes

    meta = prediction.read_settings(config.run, config.storage_options, config.checkpoint)
    server = Flask("metdata.serve")
    server.config["MAX_CONTENT_LENGTH"] = config.max_bytes * 4 // 3 + DASH_OVERHEAD
    worker = Worker(config).start()

    @server.before_request
    def _bounded_body_reads():  # a client that never sends its body must not hold a thread for ever
        sock = request.environ.get("gunicorn.socket")
        if sock is not None:
            sock.settimeout(BODY_TIMEOUT_S)

    routes.add_routes(server, worker)
    dashboard.create_dash(worker, meta, config.data is not None, server)
    return server


def run(config: ServeConfig, host: str = "127.0.0.1", port: int = 8050, workers: int = 1, threads: int = 4) -> None:
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
        "worker_class": "gthread",
        "threads": threads,
        "preload_app": False,  # each worker builds the app, and loads the model, after the fork
        "timeout": 120,
        "graceful_timeout": 20,
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
            return create_app(config)

    sys.argv = sys.argv[:1]  # gunicorn must not read metdata's options as its own
    Application().run()
