"""The one progress helper: a bar on a terminal, periodic log lines elsewhere.

``Progress`` counts on the client; ``report`` is its other end in a Dask task: it counts the
task's items as they finish and sends the counts to the client (a Dask event under a topic the
client subscribed to), at most once every ``REPORT_EVERY`` s, so progress moves per item, not
per task.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator

import click

log = logging.getLogger(__name__)


class Progress:
    """Count work done out of ``total``; use as a context manager.

    On a terminal it draws a click progress bar on stderr; otherwise (CI, logs to a file) it
    logs a line at most every ``every`` seconds and at the end.
    """

    def __init__(self, total: int, label: str, every: float = 10.0) -> None:
        self.total, self.label, self.every = total, label, every
        self.done = 0
        self._lock = threading.Lock()  # counts come from the client's event thread too
        self._bar = None
        self._last = 0.0
        self._start = time.monotonic()

    def __enter__(self) -> Progress:
        if sys.stderr.isatty():
            self._bar = click.progressbar(length=self.total, label=self.label, file=sys.stderr)
            self._bar.__enter__()
        return self

    def update(self, n: int = 1, note: str = "") -> None:
        with self._lock:
            self.done += n
            if self._bar is not None:
                self._bar.update(n)
            elif self.done < self.total and time.monotonic() - self._last >= self.every:  # the end logs at exit
                self._last = time.monotonic()
                log.info("%s: %d/%d %s", self.label, self.done, self.total, note)

    def next_line_in(self) -> float:
        """Seconds until ``update`` would log its next line (a caller waiting meanwhile can wake then)."""
        return max(0.0, self.every - (time.monotonic() - self._last))

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
        log.info("%s: %d/%d in %.1f s", self.label, self.done, self.total, time.monotonic() - self._start)


#: A task sends its count of finished items at most this often (s).
REPORT_EVERY = 1.0


@contextlib.contextmanager
def report(topic: str | None, every: float = REPORT_EVERY) -> Iterator[Callable[[int], None]]:
    """In a Dask task: yield ``finished(n)``, counting items as they end; the counts go to the
    client under ``topic`` as ``[task key, n]`` events (``jobs.tasks.run_tasks`` subscribes), at
    most every ``every`` s and once more at the end. Without a topic (or outside a worker) nothing
    is sent. Thread-safe."""
    if topic is None:
        yield lambda n: None
        return
    from distributed import get_worker

    try:
        worker = get_worker()
        key = worker.get_current_task()
    except ValueError:  # not in a task
        yield lambda n: None
        return
    lock = threading.Lock()
    state = {"unsent": 0, "last": time.monotonic()}

    def send() -> None:
        if state["unsent"]:
            worker.log_event(topic, [str(key), state["unsent"]])
            state["unsent"], state["last"] = 0, time.monotonic()

    def finished(n: int) -> None:
        with lock:
            state["unsent"] += n
            if time.monotonic() - state["last"] >= every:
                send()

    try:
        yield finished
    finally:
        with lock:
            send()
