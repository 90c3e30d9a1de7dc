"""The Dash dashboard: try a painting (upload, URL, random validation painting), its class
probabilities and Grad-CAM, where the model goes wrong (the confusion matrix, click a cell for
its paintings) and what the model is (run.json, history.json). Layout and callbacks; the
figures are ``charts``.
"""

from __future__ import annotations

import base64
import binascii
import logging

import numpy as np
from dash import Dash, Input, Output, State, ctx, dcc, html, no_update

from metdata.predict import prediction
from metdata.predict.prediction import ImageRejected, fetch_image_url
from metdata.serve.charts import (
    ACCENT,
    RIGHT,
    WRONG,
    confusion_figure,
    curves_figure,
    data_uri,
    empty,
    probability_figure,
)
from metdata.serve.state import Worker
from metdata.storage.layout import DEFAULT_STORE

log = logging.getLogger(__name__)

DISPLAY = 320  # px: the painting as shown (the model sees the run's size)
GRID = 24  # paintings shown for a confusion cell

STYLE = """
body { margin: 0; font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328;
       background: #f6f8fa; }
.page { max-width: 1180px; margin: 0 auto; padding: 12px 16px 40px; }
h1 { font-size: 1.6rem; margin: 8px 0 2px; }
.subtitle { color: #57606a; margin: 0 0 10px; }
.columns { display: grid; grid-template-columns: minmax(280px, 360px) 1fr; gap: 16px; align-items: start; }
.card { background: white; border: 1px solid #d0d7de; border-radius: 8px; padding: 14px; margin-top: 12px; }
.upload { border: 2px dashed #8c959f; border-radius: 8px; padding: 22px 8px; text-align: center; cursor: pointer;
          color: #57606a; }
.row { display: flex; gap: 8px; margin-top: 10px; flex-wrap: wrap; align-items: center; }
.row input { flex: 1; min-width: 0; padding: 8px; border: 1px solid #d0d7de; border-radius: 6px; font-size: 1rem; }
button { padding: 8px 14px; border-radius: 6px; border: 1px solid #0b5cad; background: #0b5cad; color: white;
         font-size: 1rem; cursor: pointer; }
button:disabled { background: #9aa7b4; border-color: #9aa7b4; cursor: not-allowed; }
button.secondary { background: white; color: #0b5cad; }
.controls { display: grid; grid-template-columns: minmax(240px, 1fr) 2fr; gap: 12px; align-items: center; }
.controls .error { grid-column: 1 / -1; margin: 0; }
.pick .row:first-child { margin-top: 0; }
.toggle { margin-top: 8px; color: #1f2328; }
.toggle input { margin-right: 6px; }
.painting { width: 100%; max-width: 320px; aspect-ratio: 1; border-radius: 6px; display: block; background: #eee; }
.verdict { font-size: 1.15rem; font-weight: 600; margin: 6px 0; }
.error { color: #cf222e; margin-top: 8px; white-space: pre-wrap; }
.hint { color: #57606a; font-size: 0.9rem; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(140px, 1fr)); gap: 10px; margin-top: 10px; }
.tile { background: white; border: 1px solid #d0d7de; border-radius: 6px; padding: 6px; font-size: 0.82rem; }
.tile img { width: 100%; aspect-ratio: 1; border-radius: 4px; display: block; }
.facts { border-collapse: collapse; }
.facts td { padding: 4px 12px 4px 0; vertical-align: top; }
@media (max-width: 800px) {
  .columns, .controls { grid-template-columns: 1fr; } h1 { font-size: 1.3rem; } .page { padding: 8px; }
}
"""

INDEX = (
    """<!DOCTYPE html>
<html lang="en">
  <head>
    {%metas%}
    <title>{%title%}</title>
    {%favicon%}
    {%css%}
    <style>"""
    + STYLE
    + """</style>
  </head>
  <body>
    {%app_entry%}
    <footer>{%config%}{%scripts%}{%renderer%}</footer>
  </body>
</html>"""
)


_HOW = (
    "Upload a painting, paste an image URL from the Met, or draw a random painting the model "
    "did not train on. The model sees it as the store holds it: decoded and resized like every training image."
)


def layout(meta: dict, has_data: bool, max_bytes: int) -> html.Div:
    """The page: a header and three tabs."""
    classes = ", ".join(meta["classes"])
    random_hint = "" if has_data else "Start the server with --data ROOT to draw paintings from the validation split."
    controls = html.Div(
        className="card controls",
        children=[
            dcc.Upload(
                id="upload",
                className="upload",
                accept="image/jpeg,image/png",
                max_size=max_bytes,
                children=html.Div(["Drop a painting here, or ", html.B("choose a file")]),
            ),
            html.Div(
                className="pick",
                children=[
                    html.Div(
                        className="row",
                        children=[
                            dcc.Input(id="url", type="url", placeholder="https://images.metmuseum.org/…jpg"),
                            html.Button("Score URL", id="score-url", className="secondary"),
                        ],
                    ),
                    html.Div(
                        className="row",
                        children=[
                            html.Button("Random painting", id="random", disabled=not has_data),
                            html.Span(random_hint, className="hint"),
                        ],
                    ),
                ],
            ),
            html.Div(id="error", className="error"),
        ],
    )
    try_tab = html.Div(
        [
            controls,
            html.Div(
                className="columns",
                children=[
                    html.Div(
                        className="card",
                        children=[
                            dcc.Loading(html.Img(id="painting", className="painting", alt="the painting")),
                            dcc.Checklist(
                                id="gradcam",
                                options=[{"label": " Show where the model looked (Grad-CAM)", "value": "on"}],
                                value=[],
                                className="toggle",
                                labelStyle={"color": "#1f2328"},
                            ),
                        ],
                    ),
                    html.Div(
                        className="card",
                        children=[
                            html.Div(id="about-painting", children=html.Div(_HOW, className="hint")),
                            dcc.Graph(
                                id="probabilities",
                                figure=empty("Try a painting"),
                                config={"displayModeBar": False, "responsive": True},
                            ),
                        ],
                    ),
                ],
            ),
        ]
    )
    wrong_tab = html.Div(
        [
            html.Div(
                className="card",
                children=[
                    html.Div(id="confusion-status", className="hint"),
                    dcc.Graph(
                        id="confusion",
                        figure=empty("Waiting for the validation paintings…"),
                        config={"displayModeBar": False, "responsive": True},
                    ),
                ],
            ),
            html.Div(
                id="cell", className="card", children=html.Div("Click a cell to see its paintings.", className="hint")
            ),
        ]
    )
    return html.Div(
        className="page",
        children=[
            html.H1("Which culture painted it?"),
            html.P(
                f"A {meta.get('model', 'model')} trained on {meta.get('target', 'a target')}: {classes}.",
                className="subtitle",
            ),
            html.Div(id="status", className="hint"),
            dcc.Tabs(
                id="tabs",
                value="try",
                children=[
                    dcc.Tab(label="Try a painting", value="try", children=try_tab),
                    dcc.Tab(label="Where it goes wrong", value="wrong", children=wrong_tab),
                    dcc.Tab(label="About this model", value="about", children=html.Div(id="about", className="card")),
                ],
            ),
            dcc.Store(id="shown"),
            dcc.Store(id="first"),  # set once the validation paintings are scored: the first screen's painting
            dcc.Interval(id="poll", interval=1000),
        ],
    )


def decode_upload(contents: str, max_bytes: int) -> bytes:
    """The bytes of a ``dcc.Upload`` data URI.

    >>> decode_upload("data:image/png;base64,aGk=", 10)
    b'hi'

    Raises:
        ImageRejected: not a base64 data URI, or more than ``max_bytes``.
    """
    _, _, encoded = contents.partition(";base64,")
    if not encoded or len(encoded) > 4 * (max_bytes // 3 + 1):
        raise ImageRejected(f"the upload is not an image file of at most {max_bytes:,} bytes", 413 if encoded else 400)
    try:
        return base64.b64decode(encoded, validate=True)
    except binascii.Error as exc:
        raise ImageRejected("the upload is not a base64 data URI", 400) from exc


def verdict(truth: str | None, guess: str) -> list:
    """The prediction line, green when it matches the true class and red when not."""
    if truth is None:
        return [
            html.Div(
                ["The model's prediction: ", html.Span(guess, id="guess", style={"color": ACCENT})], className="verdict"
            )
        ]
    colour = RIGHT if truth == guess else WRONG
    return [
        html.Div(["Correct culture: ", html.Span(truth, id="truth")], className="verdict"),
        html.Div(
            ["The model's prediction: ", html.Span(guess, id="guess", style={"color": colour})],
            className="verdict",
            **{"data-correct": str(truth == guess).lower()},
        ),
    ]


def register(app: Dash, worker: Worker) -> None:
    """The dashboard's callbacks, over this process's ``Worker``."""
    config = worker.config
    rng = np.random.default_rng()

    @app.callback(
        Output("shown", "data"),
        Output("about-painting", "children"),
        Output("probabilities", "figure"),
        Output("error", "children"),
        Input("upload", "contents"),
        Input("score-url", "n_clicks"),
        Input("url", "n_submit"),
        Input("random", "n_clicks"),
        Input("first", "data"),
        State("url", "value"),
        State("upload", "filename"),
        State("shown", "data"),
        prevent_initial_call=True,
    )
    def score(contents, _url_clicks, _url_submit, _random_clicks, _first, url, filename, shown):
        if ctx.triggered_id == "first" and shown:  # the page already shows a painting
            return no_update, no_update, no_update, no_update
        if not worker.ready.is_set():
            return no_update, no_update, no_update, worker.error or "The model is still loading; try again in a moment."
        try:
            if ctx.triggered_id in ("random", "first"):
                pixels, probabilities, row = _random_painting(worker, rng)
            else:
                if ctx.triggered_id == "upload":
                    data, row = decode_upload(contents or "", config.max_bytes), {"title": filename or "your image"}
                else:
                    data = fetch_image_url((url or "").strip(), config.limits)
                    row = {"title": url}
                pixels = worker.predictor.prepare(data, config.max_pixels)
                probabilities = worker.score(pixels[None])[0]
        except ImageRejected as exc:
            return no_update, no_update, no_update, str(exc)
        classes = worker.predictor.classes
        guess = int(np.argmax(probabilities))
        heat = worker.gradcam(pixels, guess)
        shown = {
            "plain": data_uri(prediction.enlarge(pixels, DISPLAY)),
            "cam": data_uri(prediction.overlay(pixels, heat, DISPLAY)),
        }
        return shown, _caption(row, classes[guess]), probability_figure(classes, probabilities), ""

    @app.callback(Output("painting", "src"), Input("shown", "data"), Input("gradcam", "value"))
    def painting(shown, gradcam):
        if not shown:
            return no_update
        return shown["cam"] if "on" in (gradcam or []) else shown["plain"]

    @app.callback(
        Output("status", "children"),
        Output("confusion", "figure"),
        Output("confusion-status", "children"),
        Output("about", "children"),
        Output("poll", "disabled"),
        Output("first", "data"),
        Input("poll", "n_intervals"),
    )
    def poll(_n):
        if worker.error:
            return f"The model could not be loaded: {worker.error}", no_update, "", no_update, True, no_update
        if not worker.ready.is_set():
            return "Loading the model…", no_update, "", no_update, False, no_update
        if not worker.validation_done.is_set():
            return "", no_update, "Scoring the validation paintings…", _about(worker), False, no_update
        if worker.validation is None:
            return "", empty("No validation paintings"), worker.validation_error, _about(worker), True, no_update
        v = worker.validation
        accuracy = np.trace(v.matrix) / max(1, v.matrix.sum())
        note = f"{len(v.rows)} validation paintings, accuracy {accuracy:.1%}. Click a cell to see its paintings."
        return "", confusion_figure(v.matrix, worker.predictor.classes), note, _about(worker), True, 1

    @app.callback(Output("cell", "children"), Input("confusion", "clickData"), prevent_initial_call=True)
    def cell(click):
        v = worker.validation
        if v is None or not click or not click.get("points"):
            return no_update
        classes = worker.predictor.classes
        point = click["points"][0]
        true, predicted = classes.index(point["y"]), classes.index(point["x"])
        chosen = v.cell(true, predicted)
        title = f"True {classes[true]}, predicted {classes[predicted]}: {len(chosen)} painting(s)"
        tiles = [_tile(v, int(i), classes) for i in chosen[:GRID]]
        more = f" (the first {GRID})" if len(chosen) > GRID else ""
        return [html.H3(title + more, id="cell-title"), html.Div(tiles, className="grid", id="cell-grid")]


def _random_painting(worker: Worker, rng) -> tuple[np.ndarray, np.ndarray, dict]:
    v = worker.validation
    if v is None:
        raise ImageRejected(worker.validation_error or "the validation paintings are still being scored", 409)
    i = int(rng.integers(len(v.rows)))
    return v.pixels[i], v.probabilities[i], v.rows[i]


def _caption(row: dict, guess: str) -> list:
    parts = [html.H3(row.get("title") or "Untitled", style={"margin": "10px 0 4px"})]
    if row.get("culture") is not None:
        parts.append(html.Div(f"Culture on record: {row.get('culture') or 'unknown'}", className="hint"))
    if row.get("objectURL"):
        parts.append(html.A("See it on metmuseum.org", href=row["objectURL"], target="_blank", rel="noopener"))
    return parts + verdict(row.get("truth"), guess)


def _tile(v, i: int, classes: list[str]) -> html.Div:
    p = v.probabilities[i]
    ranked = prediction.ranked(classes, p, 3)["top"]
    row = v.rows[i]
    title = row.get("title") or f"object {row['objectID']}"
    link = html.A(title[:60], href=row["objectURL"], target="_blank", rel="noopener") if row.get("objectURL") else title
    return html.Div(
        className="tile",
        children=[
            html.Img(src=data_uri(prediction.enlarge(v.pixels[i], 160)), alt=title),
            html.Div(link),
            html.Div(", ".join(f"{t['class']} {t['probability']:.0%}" for t in ranked), className="hint"),
        ],
    )


def _about(worker: Worker) -> list:
    p = worker.predictor
    meta = p.meta
    facts = worker.facts()
    best = meta.get("best_val_accuracy", meta.get("best_accuracy"))
    rows = [
        ("Classes", ", ".join(p.classes)),
        ("Training images per class", ", ".join(f"{c} {n}" for c, n in facts["train_counts"].items()) or "unknown"),
        ("Epochs", f"{meta.get('epochs_run', len(p.history))} of {meta.get('epochs', '?')}"),
        ("Best validation accuracy", f"{best:.1%}" if isinstance(best, float) else "unknown"),
        ("Model", f"{meta.get('model')} on {p.size}x{p.size} px ({p.resize}), checkpoint {p.checkpoint}"),
        ("Dataset", f"{_name(meta.get('data'))} (store {meta.get('store', DEFAULT_STORE)})"),
        ("Trained", facts["trained"] or "unknown"),
        ("Run", worker.config.run_name),
    ]
    table = html.Table([html.Tr([html.Td(html.B(k)), html.Td(v)]) for k, v in rows], className="facts")
    curves = (
        dcc.Graph(figure=curves_figure(p.history), config={"displayModeBar": False})
        if p.history
        else html.Div("No history.json", className="hint")
    )
    return [html.H3("About this model"), table, curves]


def _name(url) -> str:
    """A location as the page shows it: its last part, never the server's path."""
    return str(url).rstrip("/").rsplit("/", 1)[-1] or "unknown" if url else "unknown"


def create_dash(worker: Worker, meta: dict, has_data: bool, server) -> Dash:
    """The Dash app on ``server`` (a Flask app), its layout and callbacks."""
    app = Dash(__name__, server=server, title="metdata: which culture painted it?", update_title=None)
    app.index_string = INDEX
    app.layout = layout(meta, has_data, worker.config.max_bytes)
    register(app, worker)
    return app
