"""The images stage against real components: emulator, LocalCluster, moto S3, real photos."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from urllib.parse import urlsplit

import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pytest
import zarr
from conftest import stats
from workers import kill_a_worker_when, wait_until

from metdata.acquire.lookup import LookupOptions
from metdata.core.statuses import Status
from metdata.core.targets import TargetError
from metdata.images.images import ImageOptions
from metdata.images.selection import SelectionError
from metdata.jobs import images as job
from metdata.jobs.ingest import IngestOptions
from metdata.jobs.ingest import run as ingest
from metdata.net.pacing import PaceConfig
from metdata.storage.dataset import Dataset
from metdata.storage.imagestore import StoreMismatch

FAST = PaceConfig(rate=300, cooldown=0.5)


def image_options(met, max_attempts: int = 6, max_in_flight: int = 0, **overrides) -> ImageOptions:
    requests = LookupOptions(
        api=met.url, timeout=2.0, backoff=0.05, max_attempts=max_attempts, max_in_flight=max_in_flight
    )
    fields = {
        "size": 32,
        "chunk": 16,
        "allowed_hosts": frozenset({"images.metmuseum.org", urlsplit(met.url).netloc}),
        **overrides,
    }
    return ImageOptions(lookup=requests, **fields)


def ingested(met, client, root, **overrides) -> Dataset:
    dataset = Dataset(str(root))
    # an emulator in the test process: a few requests in flight per task, not rate x timeout's hundreds
    lookup = LookupOptions(api=met.url, timeout=2.0, backoff=0.05, max_in_flight=8)
    ingest(client, dataset, IngestOptions(lookup=lookup, pace=FAST, shard_size=100, **overrides))
    return dataset


def point_images_at(dataset: Dataset, old_base: str, new_base: str) -> None:
    """Rewrite the image URLs of ingested rows, to fetch them from another emulator."""
    for path in dataset.data_files("objects"):
        t = dataset.read_table(path)
        i = t.schema.get_field_index("primaryImageSmall")
        dataset.write_table(
            path,
            t.set_column(
                i,
                "primaryImageSmall",
                pc.replace_substring(t["primaryImageSmall"], old_base, new_base),
            ),
        )


def build(client, dataset, options, **plan_args) -> dict:
    return job.run(client, dataset, options, FAST, job.plan(dataset, options, **plan_args))


def statuses(dataset, folder="images") -> dict[int, dict]:
    t = pads.dataset(dataset.path(folder), filesystem=dataset.fs, format="parquet").to_table()
    return {r["objectID"]: r for r in t.to_pylist()}


def test_images_land_in_zarr_with_a_status_per_slot(start_met, dask_client, tmp_path):
    met = start_met(objects=250, seed=1)
    dataset = ingested(met, dask_client, tmp_path)
    summary = build(dask_client, dataset, image_options(met))
    group = zarr.open_group(str(tmp_path / "images.zarr"), mode="r")
    ids = group["object_id"][:]
    n = len(ids)
    assert n == summary["selected"] > 40 and list(ids) == sorted(ids)
    assert group["images"].shape == (n, 32, 32, 3) and group["images"].dtype == np.uint8
    assert group["images"].chunks == (16, 32, 32, 3)
    expected = {
        "size": 32,
        "resize": "squash",
        "color_order": "RGB",
        "rendition": "web-large",
        "complete": True,
    }
    assert expected.items() <= dict(group.attrs).items()
    rows = statuses(dataset)
    assert sorted(rows) == sorted(ids.tolist())
    valid = group["valid"][:]
    pixels = group["images"][:]
    for slot, object_id in enumerate(ids):
        row = rows[int(object_id)]
        assert row["slot"] == slot and (row["status"] == Status.OK) == valid[slot]
        if valid[slot]:
            assert pixels[slot].std() > 0 and 500 <= max(row["width"], row["height"]) <= 800
            assert row["sha256"] == hashlib.sha256(met.catalog.image(urlsplit(row["url"]).path).body).hexdigest()
        else:
            assert not pixels[slot].any()
    assert summary["slots_by_status"] == {Status.OK: n}


def test_every_image_fault_lands_as_its_status(start_met, dask_client, tmp_path):
    met = start_met(
        objects=300,
        seed=2,
        fault_rate=0.12,
        slow_seconds=3,
        faults=frozenset({"image-404", "truncate", "not-image", "503", "drop", "slow"}),
    )
    clean_met = start_met(objects=300, seed=2)
    dataset = ingested(clean_met, dask_client, tmp_path)  # metadata from a clean run, URLs rewritten
    options = image_options(met)
    point_images_at(dataset, clean_met.base, met.base)
    build(dask_client, dataset, options)
    seen = set()
    for row in statuses(dataset).values():
        path = urlsplit(row["url"]).path
        if met.faults.permanent("image-404", path):
            expected = {Status.NOT_FOUND}
        elif met.faults.permanent("truncate", path) or met.faults.permanent("not-image", path):
            expected = {Status.BAD_IMAGE}
        else:
            expected = {Status.OK, Status.TRANSIENT}  # transient only if every attempt met a fault
        assert row["status"] in expected, row
        assert (row["status"] == Status.OK) == (row["error"] is None)
        seen.add(row["status"])
    assert {Status.OK, Status.NOT_FOUND, Status.BAD_IMAGE} <= seen
    counters = stats(met)["images"]
    assert counters.get("fault_503", 0) and counters.get("fault_drop", 0) and counters.get("fault_slow", 0)


def test_target_where_and_bad_selections(start_met, dask_client, tmp_path):
    met = start_met(objects=400, seed=3)
    dataset = ingested(met, dask_client, tmp_path)
    plan = job.plan(dataset, image_options(met), target="painting-culture")
    assert 0 < plan.selected < job.plan(dataset, image_options(met, store="all.zarr")).selected
    with pytest.raises(SelectionError, match="malformed --where"):
        job.plan(dataset, image_options(met, store="w.zarr"), where="department = = 'x'")
    with pytest.raises(SelectionError, match="is empty"):
        job.plan(dataset, image_options(met, store="w.zarr"), where="objectBeginDate > 99999")
    with pytest.raises(TargetError, match="unknown target"):
        job.plan(dataset, image_options(met, store="w.zarr"), target="nope")
    before = (tmp_path / "images.zarr" / "zarr.json").read_bytes()
    with pytest.raises(StoreMismatch, match="was made with"):
        job.plan(dataset, image_options(met, size=48), target="painting-culture")
    with pytest.raises(StoreMismatch, match="another selection"):
        job.plan(dataset, image_options(met))
    assert (tmp_path / "images.zarr" / "zarr.json").read_bytes() == before


def test_rerun_skips_done_chunks_and_retry_failed_redoes_only_retryable(start_met, dask_client, tmp_path):
    met = start_met(objects=250, seed=4, fault_rate=0.3, faults=frozenset({"503"}))
    clean = start_met(objects=250, seed=4)
    dataset = ingested(clean, dask_client, tmp_path)
    point_images_at(dataset, clean.base, met.base)
    once = image_options(met, max_attempts=1)
    first = build(dask_client, dataset, once)
    assert first["slots_by_status"].get(Status.TRANSIENT, 0) > 5
    before = zarr.open_group(str(tmp_path / "images.zarr"), mode="r")["images"][:]
    assert build(dask_client, dataset, once)["this_run"]["images"] == 0
    again = build(dask_client, dataset, image_options(met), retry_failed=True)
    assert again["this_run"]["images"] == first["slots_by_status"][Status.TRANSIENT]
    assert again["slots_by_status"] == {Status.OK: first["selected"]}
    after = zarr.open_group(str(tmp_path / "images.zarr"), mode="r")
    ok_before = [s for s, r in enumerate(before) if r.any()]
    assert np.array_equal(after["images"][ok_before], before[ok_before])  # kept, not refetched


def photo() -> bytes:
    """A real photograph (Grace Hopper, 512x600 JPEG) that matplotlib ships."""
    from matplotlib import cbook

    with open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), "rb") as f:
        return f.read()


@pytest.fixture
def odd_catalog(tmp_path):
    """The real samples, replayed, with image files of every awkward kind."""
    import json
    import shutil

    import cv2
    from conftest import SAMPLES

    root = tmp_path / "catalog"
    (root / "objects").mkdir(parents=True)
    files = {}
    for sample in SAMPLES.glob("*.json"):
        shutil.copy(sample, root / "objects" / sample.name)
        record = json.loads(sample.read_text())
        if record["primaryImageSmall"]:
            files[record["objectID"]] = root / "images" / record["primaryImageSmall"].split(".org/", 1)[1]
    big = cv2.resize(cv2.imdecode(np.frombuffer(photo(), np.uint8), cv2.IMREAD_COLOR), (4500, 6000))
    content = {
        45734: photo(),  # a real photograph
        10000: cv2.imencode(".png", np.zeros((12_000, 12_000), np.uint8))[1].tobytes(),  # a decompression bomb
        237: b"<html><body>Not an image</body></html>",
        460863: photo()[: len(photo()) // 2],  # truncated
        436286: cv2.imencode(".png", (np.arange(600 * 512) % 65535).astype(np.uint16).reshape(600, 512))[1].tobytes(),
        47892: cv2.imencode(".png", np.dstack([big[:600, :512], np.full((600, 512), 128, np.uint8)]))[1].tobytes(),
        51868: cv2.imencode(".jpg", big)[1].tobytes(),  # 4500x6000: decoded at a reduced size
    }
    for object_id, path in files.items():
        if object_id in content:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content[object_id])
    return root


def test_bombs_odd_formats_and_non_images(start_met, dask_client, tmp_path, odd_catalog, monkeypatch):
    import metdata.core.imaging as imaging

    met = start_met(catalog=odd_catalog)
    dataset = ingested(met, dask_client, tmp_path / "data")
    summary = build(dask_client, dataset, image_options(met, size=64, max_attempts=1))
    rows = statuses(dataset)
    expected = {
        45734: Status.OK,
        10000: Status.TOO_LARGE,
        237: Status.BAD_IMAGE,
        460863: Status.BAD_IMAGE,
        436286: Status.OK,
        47892: Status.OK,
        51868: Status.OK,
        452641: Status.NOT_FOUND,
    }
    assert {i: rows[i]["status"] for i in expected} == expected
    assert "pixel cap" in rows[10000]["error"] and (rows[10000]["width"], rows[10000]["height"]) == (None, None)
    assert (rows[51868]["width"], rows[51868]["height"]) == (4500, 6000)
    group = zarr.open_group(str(tmp_path / "data" / "images.zarr"), mode="r")
    slot = {int(i): s for s, i in enumerate(group["object_id"][:])}
    rgb, _, _ = imaging.decode(photo(), 64)
    assert np.array_equal(group["images"][slot[45734]], imaging.resize(rgb, 64, "squash"))
    gray = group["images"][slot[436286]]
    assert np.array_equal(gray[..., 0], gray[..., 1])  # 16-bit grayscale came out 8-bit RGB
    assert summary["slots_by_status"][Status.OK] == 4


def test_pad_decodes_smaller_and_looks_the_same():
    import cv2

    from metdata.core.imaging import decode, reduction, resize

    big = cv2.imencode(".jpg", cv2.resize(cv2.imdecode(np.frombuffer(photo(), np.uint8), cv2.IMREAD_COLOR), (640, 500)))
    data = big[1].tobytes()
    assert (reduction(640, 500, 150), reduction(640, 500, 150, longer=True)) == (2, 4)
    full, width, height = decode(data, 150)
    small, *size = decode(data, 150, longer=True)
    assert (width, height) == tuple(size) == (640, 500) and full.shape == (250, 320, 3) and small.shape == (125, 160, 3)
    a, b = resize(full, 150, "pad").astype(int), resize(small, 150, "pad").astype(int)
    assert a.shape == b.shape == (150, 150, 3) and (a[:, :, 0] > 0).sum() > 0.7 * 150 * 150
    assert np.abs(a - b).mean() < 3  # the same picture: the longer side still shrinks to 150


def test_resize_modes_on_a_real_photograph():
    import cv2

    from metdata.core.imaging import decode, resize

    rgb, width, height = decode(photo())
    assert (width, height) == (512, 600) and rgb.shape == (600, 512, 3)
    bgr = cv2.imdecode(np.frombuffer(photo(), np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(rgb, bgr[..., ::-1])  # RGB, not OpenCV's BGR
    squash = resize(rgb, 150, "squash")
    assert np.array_equal(squash, cv2.resize(rgb, (150, 150), interpolation=cv2.INTER_AREA))
    pad = resize(rgb, 150, "pad")
    inner = round(512 * 150 / 600)  # 128 px wide, full height
    left = (150 - inner) // 2
    assert not pad[:, :left].any() and not pad[:, left + inner :].any() and pad[:, left : left + inner].std() > 10
    crop = resize(rgb, 150, "crop")
    scaled = cv2.resize(rgb, (150, round(600 * 150 / 512)), interpolation=cv2.INTER_AREA)
    top = (scaled.shape[0] - 150) // 2
    assert np.array_equal(crop, scaled[top : top + 150])
    # the three differ and all keep the photograph's colours
    assert len({squash.tobytes(), pad.tobytes(), crop.tobytes()}) == 3
    assert abs(float(crop.mean()) - float(rgb.mean())) < 25


def test_a_killed_worker_loses_nothing(start_met, tmp_path):
    import threading

    from distributed import Client, LocalCluster

    met = start_met(objects=400, seed=7, latency=0.01)
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster, Client(cluster) as client:
        dataset = ingested(met, client, tmp_path)
        options = image_options(met, chunk=8)
        planned = job.plan(dataset, options)
        result = {}
        worker = threading.Thread(target=lambda: result.update(job.run(client, dataset, options, FAST, planned)))
        worker.start()
        kill_a_worker_when(client, lambda: len(dataset.data_files("images")) >= 2, still_running=worker.is_alive)
        worker.join(120)
    group = zarr.open_group(str(tmp_path / "images.zarr"), mode="r")
    assert result["slots_by_status"] == {Status.OK: planned.selected}
    assert group["valid"][:].all() and all(group["images"][i].any() for i in range(planned.selected))


def test_interrupted_run_then_rerun_equals_a_clean_run(start_met, dask_client, tmp_path):
    import shutil
    import subprocess
    import sys

    met = start_met(objects=300, seed=8, latency=0.02, fault_rate=0.1, faults=frozenset({"image-404"}))
    clean_root, broken_root = tmp_path / "clean", tmp_path / "broken"
    ingested(met, dask_client, clean_root)
    shutil.copytree(clean_root, broken_root)
    host = urlsplit(met.url).netloc
    command = [
        sys.executable,
        "-m",
        "metdata",
        "images",
        "--api",
        met.url,
        "--size",
        "24",
        "--chunk",
        "8",
        "--rate",
        "60",
        "--workers",
        "1",
        "--allow-host",
        host,
    ]
    proc = subprocess.Popen(
        [*command, "--data", str(broken_root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    begun = Dataset(str(broken_root))
    wait_until(lambda: len(begun.data_files("images")) >= 2, still_running=lambda: proc.poll() is None)
    proc.kill()
    proc.wait()
    assert 0 < len(Dataset(str(broken_root)).data_files("images")) < 15
    subprocess.run([*command, "--data", str(broken_root)], check=True, capture_output=True, timeout=300)
    subprocess.run([*command, "--data", str(clean_root)], check=True, capture_output=True, timeout=300)
    a = zarr.open_group(str(clean_root / "images.zarr"), mode="r")
    b = zarr.open_group(str(broken_root / "images.zarr"), mode="r")
    for name in ("object_id", "valid", "images"):
        assert np.array_equal(a[name][:], b[name][:]), name
    assert {i: r["status"] for i, r in statuses(Dataset(str(clean_root))).items()} == {
        i: r["status"] for i, r in statuses(Dataset(str(broken_root))).items()
    }
    assert not a["valid"][:].all()  # the broken image links are there, marked invalid


def test_images_on_s3_with_originals_kept(start_met, dask_client, s3):
    root, storage = s3
    met = start_met(objects=150, seed=9)
    dataset = Dataset(root, storage)
    ingest(dask_client, dataset, IngestOptions(lookup=LookupOptions(api=met.url), pace=FAST, shard_size=100))
    summary = build(dask_client, dataset, image_options(met, keep_originals=True))
    group = zarr.open_group(store=dataset.zarr_store("images.zarr"), mode="r")
    assert group["images"].shape[0] == summary["selected"] == summary["slots_by_status"][Status.OK]
    assert group["valid"][:].all() and group["images"][0].any()
    for row in statuses(dataset).values():
        assert hashlib.sha256(row["original"]).hexdigest() == row["sha256"] and len(row["original"]) == row["bytes"]
    met.stop()  # another size from the kept bytes: no download possible, none needed
    small = image_options(met, size=16, store="images-16.zarr")
    resized = job.run(dask_client, dataset, small, FAST, job.plan(dataset, small, from_originals="images.zarr"))
    assert resized["slots_by_status"] == {Status.OK: summary["selected"]} and resized["this_run"]["bytes_downloaded"]
    group16 = zarr.open_group(store=dataset.zarr_store("images-16.zarr"), mode="r")
    assert group16["images"].shape[1:] == (16, 16, 3)
    assert np.array_equal(group16["object_id"][:], group["object_id"][:])


def test_cli_bad_input(start_met, dask_client, tmp_path):
    from click.testing import CliRunner

    from metdata.cli import main

    met = start_met(objects=150, seed=10)
    dataset = ingested(met, dask_client, tmp_path)
    runner = CliRunner()
    base = ["images", "--data", str(tmp_path), "--api", met.url, "--size", "16"]
    ok = runner.invoke(main, [*base, "--where", "department = 'Asian Art'", "--workers", "1", "--processes"])
    assert ok.exit_code == 0, ok.output
    before = {p.name: p.read_bytes() for p in (tmp_path / "images.zarr").rglob("*") if p.is_file()}
    for args, code, message in [
        (["--size", "0"], 2, "0 is not in the range"),
        (["--size", "100000"], 2, "is not in the range"),
        (["--where", "department = = 1"], 1, "malformed --where"),
        (["--where", "objectBeginDate > 99999"], 1, "is empty"),
        (["--size", "32", "--where", "department = 'Asian Art'"], 1, "was made with"),
        (["--target", "painting-culture", "--where", "true"], 2, "not both"),
        (["--processes", "--cluster", "tcp://127.0.0.1:9"], 2, "--processes is for --cluster local"),
    ]:
        result = runner.invoke(main, [*base, *args])
        assert result.exit_code == code, (args, result.output)
        assert message in result.output, (args, result.output)
    after = {p.name: p.read_bytes() for p in (tmp_path / "images.zarr").rglob("*") if p.is_file()}
    assert before == after and dataset.exists("images/_summary.json")


def test_no_rate_limit_works_against_the_emulator_and_is_refused_for_the_mets_image_host(
    start_met, dask_client, tmp_path
):
    from click.testing import CliRunner

    from metdata.cli import main
    from metdata.net.pacing import RateRefused

    met = start_met(objects=200, seed=12)
    dataset = ingested(met, dask_client, tmp_path)
    options = image_options(met)
    summary = job.run(dask_client, dataset, options, PaceConfig(rate=0), job.plan(dataset, options))
    n = summary["selected"]
    assert n > 20 and summary["slots_by_status"] == {Status.OK: n} and summary["this_run"]["configured_rate"] == 0
    point_images_at(dataset, met.base, "https://images.metmuseum.org")  # the Met's own image host now
    other = image_options(met, store="met.zarr")
    with pytest.raises(RateRefused, match=r"refused for images\.metmuseum\.org"):
        job.run(dask_client, dataset, other, PaceConfig(rate=0), job.plan(dataset, other))
    base = ["images", "--data", str(tmp_path), "--api", met.url, "--store", "met2.zarr", "--size", "16"]
    for rate in ("0", "500"):
        result = CliRunner().invoke(main, [*base, "--rate", rate])
        assert result.exit_code == 1 and "is refused for images.metmuseum.org" in result.output, result.output
    assert not dataset.data_files(other.status_folder)  # refused before any chunk was done


def test_slow_and_retried_images_are_handed_to_follow_up_tasks_and_every_slot_ends_once(
    start_met, dask_client, tmp_path
):
    met = start_met(objects=300, seed=5, fault_rate=0.15, slow_seconds=3, faults=frozenset({"503", "drop", "slow"}))
    clean = start_met(objects=300, seed=5)
    dataset = ingested(clean, dask_client, tmp_path)
    point_images_at(dataset, clean.base, met.base)
    options = replace(
        image_options(met, max_attempts=8, late_after=0.2),
        lookup=replace(image_options(met).lookup, backoff=0.5, max_attempts=8),
    )
    summary = build(dask_client, dataset, options)
    n = summary["selected"]
    assert summary["this_run"]["follow_up_tasks"] > 0  # the tails went to other tasks
    assert summary["this_run"]["images"] == n  # each slot counted once, when it ended
    rows = pads.dataset(dataset.path("images"), filesystem=dataset.fs, format="parquet").to_table().to_pylist()
    assert len(rows) == n and len({r["objectID"] for r in rows}) == n  # one row per slot, none lost or twice
    assert summary["slots_by_status"] == {Status.OK: n}  # 8 attempts: every transient fault was outlived
    assert max(r["attempts"] for r in rows) > 1
    group = zarr.open_group(str(tmp_path / "images.zarr"), mode="r")
    assert group["valid"][:].all() and all(group["images"][s].any() for s in range(n))  # follow-ups kept the rest
    again = build(dask_client, dataset, options, retry_failed=True)
    assert again["this_run"]["images"] == 0 and again["slots_by_status"] == {Status.OK: n}  # a rerun changes nothing


def _items_task(task: tuple[str, int, int], progress_topic: str | None = None) -> dict:
    """A task of ``n`` items that counts them as they end; ``late`` of them are left to a follow-up."""
    from metdata.core.progress import report

    name, n, late = task
    with report(progress_topic, every=0.0) as finished:
        for _ in range(n - late):
            finished(1)
    return {"name": name, "ended": n - late, "late": late}


def test_tasks_report_items_as_they_end_and_follow_ups_run_once_and_count_once(dask_client, caplog):
    import logging

    from metdata.jobs.tasks import run_tasks

    failures: list[str] = []
    seen = []
    with caplog.at_level(logging.INFO, logger="metdata.core.progress"):
        for result in run_tasks(
            dask_client,
            _items_task,
            [("a", 10, 3), ("b", 5, 0)],
            label="items",
            size=lambda t: t[1] if t[0] in "ab" else 0,  # a follow-up's items are in its first task's size
            name=lambda t: t[0],
            failures=failures,
            follow_up=lambda t, r: (0.2, (t[0] + "+", r["late"], 0)) if r["late"] else None,
            finished=lambda r: r["ended"],
        ):
            seen.append(result["name"])
    assert sorted(seen) == ["a", "a+", "b"] and not failures
    final = [r.getMessage() for r in caplog.records if " in " in r.getMessage()]
    assert final and final[-1].startswith("items: 15/15 in ")  # every item counted once, follow-up's included
