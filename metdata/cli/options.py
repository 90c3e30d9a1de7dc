"""Parameter types and options shared by several commands: validated when parsed."""

from __future__ import annotations

import datetime as dt
import json
import math
import re

import click

from metdata.acquire.api import DEFAULT_API
from metdata.errors import UserError
from metdata.storage.layout import DEFAULT_STORE


class FiniteFloat(click.FloatRange):
    """A finite number within a range: ``nan`` and ``inf`` are refused, not compared.

    Same arguments as ``click.FloatRange`` (``min``, ``max``, ``min_open``, ``max_open``), except
    that both bounds are finite: a value no range check can catch (nan) never gets through.
    """

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number: give one in {self._describe_range()}", param, ctx)
        return super().convert(number, param, ctx)


class Rate(FiniteFloat):
    """Requests/second: 0 (no limit) or from 0.01 up; whether a host allows it is ``pacing.check_rate``'s call."""

    def __init__(self) -> None:
        super().__init__(0, 1_000_000)

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if 0 < number < 0.01:
            self.fail(f"{value!r} is below 0.01 requests/s; give 0 for no limit, or a rate from 0.01", param, ctx)
        return number


class NonEmpty(click.ParamType):
    """A text that must say something: ``""`` or blanks are refused, never read as "not given"
    (``--from-csv ""`` would otherwise start a full crawl)."""

    name = "TEXT"

    def __init__(self, what: str = "a value") -> None:
        self.what = what

    def convert(self, value, param, ctx):
        if not isinstance(value, str) or not value.strip():
            optional = "" if param is not None and param.required else ", or leave the option out"
            self.fail(f"{value!r} is empty: give {self.what}{optional}", param, ctx)
        return value


class StoreName(click.ParamType):
    """A store name under the root: one plain folder name ending ``.zarr`` (see ``layout.store_paths``)."""

    name = "NAME.zarr"

    def convert(self, value, param, ctx):
        from metdata.errors import DatasetError
        from metdata.storage.layout import store_paths

        try:
            store_paths(value)
        except DatasetError as exc:
            self.fail(str(exc), param, ctx)
        return value


class JsonObject(click.ParamType):
    """A JSON object given on the command line, e.g. ``'{"endpoint_url": "http://..."}'``."""

    name = "JSON"

    def convert(self, value, param, ctx):
        if isinstance(value, dict):
            return value
        try:
            parsed = json.loads(value)
        except ValueError as exc:
            self.fail(
                f"{value!r} is not JSON ({exc}); give an object like '{{\"anon\": false}}'",
                param,
                ctx,
            )
        if not isinstance(parsed, dict):
            self.fail(f"{value!r} must be a JSON object like '{{\"anon\": false}}'", param, ctx)
        return parsed


class IsoDate(click.ParamType):
    """A calendar date written YYYY-MM-DD; passed on as that string."""

    name = "YYYY-MM-DD"

    def convert(self, value, param, ctx):
        try:
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
                raise ValueError
            dt.date.fromisoformat(value)
        except ValueError:
            self.fail(f"{value!r} is not a date; write it YYYY-MM-DD, e.g. 2024-05-03", param, ctx)
        return value


class DepartmentIds(click.ParamType):
    """Department ids joined by ``|``, e.g. ``6|11``."""

    name = "IDS"

    def convert(self, value, param, ctx):
        parts = value.split("|")
        if not all(p.strip().isdigit() for p in parts):
            self.fail(f"{value!r} must be department ids joined by '|', e.g. 6|11", param, ctx)
        return "|".join(p.strip() for p in parts)


api_option = click.option(
    "--api",
    type=NonEmpty("the API base URL"),
    default=DEFAULT_API,
    show_default=True,
    help="The Collection API base URL (the emulator's, for offline work).",
)
data_option = click.option(
    "--data",
    "data",
    type=NonEmpty("a local folder or s3://bucket/prefix"),  # "" would be the current folder
    required=True,
    help="Dataset root: a local folder or s3://bucket/prefix.",
)
storage_option = click.option(
    "--storage-options",
    type=JsonObject(),
    default="{}",
    help="fsspec options for the root as JSON, e.g. '{\"endpoint_url\": ...}'. "
    "Credentials otherwise come the standard AWS ways.",
)
cluster_option = click.option(
    "--cluster",
    default="local",
    show_default=True,
    help="'local' (a LocalCluster on this machine), tcp://HOST:PORT, or k8s://NAMESPACE/NAME "
    "(a dask-kubernetes DaskCluster; pip install 'metdata[k8s]').",
)
rate_option = click.option(
    "--rate",
    type=Rate(),
    default=1.0,
    show_default=True,
    help="Requests/second per host for the whole cluster; 0: no limit. 1/s is the pace "
    "measured safe against the real Met; its hosts refuse more than their documented 80/s, "
    "others (the emulator, a mirror, --allow-host hosts) take any rate.",
)


store_option = click.option(
    "--store", type=StoreName(), default=DEFAULT_STORE, show_default=True, help="The Zarr store's name under ROOT."
)


def tuning_options(f):
    """Options of lookups and pacing shared by both commands."""
    for option in reversed(
        [
            rate_option,
            click.option(
                "--adaptive/--no-adaptive",
                default=False,
                show_default=True,
                help="After a block, probe back up towards --rate while no block comes.",
            ),
            click.option(
                "--cooldown",
                type=FiniteFloat(0, 86_400),
                default=120.0,
                show_default=True,
                help="Seconds the whole cluster pauses after a block.",
            ),
            click.option(
                "--max-in-flight",
                type=click.IntRange(0, 1024),
                default=0,
                show_default=True,
                help="Most requests in flight per task; 0 sizes it to the budget (rate x timeout, at most 256; "
                "32 with --rate 0). The requests really in flight are rate x latency.",
            ),
            click.option(
                "--timeout",
                type=FiniteFloat(0.1, 3_600),
                default=30.0,
                show_default=True,
                help="Seconds before a request counts as a transient failure.",
            ),
            click.option(
                "--max-attempts",
                type=click.IntRange(1, 50),
                default=5,
                show_default=True,
                help="Attempts per id for transient failures and blocks.",
            ),
        ]
    ):
        f = option(f)
    return f


def _checkpoint_file(ctx, param, value: str) -> str:
    from metdata.train.runfolder import CHECKPOINTS

    return CHECKPOINTS[value]


#: ``--checkpoint best|last``, given to the command as the checkpoint's file name in RUN.
checkpoint_option = click.option(
    "--checkpoint",
    type=click.Choice(["best", "last"]),
    default="best",
    show_default=True,
    callback=_checkpoint_file,
    help="best.keras (best validation accuracy) or model.keras (last epoch).",
)


def fail_cleanly(fn, *args, **kwargs):
    """Run a job; turn the errors that users can fix into a one-line message and exit 1."""
    try:
        return fn(*args, **kwargs)
    except UserError as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:
        click.echo("interrupted: finished work is kept; rerun the same command to resume", err=True)
        raise SystemExit(130) from None
