"""``metdata targets``: the training targets and their class counts on a dataset."""

from __future__ import annotations

import click

from metdata.cli.options import data_option, fail_cleanly, storage_option


@click.command()
@data_option
@click.option("--target", "extra", multiple=True, metavar="FILE.toml", help="Also show a target defined in a file.")
@storage_option
def targets(data, extra, storage_options) -> None:
    """List the targets (built in and given) with their class counts on this dataset."""
    from metdata.core.targets import BUILTINS, TargetError, count, resolve
    from metdata.storage.dataset import Dataset
    from metdata.storage.objects import objects_table

    def go():
        chosen = [resolve(name) for name in [*BUILTINS, *extra]]
        columns = sorted({"objectID", *(c for t in chosen for c in t.columns)})
        records = objects_table(Dataset(data, storage_options), columns).to_pylist()
        for target in chosen:
            counts = count(target, records)
            click.echo(click.style(f"{target.name}", bold=True) + f"  {target.description}")
            for cls, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:25]:
                click.echo(f"  {cls:<30} {n:>8,}")
            if len(counts) > 25:
                click.echo(f"  ... and {len(counts) - 25} more classes")
            try:
                target.check_counts(counts)
            except TargetError as exc:
                click.echo(click.style(f"  warning: {exc}", fg="yellow"))
        return chosen

    fail_cleanly(go)
