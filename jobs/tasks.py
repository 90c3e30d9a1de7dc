"""Running a job's tasks on the cluster: the one budget, progress, failures, Ctrl-C.

Shared by every job that fans tasks out under the scheduler's pacer.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence

from distributed import Client, as_completed

from metdata.core.progress import Progress
from metdata.net.pacing import PLUGIN_NAME, PaceConfig, PacerPlugin, SchedulerPacer

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
    follow_up: Callable[[object, dict], tuple[float, object] | None] | None = None,
    finished: Callable[[dict], int] | None = None,
    **kwargs,
) -> Iterator[dict]:
    """Run ``fn(task, **kwargs)`` for every task on the cluster; yield results as they finish.

    Progress counts ``size(task)`` units per finished task. A task that raised is recorded
    in ``failures`` (by ``name(task)``) and the rest go on. On Ctrl-C the remaining tasks are
    cancelled and KeyboardInterrupt propagates: finished work is kept.

    With ``follow_up(task, result)`` -> ``(delay s, next task)`` or None, a task's leftover work
    runs as another task, submitted when its delay has passed (no thread waits for it meanwhile).
    With ``finished(result)`` (the units a result finished), ``fn`` also gets ``progress_topic``
    and counts its units as they end (``progress.report``): progress moves per item, and a
    follow-up's units are counted when they end, not twice.
    """
    topic = f"metdata-progress-{label}-{time.time_ns()}" if finished is not None else None
    extra = {"progress_topic": topic} if topic else {}
    task_of: dict[str, object] = {}
    reported: dict[str, int] = {}  # units already counted per task key, from its events
    closed: set[str] = set()
    lock = threading.Lock()
    later: list[tuple[float, int, object]] = []  # (when, order, task): follow-ups not yet due
    running = as_completed(loop=client.loop)
    counter = itertools.count()

    follow_ups: set[str] = set()  # keys of follow-up tasks submitted and not yet ended

    def submit(batch: list, following: bool = False) -> None:
        keys = [f"{label}-{name(t)}-{time.time_ns()}-{next(counter)}".replace(" ", "-") for t in batch]
        task_of.update(zip(keys, batch, strict=True))
        if following:
            follow_ups.update(keys)
        running.update(client.map(fn, batch, key=keys, retries=1, **kwargs, **extra))

    with Progress(sum(size(t) for t in tasks), label) as progress:

        def on_event(event: tuple) -> None:
            key, n = event[1]
            with lock:
                if key in closed or key not in task_of:
                    return
                reported[key] = reported.get(key, 0) + n
            progress.update(n)

        def settle(key: str, units: int) -> None:
            with lock:
                closed.add(key)
                units -= reported.pop(key, 0)
            progress.update(max(0, units))

        if topic:
            client.subscribe_topic(topic, on_event)
        try:
            submit(list(tasks))
            while not running.is_empty() or later:
                now = time.monotonic()
                due = []
                while later and later[0][0] <= now:
                    due.append(heapq.heappop(later)[2])
                if due:
                    submit(due, following=True)
                progress.update(0, f"({running.count()} tasks to finish, {len(later)} follow-ups waiting)")
                if not running.has_ready():  # as_completed itself looks every 0.1 s: so does this loop
                    time.sleep(max(0.01, min(0.1, progress.next_line_in(), later[0][0] - now if later else 0.1)))
                    continue
                for future in running.next_batch(block=False):
                    task = task_of[future.key]
                    follow_ups.discard(future.key)
                    if future.status == "error":
                        settle(future.key, size(task))
                        failures.append(f"{name(task)}: {future.exception()!r}")
                        continue
                    result = future.result()
                    settle(future.key, finished(result) if finished is not None else size(task))
                    nxt = follow_up(task, result) if follow_up is not None else None
                    if nxt is not None:
                        heapq.heappush(later, (time.monotonic() + nxt[0], next(counter), nxt[1]))
                    yield result
        except KeyboardInterrupt:
            client.cancel(list(running.futures))
            log.warning("interrupted: finished work is kept; rerun the same command to resume")
            if later or follow_ups:
                log.warning(
                    "%d follow-up tasks had not finished: their items stay transient; add --retry-failed to retry them",
                    len(later) + len(follow_ups),
                )
            raise
        finally:
            if topic:
                client.unsubscribe_topic(topic)


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
    from metdata.storage.dataset import DatasetError

    unsaved = dataset.write_summary(paths, summary)
    if failures:
        raise failed(
            f"{len(failures)} {what} tasks failed (rerun the same command to redo them): "
            + "; ".join(failures[:5])
            + (f". Also, {unsaved}" if unsaved else "")
        )
    if unsaved:
        raise DatasetError(unsaved)
