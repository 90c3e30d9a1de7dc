"""``metdata demo``: the offline demo, against the Met emulator started in-process.

For now a smoke run of the emulator: the listing, a sample of lookups paced under the bot
protection, and the images of the public-domain ones, with every answer classified.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections import Counter
from pathlib import Path

import click
import cv2
import numpy as np
import requests

from metdata.api import Outcome, classify
from metdata.emulator import EmulatorConfig, MetEmulator
from metdata.emulator.faults import parse_kinds

log = logging.getLogger(__name__)

#: A light, realistic fault mix: what a long crawl of the real service meets.
DEMO_FAULTS = "503,drop,not-valid,image-404,truncate"


def _get(
    session: requests.Session, url: str, tries: int = 4
) -> tuple[Outcome, requests.Response | None, str]:
    """GET with a few backed-off retries of transient failures; return the final outcome."""
    for attempt in range(tries):
        try:
            response = session.get(url, timeout=10)
        except requests.RequestException as exc:
            outcome, response, error = Outcome.TRANSIENT, None, type(exc).__name__
        else:
            answer = classify(
                response.status_code, response.headers.get("Content-Type", ""), response.content
            )
            if response.headers.get("Content-Type", "").startswith("image/") and response.ok:
                return Outcome.OK, response, ""
            outcome, error = answer.outcome, answer.error
        if outcome is not Outcome.TRANSIENT:
            return outcome, response, error
        time.sleep(0.2 * 2**attempt * random.uniform(0.5, 1.5))
    return outcome, response, error


@click.command()
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-run"),
    show_default=True,
    help="Where the demo writes its outputs.",
)
@click.option(
    "--objects",
    type=click.IntRange(10, 899_999),
    default=2_000,
    show_default=True,
    help="Size of the emulated collection.",
)
@click.option(
    "--lookups",
    type=click.IntRange(1, 200),
    default=15,
    show_default=True,
    help="How many objects the smoke run looks up.",
)
@click.option(
    "--rate",
    type=click.FloatRange(0.1, 10),
    default=1.0,
    show_default=True,
    help="Requests per second per host (1/s is the real service's safe pace).",
)
def demo(workdir: Path, objects: int, lookups: int, rate: float) -> None:
    """Run the offline demo against a local Met emulator (no internet needed)."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = EmulatorConfig(
        objects=objects, seed=0, fault_rate=0.05, faults=parse_kinds(DEMO_FAULTS), slow_seconds=2.0
    )
    with MetEmulator(config) as met, requests.Session() as session:
        click.echo(f"Met emulator: {met.url}  ({objects} objects, bot protection and faults on)")
        outcome, listing, error = _get(session, f"{met.url}/objects")
        if outcome is not Outcome.OK:
            raise click.ClickException(f"the listing failed ({outcome}: {error})")
        ids = listing.json()["objectIDs"]
        click.echo(f"listing: {len(ids)} object ids")
        sample = random.Random(0).sample(ids, min(lookups, len(ids)))
        statuses: Counter[str] = Counter()
        images: Counter[str] = Counter()
        records = []
        with click.progressbar(sample, label="lookups at the safe pace") as bar:
            for object_id in bar:
                outcome, response, _ = _get(session, f"{met.url}/objects/{object_id}")
                statuses[outcome.value] += 1
                if outcome is Outcome.OK:
                    records.append(response.json())
                time.sleep(1 / rate)
        for record in records:
            if not record["primaryImageSmall"]:
                images["no_image"] += 1
                continue
            outcome, response, _ = _get(session, record["primaryImageSmall"])
            pixels = None
            if outcome is Outcome.OK:
                pixels = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
            images[
                "ok"
                if pixels is not None
                else "bad_image"
                if outcome is Outcome.OK
                else outcome.value
            ] += 1
            time.sleep(1 / rate)
        counters = session.get(f"{met.base}/__emulator__/stats", timeout=5).json()
    summary = {"objects": dict(statuses), "images": dict(images), "emulator": counters}
    out = workdir / "smoke.json"
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=2))
    tmp.replace(out)
    click.echo(f"objects by status: {dict(statuses)}")
    click.echo(f"images by status:  {dict(images)}")
    click.echo(f"summary written to {out}")
