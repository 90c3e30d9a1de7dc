"""End to end: the README's main job at a small size, and the same pipeline under chaos."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow.dataset as pads
import pytest
import zarr
from click.testing import CliRunner
from workers import kill_a_worker_when

from metdata.acquire.listing import read_listing
from metdata.cli import main
from metdata.cli.demo import Pipeline, emulator_config, run_command
from metdata.emulator import MetEmulator
from metdata.emulator.faults import PERMANENT
from metdata.storage.dataset import Dataset

OBJECTS = 600  # about 60 paintings of the four cultures


@pytest.mark.parametrize("where", ["local", "s3"])
def test_demo_runs_end_to_end(tmp_path, where, request, monkeypatch):
    """ids --target → ingest → retry → images → retry → explore → train → evaluate → predict, as printed;
    with ``--data s3://...`` the same against moto's S3 (credentials and endpoint from the env)."""
    args = ["demo", "--workdir", str(tmp_path), "--objects", str(OBJECTS), "--size", "32", "--epochs", "3"]
    root = tmp_path / "data"
    dataset = Dataset(str(root))
    if where == "s3":
        url, storage = request.getfixturevalue("s3")
        for name, value in (("AWS_ENDPOINT_URL", storage["endpoint_url"]), ("AWS_ACCESS_KEY_ID", storage["key"])):
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", storage["secret"])
        args += ["--data", url]
        dataset = Dataset(url, storage)
    result = CliRunner().invoke(main, [*args, "--rate", "28"])
    assert result.exit_code == 0, result.output
    dataset.fs.invalidate_cache()
    table = pads.dataset(dataset.path("objects"), filesystem=dataset.fs, format="parquet").to_table()
    candidates = read_listing(dataset)  # the target's candidates, through the search: not every object
    assert sorted(table["objectID"].to_pylist()) == candidates and 0 < len(candidates) < OBJECTS / 2
    assert f"candidates:          {len(candidates)} of the collection's {OBJECTS} objects" in result.output
    assert (tmp_path / "report" / "report.html").stat().st_size > 10_000
    group = dataset.open_zarr("images.zarr")
    assert group["images"].shape[1:] == (32, 32, 3) and group["valid"][:].sum() > 30
    run = Dataset(f"{dataset.url}/runs/painting-culture", dataset.storage_options)
    trained, evaluation = run.read_json("run.json"), run.read_json("evaluation-val.json")
    assert trained["complete"] and trained["epochs_run"] == 3
    assert evaluation["images"] == trained["val_images"] > 0
    assert not root.exists() if where == "s3" else root.is_dir()  # nothing local but the report
    for line in ("objects by status", "images by status", "report (HTML)", f"model:               {run.url}"):
        assert line in result.output, line
    assert f"validation accuracy: {evaluation['accuracy']:.3f}" in result.output
    prediction = next(line for line in result.output.splitlines() if "prediction:" in line)
    assert "held out" in prediction and any(c in prediction.split(":")[-1] for c in trained["classes"])


def _acquired(root) -> dict:
    """What a run of the acquisition left: object statuses, image statuses and the store."""
    dataset = Dataset(str(root))
    objects = pads.dataset(dataset.path("objects"), format="parquet").to_table(columns=["objectID", "status"])
    images = pads.dataset(dataset.path("images"), format="parquet").to_table(
        columns=["objectID", "slot", "status", "sha256"]
    )
    group = zarr.open_group(dataset.path("images.zarr"), mode="r")
    return {
        "objects": sorted(zip(objects["objectID"].to_pylist(), objects["status"].to_pylist(), strict=True)),
        "images": sorted(images.to_pylist(), key=lambda r: r["slot"]),
        "object_id": group["object_id"][:],
        "valid": group["valid"][:],
        "pixels": group["images"][:],
    }


def _has_files(dataset: Dataset, folder: str):
    return lambda: len(dataset.data_files(folder)) >= 1


def _running(proc: subprocess.Popen):
    return lambda: proc.poll() is None


@pytest.mark.parametrize("fault_rate", [0.05])
def test_chaos_run_then_rerun_equals_a_clean_run(tmp_path, fault_rate):
    """Every fault kind plus a worker killed during ingest and one during images, then the same
    commands again: the dataset equals a clean run's (same emulated collection, only the permanent
    faults, which are properties of its objects), and training on it succeeds."""
    from distributed import Client, LocalCluster

    clean_root, chaos_root = tmp_path / "clean", tmp_path / "chaos"
    common = {"rate": 28.0, "size": 32, "epochs": 2, "chunk": 8, "search": False}  # the whole listing
    with MetEmulator(emulator_config(OBJECTS, ",".join(PERMANENT), fault_rate)) as met:
        clean = Pipeline(met.url, str(clean_root), tmp_path, **common)
        for args in clean.acquire():
            run_command(args)

    with (
        MetEmulator(emulator_config(OBJECTS, "all", fault_rate)) as met,
        LocalCluster(n_workers=2, threads_per_worker=2, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        chaos = Pipeline(met.url, str(chaos_root), tmp_path, cluster=cluster.scheduler_address, **common)
        dataset = Dataset(str(chaos_root))
        run_command(chaos.ids())
        for args, folder in ((chaos.ingest(), "objects"), (chaos.images(), "images")):
            command = [sys.executable, "-m", "metdata", *args]
            proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                kill_a_worker_when(client, _has_files(dataset, folder), still_running=_running(proc))
                assert proc.poll() is None, f"'metdata {args[0]}' ended before the kill"
                proc.wait(timeout=300)  # it may finish (Dask reruns the lost tasks) or fail: rerun below
            finally:
                proc.kill()
            client.wait_for_workers(2, timeout=60)  # the nanny restarted the killed worker
            run_command(args)
            run_command([*args, "--retry-failed"])
    a, b = _acquired(clean_root), _acquired(chaos_root)
    assert a["objects"] == b["objects"] and len(a["objects"]) == OBJECTS
    assert {"ok"} < {s for _, s in a["objects"]}  # the not-valid objects are error records
    assert a["images"] == b["images"]
    assert {"ok"} < {r["status"] for r in a["images"]}  # dead links, truncated and non-images
    for key in ("object_id", "valid", "pixels"):
        assert np.array_equal(a[key], b[key]), key
    assert b["pixels"].any()
    run_command(chaos.train())
    trained = json.loads((chaos_root / "runs" / "painting-culture" / "run.json").read_text())
    assert trained["complete"] and trained["epochs_run"] == 2
