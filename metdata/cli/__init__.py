"""The ``metdata`` command line: a thin click group whose commands load lazily.

Each command lives in its own module and is imported only when run, so ``metdata fake-met``
or ``metdata ingest`` never import TensorFlow.
"""

from __future__ import annotations

import importlib
import logging
import os

import click

#: command name -> "module:attribute"
COMMANDS = {
    "fake-met": "metdata.cli.fake_met:fake_met",
    "demo": "metdata.cli.demo:demo",
    "ids": "metdata.cli.ingest:ids",
    "ingest": "metdata.cli.ingest:ingest",
    "plan": "metdata.cli.plan:plan",
    "images": "metdata.cli.images:images",
    "targets": "metdata.cli.targets:targets",
    "explore": "metdata.cli.explore:explore",
    "train": "metdata.cli.train:train",
    "evaluate": "metdata.cli.train:evaluate",
    "predict": "metdata.cli.train:predict",
    "serve": "metdata.cli.serve:serve",
}


class LazyGroup(click.Group):
    """A click group that imports a command's module only when that command is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return super().get_command(ctx, name)
        module, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=LazyGroup)
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="How much to log (to stderr).",
)
@click.version_option(package_name="metdata")
def main(log_level: str) -> None:
    """metdata: the Met's open Collection API to a trained image classifier."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Dask's own INFO lines (every worker start and stop) drown the job's progress. Set before
    # distributed is imported (it configures its loggers then), and inherited by its workers.
    if log_level.upper() != "DEBUG":
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
