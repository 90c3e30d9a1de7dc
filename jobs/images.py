"""The images job: plan, submit one task per chunk on Dask, progress, summary.

Wiring only: the plan and the summary are ``metdata.images.plan``'s (selection, the store made
or grown through ``metdata.storage.imagestore``), each chunk's work is ``metdata.images.images``,
the image host's budget is the scheduler's pacer. The store's lease is held around each call
that writes (re-entrant, so the CLI holds it from the plan to the summary with ``writing``).
"""

from __future__ import annotations

import logging
import time

from distributed import Client

from metdata.errors import UserError
from metdata.images import images
from metdata.images import plan as planning
from metdata.images.plan import Plan, check_pace
from metdata.jobs.tasks import install_pacer, report_unexpected, run_tasks, save_summary
from metdata.net.pacing import PaceConfig
from metdata.storage import layout, lock
from metdata.storage.dataset import Dataset

log = logging.getLogger(__name__)

__all__ = ["ChunksFailed", "Plan", "check_pace", "plan", "run", "writing"]


class ChunksFailed(UserError):
    """Some chunk tasks raised; their chunks stay undone until a rerun."""


def writing(dataset: Dataset, options: images.ImageOptions):
    """Hold the lease of the store ``options.store`` for a block (around ``plan`` and ``run``).

    Raises:
        LockHeld: another images run writes this store (the message names it).
    """
    return lock.hold(dataset, layout.lock_file(options.store), "metdata images")


def plan(
    dataset: Dataset,
    options: images.ImageOptions,
    target: str | None = None,
    where: str | None = None,
    retry_failed: bool = False,
    from_originals: str | None = None,
) -> Plan:
    """The run's plan (``metdata.images.plan.plan``), under the store's lease.

    Raises:
        DatasetError, SelectionError, StoreMismatch: bad root, selection or store; nothing changed.
        LockHeld: another images run writes this store.
    """
    with writing(dataset, options):
        planned = planning.plan(dataset, options, target, where, retry_failed, from_originals)
    log.info("%d objects selected; %d chunk tasks to run", planned.selected, len(planned.tasks))
    return planned


def run(client: Client | None, dataset: Dataset, options: images.ImageOptions, pace: PaceConfig, planned: Plan) -> dict:
    """Run the planned chunk tasks within the image host's budget; write and return a summary.

    Raises:
        ChunksFailed: some chunk tasks raised; a rerun does exactly those.
    """
    with writing(dataset, options):
        started = time.monotonic()
        tally = planning.Tally()
        failures: list[str] = []
        if planned.tasks:
            check_pace(planned, options, pace)
            for result in run_tasks(
                client,
                images.run_chunk,
                planned.tasks,
                label="images",
                size=lambda t: len(t.redo or t.object_ids) if t.tries is None else 0,  # a follow-up's are counted
                name=lambda t: f"chunk {t.index}" if t.tries is None else f"chunk {t.index} follow-up",
                failures=failures,
                follow_up=images.follow_up,
                finished=lambda result: sum(result["statuses"].values()),
                dataset=dataset,
                options=options,
                pacer=install_pacer(client, pace),
            ):
                tally.add(result)
        unexpected = report_unexpected(tally.bugs, "images")
        duration = time.monotonic() - started
        summary = planning.summary(dataset, options, pace, planned, tally, duration, failures, unexpected)
        save_summary(dataset, (layout.store_summary(options.store),), summary, failures, ChunksFailed, "chunk")
        return summary
