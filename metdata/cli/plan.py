"""``metdata plan``: each path to a target's images priced in requests per host and hours, before a long run."""

from __future__ import annotations

import json

import click

from metdata.cli.options import JsonObject, NonEmpty, Rate, api_option, fail_cleanly


@click.command()
@click.option(
    "--target",
    required=True,
    type=NonEmpty("a target's name or .toml file"),
    metavar="NAME",
    help="A built-in target or a target's .toml file.",
)
@api_option
@click.option(
    "--rate",
    type=Rate(),
    default=1.0,
    show_default=True,
    help="API requests/second to price at (and to pace the plan's own few requests); 0: no limit, then the "
    "API host's hours are not priced (bounded by the host). The Met's hosts refuse 0 or more than 80/s.",
)
@click.option(
    "--image-rate",
    type=Rate(),
    default=1.0,
    show_default=True,
    help="Image requests/second to price at (the image host has its own budget); 0: no limit, as --rate. "
    "With the Met's API, the image host is images.metmuseum.org: 0 or more than 80/s are refused.",
)
@click.option(
    "--from-csv",
    "from_csv",
    type=NonEmpty("MetObjects.csv's path or URL"),
    metavar="PATH_OR_URL",
    help="The Open Access MetObjects.csv to price (its size only is read); default: the documented one.",
)
@click.option("--csv-storage-options", type=JsonObject(), default="{}", help="fsspec options for --from-csv.")
@click.option(
    "--data",
    type=NonEmpty("the dataset root"),
    default="ROOT",
    show_default=True,
    help="The dataset root to write into the commands.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def plan(target, api, rate, image_rate, from_csv, csv_storage_options, data, as_json) -> None:
    """Price each path to a target's images (full crawl, CSV, search, CSV + search) and name the fastest.

    Asks only what is cheap: the listing's total (1 request), each of the target's search queries'
    totals (1 request each) and the CSV's size (no download); paced at --rate.
    """
    from urllib.parse import urlsplit

    from metdata.acquire import plan as planning
    from metdata.acquire.lookup import LookupOptions
    from metdata.core.targets import resolve
    from metdata.net.pacing import MET_HOSTS, LocalPacer, PaceConfig, check_rate, is_met_host

    api_host = urlsplit(api).netloc
    fail_cleanly(check_rate, rate, [api_host])  # the Met's ceiling, before any request
    image_hosts = sorted(MET_HOSTS) if is_met_host(api_host) else [api_host]  # the Met's records: its image host
    fail_cleanly(check_rate, image_rate, image_hosts, "--image-rate")

    def go():
        chosen = resolve(target)
        options = LookupOptions(api=api)
        facts = planning.gather(chosen, options, LocalPacer(PaceConfig(rate=rate)), from_csv, csv_storage_options)
        return facts, planning.price(facts, rate, image_rate, api=api, data=data)

    facts, costs = fail_cleanly(go)
    if as_json:
        click.echo(json.dumps(planning.as_json(facts, costs, rate, image_rate), indent=2))
    else:
        click.echo(planning.render(facts, costs, rate, image_rate))
