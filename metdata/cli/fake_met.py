"""``metdata fake-met``: run the Met emulator until interrupted."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import click

from metdata.cli.options import FiniteFloat
from metdata.emulator import EmulatorConfig, MetEmulator
from metdata.emulator.faults import DESCRIPTIONS, parse_kinds
from metdata.emulator.server import STATS_PATH


class FaultKinds(click.ParamType):
    """A comma-separated list of fault kinds, checked when the command line is parsed."""

    name = "KINDS"

    def convert(self, value, param, ctx):
        if isinstance(value, frozenset):
            return value
        try:
            return parse_kinds(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


FAULT_HELP = "Comma-separated fault kinds, or 'all': " + "; ".join(f"{k}: {v}" for k, v in DESCRIPTIONS.items())


@click.command("fake-met")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port",
    default=0,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to bind; 0 picks a free one.",
)
@click.option(
    "--objects",
    default=10_000,
    show_default=True,
    type=click.IntRange(1, 899_999),
    help="Size of the synthetic catalog (the real one holds about 500,000).",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of records, images and faults.")
@click.option(
    "--catalog",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Replay recorded responses from DIR/objects/<id>.json and DIR/images/CRDImages/.",
)
@click.option(
    "--latency",
    default=0.0,
    show_default=True,
    type=FiniteFloat(0, 3_600),
    help="Seconds added to every answer.",
)
@click.option(
    "--throttle/--no-throttle",
    default=True,
    show_default=True,
    help="The bot protection (Incapsula blocks) on or off.",
)
@click.option(
    "--throttle-window",
    default=30.0,
    show_default=True,
    type=FiniteFloat(0, 3_600, min_open=True),
    help="Sliding window of the request budget, seconds.",
)
@click.option(
    "--throttle-burst",
    default=40,
    show_default=True,
    type=click.IntRange(1),
    help="Requests allowed per window, per client and host.",
)
@click.option(
    "--throttle-penalty",
    default=60.0,
    show_default=True,
    type=FiniteFloat(0, 3_600),
    help="Seconds a client stays blocked once over budget.",
)
@click.option(
    "--fault-rate",
    default=0.0,
    show_default=True,
    type=FiniteFloat(0, 1),
    help="Probability of each selected fault kind, per request or object it applies to.",
)
@click.option("--faults", default="all", show_default=True, type=FaultKinds(), help=FAULT_HELP)
@click.option(
    "--slow-seconds",
    default=30.0,
    show_default=True,
    type=FiniteFloat(0, 3_600),
    help="How long a 'slow' fault holds its answer.",
)
@click.option(
    "--mix",
    default="real",
    show_default=True,
    type=click.Choice(["real", "dense"]),
    help="The synthetic catalog's proportions: 'real' (paintings ~2 % of objects, ~60 % of them public domain) "
    "or 'dense' (~17 % paintings, for small runs that need many).",
)
@click.option(
    "--csv-date",
    type=click.DateTime(["%Y-%m-%d"]),
    help="Date of the Open Access CSV served: it holds the objects last updated before it "
    "[default: 2026-08-26, all but the newest ~4 % of the synthetic catalog].",
)
@click.option(
    "--prebuild-search",
    is_flag=True,
    help="Build the /v1.1/search index before printing the URLs (about 5 s per 100,000 objects) "
    "instead of on the first search.",
)
def fake_met(csv_date, **options) -> None:
    """Serve the Met Collection API and image host, offline, on this machine.

    The first line printed is the API base URL to pass as --api; the second, the URL of the
    catalog as the Open Access MetObjects.csv (for --from-csv).
    """
    if csv_date is not None:
        options["csv_date"] = csv_date.date()
    try:
        met = MetEmulator(EmulatorConfig(**options))
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    met.start()
    click.echo(met.url)
    click.echo(met.csv_url)
    click.echo(f"stats: {met.base}{STATS_PATH}", err=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    met.stop()
