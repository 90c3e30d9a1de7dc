"""Measuring tools shared by the benchmarks: the emulator in its own process, CPU and memory.

Run the benchmarks as ``python benchmarks/NAME.py``; they import this module from beside them.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil


@contextlib.contextmanager
def fake_met(*flags: str, code: Path | None = None) -> Iterator[tuple[str, psutil.Process]]:
    """Run ``metdata fake-met FLAGS`` in a subprocess; yield its API base URL and process.

    ``code``: the source tree to run the emulator from (default: the one this process imports),
    so a benchmark of old client code can still use the current emulator.
    """
    env = None if code is None else {**os.environ, "PYTHONPATH": str(code)}
    process = subprocess.Popen(
        [sys.executable, "-m", "metdata", "fake-met", *flags], stdout=subprocess.PIPE, text=True, env=env, cwd=code
    )
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


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for emulators that must share one address in turn)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def total_cpu(processes: list[psutil.Process]) -> float:
    """User + system CPU seconds so far of ``processes`` (read from outside: no RPC to them)."""
    return sum(process_cpu(p) for p in processes)


class StatsSampler:
    """Polls an emulator's counters (``GET BASE/__emulator__/stats``, unthrottled and uncounted)
    every ``every`` s in a background thread, keeping each change of one host's counters; a
    context manager. Counts are relative to the first poll, so requests made before (a listing,
    a warm-up) do not count. ``cpu`` is the polling thread's own CPU, to subtract from this
    process's."""

    def __init__(self, base: str, host: str = "api", every: float = 0.05) -> None:
        import requests

        self.url, self.host, self.every = f"{base}/__emulator__/stats", host, every
        self.samples: list[tuple[float, dict[str, int]]] = []
        self.cpu = 0.0
        self._session = requests.Session()
        self._start: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="stats-sampler", daemon=True)

    def read(self) -> dict[str, int]:
        counts = self._session.get(self.url, timeout=30).json().get(self.host, {})
        return {k: v - self._start.get(k, 0) for k, v in counts.items()}

    def _loop(self) -> None:
        started = time.thread_time()
        last = None
        while not self._stop.is_set():
            now, counts = time.monotonic(), self.read()
            if counts != last:
                self.samples.append((now, counts))
                last = counts
            self._stop.wait(self.every)
        self.cpu = time.thread_time() - started

    def __enter__(self) -> StatsSampler:
        self._start = self.read()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.monotonic(), self.read()))
        self._session.close()

    def count(self, name: str = "requests") -> int:
        """The counter's final value."""
        return self.samples[-1][1].get(name, 0) if self.samples else 0

    def pace(self, name: str = "requests", share: float = 1.0) -> tuple[float, float, int]:
        """(per second, span s, count) from the first counted request until ``share`` of the final
        count was reached: (count - 1) / span, the pace of the active window."""
        final = self.count(name)
        points = [(t, c.get(name, 0)) for t, c in self.samples if c.get(name, 0)]
        if final < 2 or not points:
            return float("nan"), 0.0, final
        target = max(2, math.ceil(share * final))
        first = points[0][0]
        end, count = next((t, n) for t, n in points if n >= target)
        span = end - first
        return ((count - 1) / span if span > 0 else float("nan")), span, count
