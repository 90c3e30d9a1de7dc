"""Measuring tools shared by the benchmarks: the emulator in its own process, CPU and memory.

Run the benchmarks as ``python benchmarks/NAME.py``; they import this module from beside them.
"""

from __future__ import annotations

import contextlib
import resource
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil


@contextlib.contextmanager
def fake_met(*flags: str) -> Iterator[tuple[str, psutil.Process]]:
    """Run ``metdata fake-met FLAGS`` in a subprocess; yield its API base URL and process."""
    process = subprocess.Popen([sys.executable, "-m", "metdata", "fake-met", *flags], stdout=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError(f"fake-met did not start (first line: {url!r})")
        yield url, psutil.Process(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)


def process_cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def cpu_seconds() -> float:
    """User + system CPU of the calling process (run on each worker by ``client.run``)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_bytes() -> int:
    """The calling process's own RSS high-water mark since its ``exec`` (``VmHWM``).

    ``ru_maxrss`` would not do: Linux carries the pre-``exec`` maximum over, so a worker
    spawned by a large parent reports at least the parent's RSS at the fork.
    """
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # not Linux


class RssSampler:
    """Samples the RSS of some processes in a background thread, keeping each one's maximum."""

    def __init__(self, pids: dict[str, int], every: float) -> None:
        self.processes = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.peak = dict.fromkeys(pids, 0)
        self.samples = 0
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for name, process in self.processes.items():
                with contextlib.suppress(psutil.Error):  # a worker restarted mid-run
                    self.peak[name] = max(self.peak[name], process.memory_info().rss)
            self.samples += 1
            self._stop.wait(self.every)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def epoch_clock():
    """A Keras callback whose ``seconds`` lists each epoch's wall time (Keras imported on call)."""
    import time

    import keras

    class EpochClock(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.seconds.append(time.perf_counter())

        def on_epoch_end(self, epoch, logs=None):
            self.seconds[-1] = time.perf_counter() - self.seconds[-1]

    return EpochClock()
