"""One writer per root and stage: two runs at once, stale leases, shards that overlap, stores that
grow, and a store folder that is not metdata's own (never deleted). Real components only: the
emulator, subprocesses of the CLI, a LocalCluster, moto's S3 server."""

from __future__ import annotations

import collections
import datetime as dt
import json
import os
import socket
import subprocess
import sys
import threading
from urllib.parse import urlsplit

import numpy as np
import pyarrow.dataset as pads
import pytest
import zarr
from workers import wait_until

from metdata.acquire import ingest
from metdata.acquire.lookup import LookupOptions
from metdata.images.images import ImageOptions
from metdata.jobs import images as images_job
from metdata.jobs.ingest import IngestOptions
from metdata.jobs.ingest import plan as ingest_plan
from metdata.jobs.ingest import run as ingest_run
from metdata.net.pacing import PaceConfig
from metdata.storage import lock
from metdata.storage.dataset import Dataset, DatasetError
from metdata.storage.imagestore import StoreMismatch, prepare_store
from metdata.storage.layout import lock_file

FAST = PaceConfig(rate=300, cooldown=0.5)


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "metdata", *args]


def root_args(root: str, storage: dict | None) -> list[str]:
    return ["--data", root, "--storage-options", json.dumps(storage or {})]


def object_ids(dataset: Dataset) -> list[int]:
    path = dataset.path("objects")
    t = pads.dataset(path, filesystem=dataset.fs, format="parquet").to_table(columns=["objectID"])
    return t["objectID"].to_pylist()


def second_run_refuses_while_first_holds(first: list[str], second: list[str], dataset: Dataset, folder: str) -> str:
    """Start ``first``; once it holds its lease, run ``second``: it must refuse. Returns its message."""
    proc = subprocess.Popen(first, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: dataset.exists(lock_file(folder)), timeout=120, still_running=lambda: proc.poll() is None)
        refused = subprocess.run(second, capture_output=True, text=True, timeout=120)
        assert proc.poll() is None, "the first run ended before the second was tried: slow it down"
    finally:
        _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert refused.returncode == 1, refused.stderr[-2000:]
    assert not dataset.exists(lock_file(folder))  # released at the end
    return refused.stderr


@pytest.mark.parametrize("where", ["local", "s3"])
def test_two_ingests_at_once_with_other_shard_sizes(start_met, tmp_path, where, request):
    met = start_met(objects=80, seed=11)
    root, storage = (str(tmp_path), None) if where == "local" else request.getfixturevalue("s3")
    dataset = Dataset(root, storage or {})
    common = ["--api", met.url, *root_args(root, storage), "--workers", "1", "--timeout", "5"]
    message = second_run_refuses_while_first_holds(
        cli("ingest", *common, "--rate", "8", "--shard-size", "30"),  # ~10 s: slow on purpose
        cli("ingest", *common, "--rate", "80", "--shard-size", "70"),
        dataset,
        "objects",
    )
    assert "another 'metdata ingest' is writing" in message
    assert "pid " in message and "since 20" in message and "_locks/objects.json" in message
    # the refused one, rerun alone with its other shard size, adds nothing and duplicates nothing
    again = subprocess.run(cli("ingest", *common, "--rate", "80", "--shard-size", "70"), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(again.stdout)["this_run"]["requests"] == 0
    ids = object_ids(dataset)
    assert len(ids) == len(set(ids)) == 80


@pytest.mark.parametrize("where", ["local", "s3"])
def test_two_image_runs_at_once_on_one_store(start_met, dask_client, tmp_path, where, request):
    met = start_met(objects=60, seed=12)
    root, storage = (str(tmp_path), None) if where == "local" else request.getfixturevalue("s3")
    dataset = Dataset(root, storage or {})
    lookup = LookupOptions(api=met.url, timeout=2.0, backoff=0.05)
    ingest_run(dask_client, dataset, IngestOptions(lookup=lookup, pace=FAST, shard_size=50))
    common = ["--api", met.url, *root_args(root, storage), "--workers", "1", "--size", "16", "--chunk", "8"]
    message = second_run_refuses_while_first_holds(
        cli("images", *common, "--rate", "4"),  # slow on purpose
        cli("images", *common, "--rate", "80"),
        dataset,
        "images.zarr",
    )
    assert "another 'metdata images' is writing" in message and "_locks/images.zarr.json" in message
    shards = pads.dataset(dataset.path("images"), filesystem=dataset.fs, format="parquet").to_table()
    ids = shards["objectID"].to_pylist()
    group = zarr.open_group(dataset.zarr_store("images.zarr"), mode="r")
    assert len(ids) == len(set(ids)) == group["object_id"].shape[0] > 0
    assert sorted(group["object_id"][:].tolist()) == sorted(ids)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def plant(dataset: Dataset, host: str, pid: int, age_s: float) -> None:
    beat = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=age_s)).isoformat()
    holder = lock.Holder("metdata ingest", host, pid, "planted", beat, beat)
    dataset.write_bytes(lock_file("objects"), holder.encode())


@pytest.mark.parametrize("where", ["local", "s3"])
def test_stale_leases_are_taken_over_and_live_ones_refused(tmp_path, where, request):
    root, storage = (str(tmp_path), None) if where == "local" else request.getfixturevalue("s3")
    dataset = Dataset(root, storage or {})
    relative = lock_file("objects")

    def holder() -> lock.Holder:
        return lock.Holder.parse(dataset.read_bytes(relative))

    plant(dataset, socket.gethostname(), dead_pid(), 0)  # gone, on this host: taken at once
    with lock.hold(dataset, relative, "metdata ingest"):
        assert holder().pid == os.getpid() and holder().token != "planted"
    assert not dataset.exists(relative)

    plant(dataset, "elsewhere", 4242, 10)  # another host, beating: refused, naming it
    with (
        pytest.raises(lock.LockHeld, match=r"host elsewhere, pid 4242, since .*delete .*_locks/objects\.json"),
        lock.hold(dataset, relative, "metdata ingest"),
    ):
        pass
    assert holder().token == "planted"

    plant(dataset, "elsewhere", 4242, 1000)  # another host, silent for long: two takers, one wins
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def take() -> None:
        barrier.wait()
        try:
            with lock.hold(dataset, relative, "metdata ingest", heartbeat=0.1):
                outcomes.append("won")
                wait_until(lambda: len(outcomes) == 2, timeout=30)
        except lock.LockHeld:
            outcomes.append("refused")

    threads = [threading.Thread(target=take) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) == ["refused", "won"]
    assert not dataset.exists(relative)


def test_lease_is_released_on_errors_and_a_lost_lease_is_reported(tmp_path):
    dataset = Dataset(str(tmp_path))
    relative = lock_file("objects")
    with pytest.raises(KeyboardInterrupt), lock.hold(dataset, relative, "metdata ingest"):
        raise KeyboardInterrupt
    assert not dataset.exists(relative)
    with (
        pytest.raises(lock.LockLost, match="taken over during this run"),
        lock.hold(dataset, relative, "metdata ingest", heartbeat=0.05) as lease,
    ):
        plant(dataset, "elsewhere", 1, 0)  # as if another run had taken it over
        wait_until(lambda: lease.lost, timeout=30)
    assert lock.Holder.parse(dataset.read_bytes(relative)).host == "elsewhere"  # not ours: left alone


def lookup(met) -> LookupOptions:
    return LookupOptions(api=met.url, timeout=2.0, backoff=0.05)


def test_overlapping_shards_keep_one_row_per_id(start_met, dask_client, tmp_path):
    met = start_met(objects=120, seed=13)
    dataset = Dataset(str(tmp_path))
    ingest_run(dask_client, dataset, IngestOptions(lookup=lookup(met), pace=FAST, shard_size=50))
    # what two runs at once used to leave: a second shard over ids another shard has
    shards = len(dataset.data_files("objects"))
    first = dataset.data_files("objects")[0]
    copy = dataset.read_table(first).slice(5, 10)
    dataset.write_table(ingest.shard_name(copy["objectID"][0].as_py()), copy)
    assert len(object_ids(dataset)) == 130
    options = ImageOptions(lookup=LookupOptions(api=met.url), size=16, chunk=8)
    with pytest.raises(DatasetError, match=r"\d+ objects have rows in two shards.*run 'metdata ingest'"):
        images_job.plan(dataset, options)
    assert not dataset.exists("images.zarr/zarr.json")
    planned = ingest_plan(dataset, IngestOptions(lookup=lookup(met), pace=FAST, shard_size=7))
    assert planned.tasks == []
    ids = object_ids(dataset)
    assert len(ids) == len(set(ids)) == 120
    assert len(dataset.data_files("objects")) == shards  # the copy lost every row: it is gone


def test_store_grows_by_new_objects_and_keeps_its_slots(start_met, dask_client, tmp_path):
    met = start_met(objects=150, seed=14)
    dataset = Dataset(str(tmp_path))
    options = IngestOptions(lookup=lookup(met), pace=FAST, shard_size=50)
    ingest_run(dask_client, dataset, options)
    all_ids = sorted(object_ids(dataset))
    held_back = set(all_ids[3::6])  # as if looked up later (--retry-failed, --since)
    for name in dataset.data_files("objects"):
        ingest.drop_rows(dataset, name, held_back)
    image = ImageOptions(
        lookup=lookup(met),
        size=16,
        chunk=16,
        allowed_hosts=frozenset({"images.metmuseum.org", urlsplit(met.url).netloc}),
    )
    images_job.run(dask_client, dataset, image, FAST, images_job.plan(dataset, image))
    group = zarr.open_group(dataset.zarr_store("images.zarr"), mode="r")
    before_ids = group["object_id"][:].tolist()
    before_pixels = group["images"][:]
    n_before = len(before_ids)
    assert n_before % 16 != 0, "the last chunk should be partial, to test growing into it"
    chunks = tmp_path / "images.zarr" / "images" / "c"
    chunk_files = {p: os.path.getmtime(p) for p in chunks.rglob("*") if p.is_file()}

    ingest_run(dask_client, dataset, options)  # the held-back ids are looked up now
    planned = images_job.plan(dataset, image)
    last = n_before // 16
    assert planned.tasks[0].index == last  # the partial chunk: only its new slots
    n_after = zarr.open_group(dataset.zarr_store("images.zarr"), mode="r")["object_id"].shape[0]
    assert planned.tasks[0].redo == tuple(range(n_before % 16, min(16, n_after - last * 16)))
    summary = images_job.run(dask_client, dataset, image, FAST, planned)
    group = zarr.open_group(dataset.zarr_store("images.zarr"), mode="r")
    after_ids = group["object_id"][:].tolist()
    grown = after_ids[n_before:]
    assert after_ids[:n_before] == before_ids and set(grown) <= held_back and grown == sorted(grown)
    assert np.array_equal(group["images"][:n_before], before_pixels)
    for path, mtime in chunk_files.items():  # existing chunks untouched, but the partial last one
        if path.relative_to(chunks).parts[0] != str(last):
            assert os.path.getmtime(path) == mtime, path
    status = pads.dataset(dataset.path("images"), filesystem=dataset.fs, format="parquet").to_table().to_pylist()
    assert sorted(r["objectID"] for r in status) == sorted(after_ids)
    assert all(r["slot"] == after_ids.index(r["objectID"]) for r in status)
    assert summary["this_run"]["images"] == len(grown) > 0
    valid = group["valid"][:]
    assert valid[n_before:].sum() == sum(r["status"] == "ok" for r in status if r["objectID"] in set(grown))

    # a selection that lost objects the store has: refused with the ways out, nothing changed
    for name in dataset.data_files("objects"):
        ingest.drop_rows(dataset, name, {before_ids[0]})
    with pytest.raises(StoreMismatch, match=r"holds 1 objects that this selection no longer has.*--store NEW.zarr"):
        images_job.plan(dataset, image)
    assert zarr.open_group(dataset.zarr_store("images.zarr"), mode="r")["object_id"][:].tolist() == after_ids


def test_prepare_store_never_deletes_what_it_does_not_own(tmp_path):
    dataset = Dataset(str(tmp_path))
    (tmp_path / "objects").mkdir()
    (tmp_path / "objects" / "part-0000001.parquet").write_bytes(b"metadata")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "notes.txt").write_text("mine")
    (tmp_path / "other.zarr").mkdir()
    (tmp_path / "other.zarr" / "data.bin").write_bytes(b"x")
    zarr.open_group(dataset.zarr_store("foreign.zarr"), mode="w").create_array("a", shape=(2,), dtype="int8")
    victim = tmp_path.parent / f"{tmp_path.name}-victim.zarr"
    victim.mkdir()
    (victim / "keep").write_text("keep")
    cases = {
        "objects.zarr": (DatasetError, "objects/"),
        ".zarr": (DatasetError, "not a plain folder name"),
        f"../{victim.name}": (DatasetError, "not a plain folder name"),
        "photos.zarr": (StoreMismatch, r"photos/ is the status folder .*notes.txt"),
        "other.zarr": (StoreMismatch, "exists and is not a Zarr store"),
        "foreign.zarr": (StoreMismatch, "metdata did not make"),
    }
    snapshot = sorted(p.relative_to(tmp_path.parent) for p in tmp_path.parent.rglob("*"))
    for store, (error, message) in cases.items():
        with pytest.raises(error, match=message):
            prepare_store(dataset, ImageOptions(store=store, size=8, chunk=4), [1, 2, 3], {})
    assert sorted(p.relative_to(tmp_path.parent) for p in tmp_path.parent.rglob("*")) == snapshot
    # a store metdata started and did not finish, with only status shards: made again
    half = ImageOptions(store="half.zarr", size=8, chunk=4)
    zarr.open_group(dataset.zarr_store("half.zarr"), mode="w", attributes={"metdata": "images"})
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "part-000000.parquet").write_bytes(b"old status")
    assert prepare_store(dataset, half, [1, 2, 3], {}) == [1, 2, 3]
    assert not (tmp_path / "half").exists()
    assert zarr.open_group(dataset.zarr_store("half.zarr"), mode="r").attrs["complete"] is True
    assert collections.Counter(p.name for p in victim.iterdir()) == {"keep": 1}
