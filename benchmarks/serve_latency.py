"""Latency of one prediction through `metdata serve`'s API, and the server's memory per worker.

A 150 px seed-cnn run folder (weights as initialised: the time does not depend on them) is
served by `metdata serve` (gunicorn, CPU); a local client POSTs the same 800x600 JPEG to
/api/predict N times, one request at a time, after a few warm-up requests. Prints p50/p95/max
of the request time (upload, decode + resize, the model, JSON back) and the resident memory of
each gunicorn worker process (one model each) and of the master.

    python benchmarks/serve_latency.py [--requests 200] [--workers 1] [--size 150]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import requests


def make_run(folder: Path, size: int) -> None:
    """A run folder `metdata serve` accepts: best.keras and run.json of an untrained seed-cnn."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from metdata.train.models import ModelOptions, build_model

    classes = ["America", "China", "India", "Japan"]
    model = build_model("seed-cnn", ModelOptions(size, len(classes)))
    folder.mkdir(parents=True)
    model.save(folder / "best.keras")
    meta = {"target": "painting-culture", "model": "seed-cnn", "classes": classes, "size": size, "resize": "squash"}
    (folder / "run.json").write_text(json.dumps(meta))


def painting_jpeg() -> bytes:
    import cv2

    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (12, 16, 3), np.uint8)
    ok, data = cv2.imencode(".jpg", cv2.resize(small, (800, 600), interpolation=cv2.INTER_CUBIC))
    assert ok
    return data.tobytes()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--size", type=int, default=150)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        make_run_in_child(run, args.size)
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "metdata",
                "serve",
                "--model",
                str(run),
                "--port",
                "0",
                "--workers",
                str(args.workers),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""},
        )
        try:
            url = server.stdout.readline().split()[2].rstrip("/")
            started = time.monotonic()
            while requests.get(f"{url}/readyz", timeout=10).status_code != 200:
                time.sleep(0.2)
            ready_s = time.monotonic() - started
            image = painting_jpeg()
            with requests.Session() as session:
                for _ in range(5):  # warm-up: every worker's first requests
                    session.post(f"{url}/api/predict", files={"file": ("p.jpg", image)}, timeout=60).raise_for_status()
                times = []
                for _ in range(args.requests):
                    t0 = time.perf_counter()
                    answer = session.post(f"{url}/api/predict", files={"file": ("p.jpg", image)}, timeout=60)
                    times.append(time.perf_counter() - t0)
                    answer.raise_for_status()
            master = psutil.Process(server.pid)
            workers = master.children()
            ms = np.array(times) * 1000
            print(f"serve: {args.size} px seed-cnn, {args.workers} worker(s), CPU; ready after {ready_s:.1f} s")
            print(
                f"POST /api/predict x{args.requests} (800x600 JPEG, {len(image):,} bytes): "
                f"p50 {np.percentile(ms, 50):.1f} ms, p95 {np.percentile(ms, 95):.1f} ms, max {ms.max():.1f} ms"
            )
            for w in workers:
                print(f"worker pid {w.pid}: RSS {w.memory_info().rss / 2**20:.0f} MiB")
            print(f"master pid {master.pid}: RSS {master.memory_info().rss / 2**20:.0f} MiB")
        finally:
            server.terminate()
            server.wait(30)


def make_run_in_child(run: Path, size: int) -> None:
    """Build the run folder in a child process, so this client never loads TensorFlow."""
    code = "import sys; sys.path.insert(0, sys.argv[3]); from serve_latency import make_run; from pathlib import Path; "
    code += "make_run(Path(sys.argv[1]), int(sys.argv[2]))"
    subprocess.run(
        [sys.executable, "-c", code, str(run), str(size), str(Path(__file__).parent)],
        check=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""},
    )


if __name__ == "__main__":
    main()
