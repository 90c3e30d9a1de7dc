"""The images stage against real components: emulator, LocalCluster, moto S3, real photos."""

from __future__ import annotations

import hashlib
from urllib.parse import urlsplit

import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pytest
import zarr
from conftest import stats

from jobs import images as job
from jobs.ingest import IngestOptions
from jobs.ingest import run as ingest
from metdata.dataset import Dataset
from metdata.images import ImageOptions, StoreMismatch
from metdata.lookup import LookupOptions
from metdata.pacing import PaceConfig
from metdata.selection import SelectionError

FAST = PaceConfig(rate=300, cooldown=0.5)


def image_options(met, **overrides) -> ImageOptions:
    fields = {
        "api": met.url,
        "size": 32,
        "chunk": 16,
        "timeout": 2.0,
        "backoff": 0.05,
        "max_attempts": 6,
        "allowed_hosts": frozenset({"images.metmuseum.org", urlsplit(met.url).netloc}),
        **overrides,
    }
    return ImageOptions(**fields)


def ingested(met, client, root, **overrides) -> Dataset:
    dataset = Dataset(str(root))
    lookup = LookupOptions(api=met.url, timeout=2.0, backoff=0.05)
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
        assert row["slot"] == slot and (row["status"] == "ok") == valid[slot]
        if valid[slot]:
            assert pixels[slot].std() > 0 and 500 <= max(row["width"], row["height"]) <= 800
            assert row["sha256"] == hashlib.sha256(met.catalog.image(urlsplit(row["url"]).path).body).hexdigest()
        else:
            assert not pixels[slot].any()
    assert summary["slots_by_status"] == {"ok": n}


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
            expected = {"not_found"}
        elif met.faults.permanent("truncate", path) or met.faults.permanent("not-image", path):
            expected = {"bad_image"}
        else:
            expected = {"ok", "transient"}  # transient only if every attempt met a fault
        assert row["status"] in expected, row
        assert (row["status"] == "ok") == (row["error"] is None)
        seen.add(row["status"])
    assert {"ok", "not_found", "bad_image"} <= seen
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
    with pytest.raises(SelectionError, match="unknown target"):
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
    assert first["slots_by_status"].get("transient", 0) > 5
    before = zarr.open_group(str(tmp_path / "images.zarr"), mode="r")["images"][:]
    assert build(dask_client, dataset, once)["this_run"]["images"] == 0
    again = build(dask_client, dataset, image_options(met), retry_failed=True)
    assert again["this_run"]["images"] == first["slots_by_status"]["transient"]
    assert again["slots_by_status"] == {"ok": first["selected"]}
    after = zarr.open_group(str(tmp_path / "images.zarr"), mode="r")
    ok_before = [s for s, r in enumerate(before) if r.any()]
    assert np.array_equal(after["images"][ok_before], before[ok_before])  # kept, not refetched
