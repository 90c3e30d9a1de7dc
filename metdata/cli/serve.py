"""``metdata serve``: a run's model as a dashboard and a JSON API, under gunicorn.

Imports neither TensorFlow nor Dash until the command runs; the workers load the model.
"""

from __future__ import annotations

import click

from metdata.cli.options import FiniteFloat, checkpoint_option, fail_cleanly, storage_option


@click.command()
@click.option("--model", "run_url", required=True, metavar="RUN", help="A run folder written by 'metdata train'.")
@click.option(
    "--data",
    default=None,
    metavar="ROOT",
    help="The run's dataset root: enables random validation paintings and the confusion matrix.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (0.0.0.0 in a container).")
@click.option("--port", type=click.IntRange(0, 65535), default=8050, show_default=True, help="0 takes a free one.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True, help="Processes, one model each.")
@click.option("--threads", type=click.IntRange(1, 64), default=4, show_default=True, help="Request threads per worker.")
@click.option(
    "--max-upload-mb", type=FiniteFloat(0.01, 200), default=20, show_default=True, help="Largest image accepted."
)
@click.option(
    "--allow-host",
    multiple=True,
    metavar="HOST[:PORT]",
    help="Another host image URLs may name (repeatable; images.metmuseum.org always may).",
)
@click.option(
    "--fetch-timeout",
    type=FiniteFloat(0.1, 300),
    default=20.0,
    show_default=True,
    help="Seconds to download an image URL, whole.",
)
@click.option(
    "--header-timeout",
    type=FiniteFloat(0.5, 300),
    default=10.0,
    show_default=True,
    help="Seconds a client has to send a whole request head (not per byte).",
)
@click.option(
    "--body-timeout",
    type=FiniteFloat(0.5, 600),
    default=30.0,
    show_default=True,
    help="Seconds a client has to send a whole request body.",
)
@click.option(
    "--write-timeout",
    type=FiniteFloat(0.5, 600),
    default=30.0,
    show_default=True,
    help="Seconds an answer may take to be read by its client; then the connection is dropped.",
)
@click.option(
    "--max-buffered-mb",
    type=FiniteFloat(1, 100_000),
    default=None,
    help="Request body MB a worker holds at once (default: 4 uploads of the largest size); more are answered 503.",
)
@click.option(
    "--max-connections",
    type=click.IntRange(8, 100_000),
    default=500,
    show_default=True,
    help="Open connections per worker; more are answered 503.",
)
@checkpoint_option
@storage_option
def serve(
    run_url,
    data,
    host,
    port,
    workers,
    threads,
    max_upload_mb,
    allow_host,
    fetch_timeout,
    header_timeout,
    body_timeout,
    write_timeout,
    max_buffered_mb,
    max_connections,
    checkpoint,
    storage_options,
) -> None:
    """Serve RUN's model: a dashboard to try it in a browser, and POST /api/predict.

    Prints its URL first; GET /healthz is live at once, GET /readyz once the model is loaded.
    Requests are read whole on each worker's event loop (a slow client holds a socket, not one of
    the --threads that run the model), under --header-timeout and --body-timeout.
    """
    from metdata.net.pacing import MET_IMAGE_HOST
    from metdata.predict import prediction
    from metdata.serve.server import Limits, run
    from metdata.serve.state import ServeConfig

    config = ServeConfig(
        run=run_url,
        data=data,
        storage_options=storage_options,
        checkpoint=checkpoint,
        max_bytes=int(max_upload_mb * (1 << 20)),
        fetch_deadline=fetch_timeout,
        allowed_hosts=frozenset({MET_IMAGE_HOST, *(h.strip().lower() for h in allow_host)}),
    )
    fail_cleanly(prediction.read_settings, run_url, storage_options, config.checkpoint)  # before any fork
    limits = Limits(
        head_deadline=header_timeout,
        body_deadline=body_timeout,
        write_deadline=write_timeout,
        max_connections=max_connections,
        max_buffered=None if max_buffered_mb is None else int(max_buffered_mb * (1 << 20)),
    )
    run(config, host=host, port=port, workers=workers, threads=threads, limits=limits)
