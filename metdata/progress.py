"""The one progress helper: a bar on a terminal, periodic log lines elsewhere."""

from __future__ import annotations

import logging
import sys
import time

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
        self._bar = None
        self._last = 0.0
        self._start = time.monotonic()

    def __enter__(self) -> Progress:
        if sys.stderr.isatty():
            self._bar = click.progressbar(length=self.total, label=self.label, file=sys.stderr)
            self._bar.__enter__()
        return self

    def update(self, n: int = 1, note: str = "") -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.done < self.total and time.monotonic() - self._last >= self.every:  # the end logs at exit
            self._last = time.monotonic()
            log.info("%s: %d/%d %s", self.label, self.done, self.total, note)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
        log.info("%s: %d/%d in %.1f s", self.label, self.done, self.total, time.monotonic() - self._start)
