"""`metdata serve` under load and under hostile clients: requests/s and latency, with and without
slow and idle connections held open, and the workers' memory before and after.

A 64 px seed-cnn run folder (untrained weights: the time does not depend on them) is served by
`metdata serve --workers W`; C client threads each POST the same 800x600 JPEG to /api/predict in
a loop for --seconds, at C = 1, 8 and 32, without and then with hostile connections held:
--heads trickle a request head a byte a second, --bodies send a head and a few bytes of a 100 kB
body, --idle connect and say nothing (each opened again as soon as the server cuts it); a
/healthz probe runs twice a second. The two are interleaved for --rounds rounds (the machine's
own load falls on both alike) and requests/s is the median. Prints requests/s and p50/p95/max
per case, the ratio of requests/s with hostile connections to without (the baseline measured in
the same run), the slowest /healthz, and the RSS of the workers before the first request and
after the last.

    python benchmarks/serve_abuse.py [--workers 1 2] [--seconds 5] [--heads 50 --bodies 10 --idle 50]
    python benchmarks/serve_abuse.py --source /tmp/old-tree   # another checkout's `metdata serve`
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import requests

sys.path.insert(0, str(Path(__file__).parent))
from serve_latency import make_run_in_child, painting_jpeg


class Hostile(threading.Thread):
    """One hostile connection (``head``, ``body`` or ``idle``), opened again whenever it is cut,
    while ``active`` is set; ``cuts`` counts the times the server closed it."""

    def __init__(self, address: tuple[str, int], kind: str, active: threading.Event, stop: threading.Event):
        super().__init__(daemon=True)
        self.address, self.kind, self.active, self.stop, self.cuts = address, kind, active, stop, 0

    def run(self) -> None:
        while not self.stop.is_set():
            if not self.active.wait(0.2):
                continue
            try:
                with socket.create_connection(self.address, timeout=5) as sock:
                    sock.settimeout(1.0)
                    self._hold(sock)
            except OSError:
                time.sleep(0.2)

    def _hold(self, sock: socket.socket) -> None:
        if self.kind == "body":
            sock.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n0123456789")
        trickle = iter(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100_000)
        while self.active.is_set() and not self.stop.is_set():
            if self.kind == "head":
                sock.sendall(bytes([next(trickle)]))
            try:
                sock.recv(4096)  # an answer (408) or the end: the server cut it
            except TimeoutError:
                continue
            self.cuts += 1
            return


def load(url: str, image: bytes, clients: int, seconds: float) -> tuple[float, np.ndarray, int]:
    """C closed-loop clients for ``seconds``: (requests/s, latencies in ms, failures)."""
    times: list[float] = []
    failures = [0]
    end = time.monotonic() + seconds

    def client() -> None:
        with requests.Session() as session:
            while time.monotonic() < end:
                t0 = time.perf_counter()
                try:
                    ok = session.post(f"{url}/api/predict", files={"file": ("p.jpg", image)}, timeout=30).ok
                except requests.RequestException:
                    ok = False
                if ok:
                    times.append(time.perf_counter() - t0)
                else:
                    failures[0] += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(times) / (time.monotonic() - started), np.array(times) * 1000, failures[0]


def probe(url: str, stop: threading.Event, worst: list[float]) -> None:
    while not stop.is_set():
        t0 = time.perf_counter()
        try:
            ok = requests.get(f"{url}/healthz", timeout=10).status_code == 200
        except requests.RequestException:
            ok = False
        worst[0] = max(worst[0], time.perf_counter() - t0 if ok else float("inf"))
        stop.wait(0.5)


def rss(server: subprocess.Popen) -> float:
    """MiB resident in the worker processes (the master excluded)."""
    return sum(p.memory_info().rss for p in psutil.Process(server.pid).children(recursive=True)) / 2**20


def bench(run: Path, workers: int, args, image: bytes) -> None:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    if args.source:
        env["PYTHONPATH"] = args.source
    server = subprocess.Popen(
        [sys.executable, "-m", "metdata", "serve", "--model", str(run), "--port", "0", "--workers", str(workers)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=args.source or None,
    )
    try:
        url = server.stdout.readline().split()[2].rstrip("/")
        while requests.get(f"{url}/readyz", timeout=10).status_code != 200:
            time.sleep(0.2)
        time.sleep(1 + workers)  # every worker ready, not only the one that answered
        before = rss(server)
        for _ in range(4 * workers):
            requests.post(f"{url}/api/predict", files={"file": ("p.jpg", image)}, timeout=60).raise_for_status()
        address = (url.removeprefix("http://").split(":")[0], int(url.rsplit(":", 1)[1]))
        active, stop = threading.Event(), threading.Event()
        kinds = ["head"] * args.heads + ["body"] * args.bodies + ["idle"] * args.idle
        hostile = [Hostile(address, kind, active, stop) for kind in kinds]
        for h in hostile:
            h.start()
        worst = {False: [0.0], True: [0.0]}
        try:
            for clients in args.clients:
                rates: dict[bool, list[float]] = {False: [], True: []}
                latencies: dict[bool, list[np.ndarray]] = {False: [], True: []}
                failures = {False: 0, True: 0}
                for _ in range(args.rounds):  # interleaved: the machine's load falls on both alike
                    for attack in (False, True):
                        if attack:
                            active.set()
                            time.sleep(2)  # every hostile connection open
                        probing = threading.Event()
                        prober = threading.Thread(target=probe, args=(url, probing, worst[attack]))
                        prober.start()
                        per_s, ms, failed = load(url, image, clients, args.seconds)
                        probing.set()
                        prober.join()
                        if attack:
                            active.clear()
                            time.sleep(1.5)  # every hostile connection closed before the next case
                        rates[attack].append(per_s)
                        latencies[attack].append(ms)
                        failures[attack] += failed
                for attack in (False, True):
                    ms = np.concatenate(latencies[attack])
                    per_s = float(np.median(rates[attack]))
                    label = f"{args.heads}/{args.bodies}/{args.idle} hostile" if attack else "no hostile"
                    ratio = f" ({per_s / np.median(rates[False]):.2f} of without)" if attack else ""
                    stats = (
                        f"p50 {np.percentile(ms, 50):.0f} ms p95 {np.percentile(ms, 95):.0f} ms max {ms.max():.0f} ms"
                        if len(ms)
                        else "no answer"
                    )
                    print(
                        f"workers {workers}, {label:>20}, {clients:2d} clients: {per_s:6.1f} req/s{ratio}; {stats}; "
                        f"{failures[attack]} failed",
                        flush=True,
                    )
        finally:
            stop.set()
            active.clear()
        cut = sum(h.cuts for h in hostile)
        print(
            f"workers {workers}: slowest /healthz {worst[False][0] * 1000:.0f} ms without, "
            f"{worst[True][0] * 1000:.0f} ms with the hostile connections (cut by the server {cut} times)",
            flush=True,
        )
        print(f"workers {workers}: worker RSS {before:.0f} MiB before, {rss(server):.0f} MiB after", flush=True)
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds with and without; medians")
    parser.add_argument("--heads", type=int, default=50)
    parser.add_argument("--bodies", type=int, default=10)
    parser.add_argument("--idle", type=int, default=50)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--source", default=None, help="a source tree whose `metdata serve` to measure instead")
    args = parser.parse_args()
    print(f"serve_abuse: {os.cpu_count()} cores; {args.seconds:g} s per case", flush=True)
    image = painting_jpeg()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        make_run_in_child(run, args.size)
        for workers in args.workers:
            bench(run, workers, args, image)


if __name__ == "__main__":
    main()
