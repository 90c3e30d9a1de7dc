"""Running a job's tasks on the cluster: the one budget, progress, failures, Ctrl-C.

Shared by every job that fans tasks out under the scheduler's pacer.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Iterator, Sequence

from distributed import Client, as_completed

from metdata.pacing import PLUGIN_NAME, PaceConfig, PacerPlugin, SchedulerPacer
from metdata.progress import Progress

log = logging.getLogger(__name__)


def install_pacer(client: Client, pace: PaceConfig) -> SchedulerPacer:
    """Put a fresh rate limiter on the scheduler for this run; return the tasks' handle to it."""
    with warnings.catch_warnings():  # a new run replaces the last run's pacer on purpose
        warnings.filterwarnings("ignore", message=".*already contains a plugin")
        client.register_plugin(PacerPlugin(pace), name=PLUGIN_NAME)
    return SchedulerPacer(pace)


def run_tasks(
    client: Client,
    fn: Callable,
    tasks: Sequence,
    *,
    label: str,
    size: Callable[[object], int],
    name: Callable[[object], str],
    failures: list[str],
    **kwargs,
) -> Iterator[dict]:
    """Run ``fn(task, **kwargs)`` for every task on the cluster; yield results as they finish.

    Progress counts ``size(task)`` units per finished task. A task that raised is recorded
    in ``failures`` (by ``name(task)``) and the rest go on. On Ctrl-C the remaining tasks are
    cancelled and KeyboardInterrupt propagates: finished work is kept.
    """
    keys = [f"{label}-{name(t)}-{time.time_ns()}".replace(" ", "-") for t in tasks]
    task_of = dict(zip(keys, tasks, strict=True))
    futures = client.map(fn, tasks, key=keys, retries=1, **kwargs)
    try:
        with Progress(sum(size(t) for t in tasks), label) as progress:
            for future in as_completed(futures):
                task = task_of[future.key]
                progress.update(size(task))
                if future.status == "error":
                    failures.append(f"{name(task)}: {future.exception()!r}")
                    continue
                yield future.result()
    except KeyboardInterrupt:
        client.cancel(futures)
        log.warning("interrupted: finished work is kept; rerun the same command to resume")
        raise


def report_unexpected(count: int, what: str) -> int:
    """Warn once about items that hit an unexpected error (a bug: each has a ``failed`` row and
    its traceback in the workers' log); return the count for the run summary."""
    if count:
        log.warning(
            "%d %s hit an unexpected error (their rows say failed; the tracebacks are in the workers' log): "
            "please report it",
            count,
            what,
        )
    return count


def save_summary(
    dataset, paths: tuple[str, ...], summary: dict, failures: list[str], failed: type[Exception], what: str
) -> None:
    """Write a run's summary to each path, then raise ``failed`` for failed ``what`` tasks (also naming a
    summary that could not be written), or ``DatasetError`` when only the summary failed.

    A full disk at the end of a run must not hide the run's own outcome.
    """
    from metdata.dataset import DatasetError

    unsaved = dataset.write_summary(paths, summary)
    if failures:
        raise failed(
            f"{len(failures)} {what} tasks failed (rerun the same command to redo them): "
            + "; ".join(failures[:5])
            + (f". Also, {unsaved}" if unsaved else "")
        )
    if unsaved:
        raise DatasetError(unsaved)
