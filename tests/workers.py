"""Stopping a job in the middle (a Dask worker, or the client process), for the tests that check
nothing is lost."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable


def wait_until(ready: Callable[[], bool], timeout: float = 90, still_running=lambda: True) -> None:
    """Poll ``ready()`` until it holds.

    Raises:
        AssertionError: it did not within ``timeout`` seconds, or the job ended first.
    """
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline and still_running(), "the job never reached the point of the kill"
        time.sleep(0.05)


def kill_a_worker_when(client, ready: Callable[[], bool], timeout: float = 90, still_running=lambda: True) -> int:
    """SIGKILL the busiest worker process of ``client``'s cluster once ``ready()`` holds; returns its pid.

    Raises:
        AssertionError: ``ready()`` did not hold within ``timeout`` seconds while the job ran.
    """
    pids = client.run(os.getpid)
    wait_until(ready, timeout, still_running)
    busy = client.processing()  # a worker with tasks at this moment, so that work is lost
    address = max(pids, key=lambda a: len(busy.get(a, ())))
    pid = pids[address]
    os.kill(pid, signal.SIGKILL)
    return pid
