"""The JSON routes of the server: ``POST /api/predict``, ``GET /healthz``, ``GET /readyz``.

Every failure is a JSON ``{"error": ...}`` with a 4xx status (503 while the model loads), naming
the run by its name, never by its path on the server; request bodies are capped by Flask's
``MAX_CONTENT_LENGTH`` before they are read. In the server, ``front`` answers ``/healthz`` and
``/readyz`` with ``health`` on its event loop; the Flask routes here answer the same.
"""

from __future__ import annotations

import logging

from dash.exceptions import DependencyException, InvalidCallbackReturnValue
from flask import Flask, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, InternalServerError

from metdata.predict.prediction import ImageRejected, fetch_image_url
from metdata.serve.state import Worker

log = logging.getLogger(__name__)

#: room for the multipart headers around a file of the largest size allowed
FORM_OVERHEAD = 64 << 10


def image_bytes(worker: Worker) -> bytes:
    """The image of a predict request: the multipart field ``file``, or the URL of a JSON ``{"url": ...}``.

    Raises:
        ImageRejected: no image in the request, too many bytes, or a URL that cannot be read.
    """
    config = worker.config
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("file")
        if upload is None:
            raise ImageRejected("the multipart form has no field 'file': send the image as file=@painting.jpg", 400)
        data = upload.stream.read(config.max_bytes + 1)
        if len(data) > config.max_bytes:
            raise ImageRejected(f"the file is over the {config.max_bytes:,} byte cap", 413)
        return data
    if request.mimetype == "application/json":
        try:
            body = request.get_json(silent=True)
        except RecursionError as exc:  # json's C parser refuses deep nesting this way, not as a ValueError
            raise ImageRejected("the JSON body is nested too deeply", 400) from exc
        if body is None and request.get_data(cache=True):
            raise ImageRejected(
                'the body is not valid JSON (UTF-8): send {"url": "https://images.metmuseum.org/..."}', 400
            )
        url = body.get("url") if isinstance(body, dict) else None
        if not isinstance(url, str) or not url:
            raise ImageRejected('the JSON body must be {"url": "https://images.metmuseum.org/..."}', 400)
        return fetch_image_url(url, config.limits)
    raise ImageRejected(
        f"send the image as multipart/form-data (field 'file') or JSON {{\"url\": ...}}, not {request.mimetype!r}", 415
    )


def health(worker: Worker, path: str) -> tuple[int, dict]:
    """The answer to ``GET /healthz`` (live unless the model failed to load) or ``GET /readyz``
    (ready once the model has answered its warm-up prediction): (status, JSON payload). Never blocks."""
    if path == "/healthz":
        if worker.error:  # a worker whose model cannot load is not alive: let the orchestrator restart it
            return 503, {"status": "failed", "error": worker.error}
        return 200, {"status": "live"}
    if worker.ready.is_set():
        return 200, {"status": "ready", "model": worker.about()}
    if worker.error:
        return 503, {"status": "failed", "error": worker.error}
    return 503, {"status": "loading"}


def add_routes(app: Flask, worker: Worker) -> None:
    """Register the JSON routes and JSON error pages for ``/api/`` on the Flask app."""

    @app.get("/healthz")
    def healthz():
        status, payload = health(worker, "/healthz")
        return jsonify(payload), status

    @app.get("/readyz")
    def readyz():
        status, payload = health(worker, "/readyz")
        return jsonify(payload), status

    @app.route("/api/predict", methods=["GET", "PUT", "PATCH", "DELETE", "OPTIONS"], provide_automatic_options=False)
    def predict_other_methods():  # without it, Dash's catch-all page would answer GET with the dashboard
        if request.method == "OPTIONS":
            return "", 204, {"Allow": "POST, OPTIONS"}
        answer = jsonify(error=f"{request.method} is not allowed here: POST an image to /api/predict")
        return answer, 405, {"Allow": "POST"}

    @app.route("/_dash-update-component", methods=["GET", "PUT", "PATCH", "DELETE"], provide_automatic_options=False)
    def callback_other_methods():  # Dash's catch-all page would answer GET with the dashboard
        return jsonify(error=f"{request.method} is not allowed here: Dash posts its callbacks"), 405, {"Allow": "POST"}

    @app.errorhandler(DependencyException)
    def unknown_asset(_exc):  # a script or file Dash does not serve: a 404, not a 500 with a traceback
        log.debug("no such Dash asset: %s", request.path)
        return jsonify(error=f"no such file {request.path!r}"), 404

    for kind in (TypeError, ValueError, KeyError, AttributeError, IndexError, InvalidCallbackReturnValue):
        app.register_error_handler(kind, _bad_callback_input)

    @app.route("/api/<path:_rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    def api_unknown(_rest):
        return jsonify(error=f"no such API route {request.path!r}: the API is POST /api/predict"), 404

    @app.errorhandler(RecursionError)
    def too_deep(_exc):  # a JSON body nested 100,000 deep, to any route (Dash's callbacks too)
        return jsonify(error="the JSON body is nested too deeply"), 400

    @app.post("/api/predict")
    def predict():
        if not worker.ready.is_set():
            return jsonify(error=worker.error or "the model is still loading; retry in a few seconds"), 503
        request.max_content_length = worker.config.max_bytes + FORM_OVERHEAD  # before the body is read
        try:
            pixels = worker.predictor.prepare(image_bytes(worker), worker.config.max_pixels)
        except ImageRejected as exc:
            return jsonify(error=str(exc)), exc.status
        return jsonify(worker.answer(pixels))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if not request.path.startswith("/api/"):
            return exc  # Dash's own routes keep their pages
        message = exc.description
        if exc.code == 413 and (request.content_length or 0) <= (request.max_content_length or 0):
            message = "the form has too many parts: send the image alone, as the field 'file'"
        elif exc.code == 413:
            message = f"the request is over the {worker.config.max_bytes:,} byte cap (--max-upload-mb)"
        headers = [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]  # Allow, for a 405
        return jsonify(error=message), exc.code, headers


def _bad_callback_input(exc: Exception):
    """A Dash callback that failed on inputs the dashboard never sends (wrong types): a 400 and one
    log line, not a 500 and a traceback. The same errors anywhere else stay 500s, logged in full."""
    if request.path == "/_dash-update-component" and request.method == "POST":
        log.warning("a dashboard callback refused its inputs: %s: %s", type(exc).__name__, exc)
        return jsonify(error="the callback's inputs are not what the dashboard sends"), 400
    current_app.log_exception((type(exc), exc, exc.__traceback__))
    return InternalServerError(original_exception=exc)
