"""Metadata ingestion against real components: the emulator, a LocalCluster, moto's S3."""

from __future__ import annotations

import shutil
import threading

import pyarrow as pa
import pyarrow.dataset as pads
import pytest
import requests
from conftest import SAMPLES, stats
from workers import kill_a_worker_when, wait_until

from metdata.acquire.lookup import LookupOptions
from metdata.core.records import SCHEMA
from metdata.core.statuses import Status
from metdata.emulator.faults import KINDS
from metdata.jobs.ingest import IngestOptions, plan, run
from metdata.net.pacing import PaceConfig
from metdata.storage.dataset import Dataset

FAST = PaceConfig(rate=200, cooldown=0.5)


def options(met, **overrides) -> IngestOptions:
    lookup = LookupOptions(api=met.url, timeout=2.0, max_attempts=6, backoff=0.05)
    fields = {"lookup": lookup, "pace": FAST, "shard_size": 50, **overrides}
    return IngestOptions(**fields)


def table(root, storage_options=None) -> pa.Table:
    fs = Dataset(root, storage_options or {}).fs
    path = Dataset(root, storage_options or {}).path("objects")
    return pads.dataset(path, filesystem=fs, format="parquet").to_table().sort_by("objectID")


def comparable(t: pa.Table) -> list[dict]:
    return t.drop_columns(["attempts", "fetched_at"]).to_pylist()


def test_replayed_samples_land_with_types_and_nulls(start_met, dask_client, tmp_path):
    met = start_met(catalog=SAMPLES)
    summary = run(dask_client, Dataset(str(tmp_path)), options(met))
    assert summary["rows"] == 10 and summary["rows_by_status"] == {Status.OK: 10}
    t = table(tmp_path)
    assert t.schema.equals(SCHEMA)
    rows = {r["objectID"]: r for r in t.to_pylist()}
    assert rows[24]["measurements"] is None and rows[24]["constituents"] is None  # a 56-key record
    assert rows[24]["tags"] is None
    scroll = rows[45734]
    assert scroll["objectBeginDate"] == 1667 and scroll["isPublicDomain"] is True
    assert scroll["constituents"][0]["name"] == "Kiyohara Yukinobu"
    assert scroll["tags"][0]["term"] == "Birds"
    assert dict(scroll["measurements"][0]["elementMeasurements"]) == {
        "Height": 118.4,
        "Width": 47.6,
    }
    assert scroll["measurements"][0]["elementDescription"] is None
    assert scroll["primaryImageSmall"].startswith(met.base)
    assert len(scroll["additionalImages"]) == 2
    frame = rows[454811]["dimensions"]
    assert "\r\n" in frame and rows[454811]["culture"] == "" and rows[454811]["country"] == "India"


def test_fault_storm_accounts_for_every_id(start_met, dask_client, tmp_path):
    clean = start_met(objects=300, seed=3)
    storm = start_met(
        objects=300,
        seed=3,
        fault_rate=0.08,
        faults=frozenset(KINDS),
        slow_seconds=3,
        throttle=True,
        throttle_window=1.0,
        throttle_burst=60,
        throttle_penalty=0.5,
    )
    summary = run(dask_client, Dataset(str(tmp_path)), options(storm, pace=PaceConfig(rate=100, cooldown=0.6)))
    listed = requests.get(f"{clean.url}/objects").json()["objectIDs"]
    t = table(tmp_path)
    ids = t["objectID"].to_pylist()
    assert ids == sorted(listed) and len(set(ids)) == len(ids) == summary["rows"] == 300
    counters = stats(storm)["api"]
    assert counters.get("fault_not-valid", 0) > 0
    for row in t.to_pylist():
        assert row["status"] in (Status.OK, Status.NOT_VALID, Status.TRANSIENT, Status.BLOCKED), row["error"]
        if row["status"] == Status.OK:
            expected = requests.get(f"{clean.url}/objects/{row['objectID']}").json()
            assert row["title"] == expected["title"] and row["metadataDate"] == expected["metadataDate"]
        if row["status"] == Status.NOT_VALID:
            assert row["error"] == "Not a valid object" and row["title"] is None
    assert sum(r["status"] == Status.OK for r in t.to_pylist()) > 200


def test_slow_and_retried_lookups_are_handed_to_follow_up_tasks_and_every_id_ends_once(
    start_met, dask_client, tmp_path, caplog
):
    import logging

    met = start_met(objects=300, seed=7, fault_rate=0.15, slow_seconds=3, faults=frozenset({"503", "drop", "slow"}))
    clean = start_met(objects=300, seed=7)
    dataset = Dataset(str(tmp_path))
    lookup = LookupOptions(api=met.url, timeout=2.0, max_attempts=8, backoff=0.5)
    with caplog.at_level(logging.INFO, logger="metdata.core.progress"):
        summary = run(dask_client, dataset, options(met, lookup=lookup, late_after=0.2))
    ends = [
        r.getMessage()
        for r in caplog.records
        if r.getMessage().startswith("ids looked up: ") and " in " in r.getMessage()
    ]
    assert ends and ends[-1].startswith("ids looked up: 300/300 in ")  # each id counted once, follow-ups' included
    assert summary["this_run"]["follow_up_tasks"] > 0  # the tails went to other tasks
    assert summary["this_run"]["ids_looked_up"] == 300  # each id counted once, when it ended
    t = table(tmp_path)
    ids = t["objectID"].to_pylist()
    assert ids == sorted(requests.get(f"{clean.url}/objects").json()["objectIDs"]) and len(set(ids)) == 300
    assert summary["rows_by_status"] == {Status.OK: 300}  # 8 attempts: every transient fault was outlived
    assert max(t["attempts"].to_pylist()) > 1 and not any("pending" in (e or "") for e in t["error"].to_pylist())
    again = run(dask_client, dataset, options(met, lookup=lookup, late_after=0.2, retry_failed=True))
    assert again["this_run"]["ids_looked_up"] == 0 and comparable(table(tmp_path)) == comparable(t)


def test_ids_left_pending_by_a_stopped_run_stay_transient_and_retry_failed_finishes_them(start_met, tmp_path):
    from metdata.acquire.ingest import ShardTask, follow_up, run_shard
    from metdata.net.pacing import LocalPacer

    met = start_met(objects=40, seed=9, fault_rate=0.3, slow_seconds=3, faults=frozenset({"slow"}))
    dataset = Dataset(str(tmp_path))
    ids = requests.get(f"{met.url}/objects").json()["objectIDs"]
    from metdata.acquire.listing import write_listing

    write_listing(dataset, ids, {})
    task = ShardTask("objects/part-0000001.parquet", tuple(sorted(ids)))
    lookup = LookupOptions(api=met.url, timeout=2.0, max_attempts=5, backoff=0.05)
    result = run_shard(task, dataset, lookup, LocalPacer(FAST), late_after=0.2)  # its follow-up never runs
    late = result["late"]
    assert late and sum(result["statuses"].values()) + len(late) == 40
    rows = {r["objectID"]: r for r in table(tmp_path).to_pylist()}
    assert len(rows) == 40
    for object_id, attempts, _ in late:
        assert rows[object_id]["status"] == Status.TRANSIENT and "pending" in rows[object_id]["error"]
        assert rows[object_id]["attempts"] == attempts >= 1  # the abandoned request counts
    _, nxt = follow_up(task, result)
    assert nxt.replace and set(nxt.ids) == {i for i, *_ in late}
    fixed = run_shard(nxt, dataset, lookup, LocalPacer(FAST))  # what --retry-failed would do, waiting its tail
    assert not fixed.get("late") and sum(fixed["statuses"].values()) == len(late)
    after = table(tmp_path)
    assert after["objectID"].to_pylist() == sorted(ids)  # one row per id, the others kept
    assert not any("pending" in (e or "") for e in after["error"].to_pylist())


def test_rerun_skips_finished_shards_and_retry_failed_fixes_the_rest(start_met, dask_client, tmp_path):
    met = start_met(objects=200, seed=1, fault_rate=0.3, faults=frozenset({"503"}))
    dataset = Dataset(str(tmp_path))
    once = options(met, lookup=LookupOptions(api=met.url, max_attempts=1, backoff=0.01))
    first = run(dask_client, dataset, once)
    transient = first["rows_by_status"].get(Status.TRANSIENT, 0)
    assert transient > 20
    before = table(tmp_path)
    again = run(dask_client, dataset, once)
    assert again["this_run"]["requests"] == 0 and comparable(table(tmp_path)) == comparable(before)
    fixed = run(dask_client, dataset, options(met, retry_failed=True))
    assert fixed["this_run"]["ids_looked_up"] == transient
    assert fixed["rows_by_status"] == {Status.OK: 200}
    after = table(tmp_path)
    assert after["objectID"].to_pylist() == before["objectID"].to_pylist()


def test_since_refreshes_updated_objects_and_adds_new_ones(start_met, dask_client, tmp_path):
    met = start_met(objects=200, seed=2)
    dataset = Dataset(str(tmp_path))
    run(dask_client, dataset, options(met))
    # drop three rows, as if those objects were new since the first run
    listed = dataset.read_table("ids/listing.parquet")["objectID"].to_pylist()
    updated = requests.get(f"{met.url}/objects", params={"metadataDate": "2025-06-01"}).json()["objectIDs"]
    from metdata.acquire.listing import write_listing

    write_listing(dataset, [i for i in listed if i not in updated[:3]], {})
    shard = dataset.data_files("objects")[0]
    kept = dataset.read_table(shard).filter(
        pa.compute.invert(pa.compute.is_in(dataset.read_table(shard)["objectID"], pa.array(updated[:3], pa.int64())))
    )
    dataset.write_table(shard, kept)
    before = {r["objectID"]: r["fetched_at"] for r in table(tmp_path).to_pylist()}
    summary = run(dask_client, dataset, options(met, since="2025-06-01"))
    after = table(tmp_path)
    assert after["objectID"].to_pylist() == sorted(listed) and summary["rows"] == 200
    refreshed = {r["objectID"] for r in after.to_pylist() if r["fetched_at"] != before.get(r["objectID"])}
    assert refreshed == set(updated)


def test_a_killed_worker_loses_nothing(start_met, tmp_path):
    from distributed import Client, LocalCluster

    met = start_met(objects=400, seed=4, latency=0.01)
    dataset = Dataset(str(tmp_path))
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        result = {}
        job = threading.Thread(
            target=lambda: result.update(run(client, dataset, options(met, shard_size=25, pace=PaceConfig(rate=150))))
        )
        job.start()
        kill_a_worker_when(client, lambda: len(dataset.data_files("objects")) >= 2, still_running=job.is_alive)
        job.join(120)
    assert result["rows"] == 400 == len(set(table(tmp_path)["objectID"].to_pylist()))
    assert result["rows_by_status"] == {Status.OK: 400}


def test_client_killed_mid_run_then_rerun_equals_a_clean_run(start_met, tmp_path):
    import subprocess
    import sys

    met = start_met(objects=300, seed=5, latency=0.01, fault_rate=0.1, faults=frozenset({"not-valid"}))
    command = [
        sys.executable,
        "-m",
        "metdata",
        "ingest",
        "--api",
        met.url,
        "--rate",
        "80",
        "--workers",
        "1",
        "--shard-size",
        "30",
        "--timeout",
        "5",
    ]
    interrupted, clean = tmp_path / "interrupted", tmp_path / "clean"
    proc = subprocess.Popen(
        [*command, "--data", str(interrupted)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    begun = Dataset(str(interrupted))
    wait_until(lambda: len(begun.data_files("objects")) >= 2, still_running=lambda: proc.poll() is None)
    proc.kill()
    proc.wait()
    partial = len(Dataset(str(interrupted)).data_files("objects"))
    assert 0 < partial < 10
    subprocess.run([*command, "--data", str(interrupted)], check=True, capture_output=True, timeout=180)
    subprocess.run([*command, "--data", str(clean)], check=True, capture_output=True, timeout=180)
    assert comparable(table(interrupted)) == comparable(table(clean))
    assert len(table(clean)) == 300


def test_four_workers_stay_under_the_cluster_wide_rate(start_met, tmp_path):
    from distributed import Client, LocalCluster

    # budget: 10 requests per 2 s (5/s); the cluster is told 4/s in total
    met = start_met(
        objects=60,
        seed=6,
        throttle=True,
        throttle_window=2.0,
        throttle_burst=10,
        throttle_penalty=30,
    )
    with (
        LocalCluster(n_workers=4, threads_per_worker=1, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        summary = run(client, Dataset(str(tmp_path)), options(met, shard_size=15, pace=PaceConfig(rate=4.0)))
    counters = stats(met)["api"]
    assert counters.get("blocked", 0) == 0
    assert summary["rows_by_status"] == {Status.OK: 60}
    assert summary["this_run"]["achieved_rate"] <= 4.4


def test_a_run_with_few_ids_uses_every_worker(start_met, dask_client, tmp_path):
    from distributed import get_task_stream

    met = start_met(objects=40, seed=8)
    with get_task_stream(dask_client) as stream:  # shard_size 1000: one task before the budget planned them
        summary = run(dask_client, Dataset(str(tmp_path)), options(met, shard_size=1000))
    workers = {task["worker"] for task in stream.data if "run_shard" in task["key"] or "ids" in task["key"]}
    assert workers == set(dask_client.scheduler_info()["workers"])  # both workers looked ids up
    assert summary["this_run"]["in_flight"]["tasks"] == 4 and summary["rows_by_status"] == {Status.OK: 40}


def test_s3_root_through_moto(start_met, dask_client, s3):
    root, storage = s3
    met = start_met(catalog=SAMPLES)
    summary = run(dask_client, Dataset(root, storage), options(met, shard_size=4))
    assert summary["rows"] == 10
    t = table(root, storage)
    assert t.num_rows == 10 and t.schema.equals(SCHEMA)
    assert Dataset(root, storage).read_json("objects/_summary.json")["rows"] == 10


def test_plan_fails_before_writing_on_bad_input(start_met, tmp_path, s3):
    from metdata.acquire.lookup import ListingError
    from metdata.storage.dataset import DatasetError

    met = start_met()
    with pytest.raises(ListingError, match="unreachable"):
        plan(
            Dataset(str(tmp_path / "a")),
            options(met, lookup=LookupOptions(api="http://127.0.0.1:9/x", max_attempts=1)),
        )
    with pytest.raises(ListingError, match="is --api the API base URL"):
        plan(
            Dataset(str(tmp_path / "b")),
            options(met, lookup=LookupOptions(api=met.base + "/nothing", max_attempts=1)),
        )
    with pytest.raises(DatasetError, match="cannot write to the dataset root"):
        plan(Dataset("/proc/metdata"), options(met))
    root, storage = s3
    with pytest.raises(DatasetError, match="credentials"):
        plan(Dataset(root.replace("metdata-test", "no-such-bucket"), storage), options(met))
    assert not Dataset(str(tmp_path / "a")).data_files("ids")
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_from_csv_maps_the_open_access_columns(tmp_path):
    import json

    from metdata.jobs.ingest import load_csv

    csv = SAMPLES.parent / "MetObjects-sample.csv"
    summary = load_csv(Dataset(str(tmp_path)), IngestOptions(from_csv=str(csv), shard_size=4))
    assert summary["rows"] == 10 and summary["rows_by_status"] == {Status.CSV: 10}
    rows = {r["objectID"]: r for r in table(tmp_path).to_pylist()}
    for sample in SAMPLES.glob("*.json"):
        record = json.loads(sample.read_text())
        row = rows[record["objectID"]]
        for field in (
            "title",
            "culture",
            "country",
            "classification",
            "objectName",
            "artistDisplayName",
            "isPublicDomain",
            "isHighlight",
            "objectBeginDate",
            "department",
            "metadataDate",
        ):
            assert row[field] == record[field], field
        assert row["primaryImage"] is None and row["measurements"] is None  # the CSV has neither
        assert row["tags"] == record["tags"]
        makers = [c["constituentID"] for c in row["constituents"] or []]
        assert makers == [c["constituentID"] for c in record["constituents"] or []]
    # a second load keeps what is there; an API run afterwards skips the csv rows
    assert load_csv(Dataset(str(tmp_path)), IngestOptions(from_csv=str(csv)))["rows"] == 10
    assert Dataset(str(tmp_path)).read_table("ids/listing.parquet").num_rows == 10


def test_cli_bad_input_exits_non_zero_with_a_clear_message(tmp_path, start_met):
    from click.testing import CliRunner

    from metdata.cli import main

    runner = CliRunner()
    met = start_met()
    cases = [
        (
            [
                "ingest",
                "--api",
                "http://127.0.0.1:9/public/collection/v1",
                "--data",
                str(tmp_path / "a"),
                "--max-attempts",
                "1",
            ],
            1,
            "unreachable",
        ),
        (
            [
                "ids",
                "--api",
                met.base + "/somewhere",
                "--data",
                str(tmp_path / "b"),
                "--max-attempts",
                "1",
            ],
            1,
            "is --api the API base URL",
        ),
        (
            [
                "ids",
                "--api",
                met.url,
                "--data",
                str(tmp_path / "c"),
                "--metadata-date",
                "2024-13-01",
            ],
            2,
            "write it YYYY-MM-DD",
        ),
        (
            ["ingest", "--api", met.url, "--data", "/proc/metdata"],
            1,
            "cannot write to the dataset root",
        ),
        (
            [
                "ingest",
                "--api",
                met.url,
                "--data",
                str(tmp_path / "d"),
                "--storage-options",
                "{bad",
            ],
            2,
            "not JSON",
        ),
        (
            ["ingest", "--data", str(tmp_path / "e"), "--from-csv", str(SAMPLES / "24.json")],
            1,
            "is not MetObjects.csv",
        ),
    ]
    for args, code, message in cases:
        result = runner.invoke(main, args)
        assert result.exit_code == code, (args, result.output)
        assert message in result.output, (args, result.output)
    for name in "abcde":
        assert not (tmp_path / name / "objects").exists() and not (tmp_path / name / "ids").exists()
