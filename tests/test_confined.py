"""Confined paths and options (issue 12): store names, run folders, --where, option values, and the
smaller escapes (dashboard address, replay catalog, bad listings, foreign Parquet, failed writes)."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from click.testing import CliRunner
from conftest import SAMPLES

from metdata.acquire.ingest import read_index
from metdata.acquire.listing import read_listing
from metdata.cli import main
from metdata.core.records import record_row, rows_to_table
from metdata.images.selection import SelectionError, select
from metdata.storage.dataset import Dataset, DatasetError
from metdata.storage.layout import store_paths
from metdata.storage.objects import objects_table

CSV = SAMPLES.parent / "MetObjects-sample.csv"


def _root(tmp_path: Path) -> Path:
    """A dataset root with ten ingested objects (five Asian Art), and a precious file beside it."""
    root = tmp_path / "data"
    rows = [
        record_row(
            {
                "objectID": i,
                "title": f"t{i}",
                "department": "Asian Art" if i % 2 else "Arms and Armor",
                "primaryImageSmall": f"http://127.0.0.1:9/CRDImages/{i}.jpg",
            },
            1,
            dt.datetime(2026, 1, 1),
        )
        for i in range(1, 11)
    ]
    Dataset(str(root)).write_table("objects/part-0000001.parquet", rows_to_table(rows))
    Dataset(str(root)).write_table("ids/listing.parquet", pa.table({"objectID": pa.array(range(1, 11), pa.int64())}))
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "f").write_text("precious")
    return root


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ------------------------------------------------------------------ store names


@pytest.mark.parametrize(
    ("store", "problem"),
    [
        ("objects.zarr", "would use objects/"),
        ("ids.zarr", "would use ids/"),
        ("Runs.zarr", "would use Runs/"),
        ("images.zarr.zarr", "would use images.zarr/"),
        (".zarr", "not a plain folder name"),
        ("_x.zarr", "not a plain folder name"),
        ("../victim.zarr", "not a plain folder name"),
        ("sub/x.zarr", "not a plain folder name"),
        ("images", "not a plain folder name"),
    ],
)
def test_a_store_name_that_escapes_is_refused_and_nothing_is_deleted(tmp_path, store, problem):
    root = _root(tmp_path)
    before = _files(tmp_path)
    result = CliRunner().invoke(main, ["images", "--data", str(root), "--store", store])
    assert result.exit_code == 2
    assert problem in result.output and "give another name ending .zarr" in result.output
    assert _files(tmp_path) == before
    with pytest.raises(DatasetError, match=problem.replace(".", r"\.")):
        store_paths(store)  # library callers are confined too


def test_the_images_stage_derives_its_status_folder_from_the_checked_name():
    from metdata.images.images import ImageOptions

    assert ImageOptions(store="images-224.zarr").status_folder == "images-224"
    with pytest.raises(DatasetError, match="would use objects/"):
        ImageOptions(store="objects.zarr").status_folder  # noqa: B018


def test_from_originals_and_explore_and_train_check_the_store_name(tmp_path):
    root = _root(tmp_path)
    runner = CliRunner()
    for args in (
        ["images", "--data", str(root), "--from-originals", "objects.zarr"],
        ["explore", "--data", str(root), "--out", str(tmp_path / "r"), "--store", "../victim.zarr"],
        ["train", "--data", str(root), "--target", "t", "--out", str(tmp_path / "r"), "--store", "ids.zarr"],
    ):
        result = runner.invoke(main, args)
        assert result.exit_code == 2 and "give another name ending .zarr" in result.output, args


# ------------------------------------------------------------------ output folders


@pytest.mark.parametrize("inside", ["", "objects", "ids/x", "images", "images.zarr", "other.zarr/x", ".."])
def test_an_output_folder_on_the_roots_own_folders_is_refused(tmp_path, inside):
    root = _root(tmp_path)
    out = str(root / inside) if inside else str(root)
    with pytest.raises(DatasetError, match="give a folder of its own"):
        Dataset(str(root)).check_output(out, "--out")


@pytest.mark.parametrize("out", ["runs/painting-culture", "report", "../elsewhere"])
def test_an_output_folder_of_its_own_is_accepted(tmp_path, out):
    root = _root(tmp_path)
    Dataset(str(root)).check_output(str(root / out), "--out")


def test_a_status_folder_of_an_existing_store_is_the_stages_own(tmp_path):
    root = _root(tmp_path)
    (root / "small.zarr").mkdir()
    (root / "small.zarr" / "zarr.json").write_text("{}")
    with pytest.raises(DatasetError, match="inside small/"):
        Dataset(str(root)).check_output(str(root / "small"), "--out")


def test_train_evaluate_and_explore_refuse_to_write_into_the_roots_folders(tmp_path):
    root = _root(tmp_path)
    before = _files(root)
    runner = CliRunner()
    for args in (
        ["train", "--data", str(root), "--target", "painting-culture", "--out", str(root / "objects")],
        ["evaluate", "--data", str(root), "--model", str(root)],
        ["explore", "--data", str(root), "--out", str(root / "ids")],
    ):
        result = runner.invoke(main, args)
        assert result.exit_code == 1, (args, result.output)
        assert "a folder the dataset stages own" in result.output or "is the dataset root" in result.output
    assert _files(root) == before


# ------------------------------------------------------------------ --where


def _table(root: Path) -> pa.Table:
    return objects_table(Dataset(str(root)))


def test_where_still_selects_by_a_condition(tmp_path):
    selected = select(_table(_root(tmp_path)), "primaryImageSmall", where="department = 'Asian Art' AND objectID > 3")
    assert selected["objectID"].to_pylist() == [5, 7, 9]


def _varied() -> pa.Table:
    """Six objects with the fields the useful conditions below look at."""
    fields = [
        (1, "Lotus Vase", "Asian Art", "Japan", 1700, True),
        (2, "Lotus Bowl", "Asian Art", "China", 1500, False),
        (3, "Sword", "Arms and Armor", "Japanese", 1650, True),
        (4, None, "Asian Art", "Korea", 1800, False),
        (5, "Helmet", "Arms and Armor", None, 1400, True),
        (6, "Screen", "Asian Art", "japan", 1601, False),
    ]
    records = [
        dict(zip(("objectID", "title", "department", "culture", "objectBeginDate", "isPublicDomain"), f, strict=True))
        for f in fields
    ]
    url = "http://127.0.0.1:9/CRDImages/{}.jpg"
    rows = [
        record_row({**r, "primaryImageSmall": url.format(r["objectID"])}, 1, dt.datetime(2026, 1, 1)) for r in records
    ]
    return rows_to_table(rows)


@pytest.mark.parametrize(
    ("expression", "ids"),
    [
        ("department = 'Asian Art' AND objectBeginDate > 1600", [1, 4, 6]),
        ("culture ILIKE '%japan%'", [1, 3, 6]),
        ("culture NOT LIKE 'J%'", [2, 4, 6]),
        ("objectID IN (1,2,3)", [1, 2, 3]),
        ("objectID NOT IN (1,2,3)", [4, 5, 6]),
        ("isPublicDomain", [1, 3, 5]),
        ("title IS NOT NULL", [1, 2, 3, 5, 6]),
        ("culture IS NULL OR objectBeginDate BETWEEN 1500 AND 1601", [2, 5, 6]),
        ("regexp_matches(title, 'Lotus')", [1, 2]),
        ("lower(coalesce(title, 'none')) = 'none'", [4]),
        ("CASE WHEN department = 'Asian Art' THEN objectBeginDate < 1600 ELSE NOT isPublicDomain END", [2]),
        ("CAST(objectBeginDate AS VARCHAR) LIKE '17%' OR starts_with(title, 'Hel')", [1, 5]),
    ],
)
def test_where_allows_the_useful_conditions(expression, ids):
    assert select(_varied(), "primaryImageSmall", where=expression)["objectID"].to_pylist() == ids


_BOMB = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))  # here, not in preexec_fn (the parent has threads)
import pyarrow as pa
from metdata.images.selection import SelectionError, _where
try:
    _where(pa.table({"objectID": pa.array([1, 2], pa.int64()), "title": ["a", "b"]}), sys.argv[1])
except SelectionError as exc:
    print(exc)
"""


@pytest.mark.parametrize(
    ("expression", "refused"),
    [
        ("len(range(0, 400000000)) > 0", "len() is not allowed"),
        ("length(range(0, 400000000)) > 0", "range() is not allowed"),
        ("length(repeat('x', 1500000000)) > 0", "repeat() is not allowed"),
        ("EXISTS (FROM generate_series(1, 400000000))", "a subquery is not allowed"),
        ("length(list_transform([1, 2], x -> repeat('x', 1500000000))) > 0", "list_transform() is not allowed"),
    ],
)
def test_where_refuses_memory_bombs_before_running_them(expression, refused):
    """Run in a child limited to 4 GiB of address space: a regression fails here rather than eat the machine."""
    import subprocess
    import sys

    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", _BOMB, expression], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith(f"malformed --where {expression!r}: {refused}."), done.stdout
    assert "regexp_matches" in done.stdout  # the message lists what is allowed
    assert time.monotonic() - started < 60  # generous: refused at parse time, nothing evaluated


@pytest.mark.parametrize(
    ("expression", "refused"),
    [
        ("title = current_setting('home_directory')", "current_setting() is not allowed"),
        ("title = getenv('HOME')", "getenv() is not allowed"),
        ("length(title) = length(read_text('/etc/passwd'))", "read_text() is not allowed"),
        (
            "objectID = (SELECT column0 FROM read_csv('/etc/passwd', header=false, sep='|') LIMIT 1)",
            "a subquery is not allowed",
        ),
        ("objectID IN (FROM read_text('/etc/passwd'))", "a subquery is not allowed"),
        ("EXISTS (SELECT 1)", "a subquery is not allowed"),
        ("length(title) < length((SELECT content FROM read_text('/etc/passwd')))", "a subquery is not allowed"),
        ("count(*) OVER () > 1", "a window function is not allowed"),
        ("[x FOR x IN [1]] = [1]", "list_apply() is not allowed"),
        ("title.upper() = 'T1'", "title.upper() is not allowed"),
        ("title = ?", "a parameter is not allowed"),
        ("title COLLATE nocase = 'T1'", "COLLATE is not allowed"),
        ("CAST(title AS VARCHAR[]) IS NULL", "a cast to list is not allowed"),
        ("objectID[1] = 1", "ARRAY_EXTRACT is not allowed"),
        ("constituents.name = 'x'", "unknown column 'constituents.name'"),
        ("nosuchcolumn = 1", "unknown column 'nosuchcolumn'"),
    ],
)
def test_where_refuses_what_is_not_a_plain_condition(tmp_path, expression, refused):
    with pytest.raises(SelectionError) as caught:
        select(_table(_root(tmp_path)), "primaryImageSmall", where=expression)
    message = str(caught.value)
    assert message.startswith(f"malformed --where {expression!r}: {refused}. Write one SQL condition"), message
    assert "root:" not in message and os.environ.get("HOME", "/root") not in message.replace(expression, "")


def test_where_refuses_a_long_expression_without_echoing_it(tmp_path):
    expression = " OR ".join(["objectID = 1"] * 200)
    with pytest.raises(SelectionError, match=r"^malformed --where: 3196 characters, more than 2000") as caught:
        select(_table(_root(tmp_path)), "primaryImageSmall", where=expression)
    assert expression not in str(caught.value)


def test_where_with_a_second_statement_writes_nothing_and_exits_1(tmp_path):
    root = _root(tmp_path)
    target = tmp_path / "out.csv"
    where = f"1=1; COPY (SELECT 'x') TO '{target}'"
    result = CliRunner().invoke(main, ["images", "--data", str(root), "--where", where])
    assert result.exit_code == 1
    assert "more than one statement" in result.output and "Write one SQL condition" in result.output
    assert not target.exists()
    assert not (root / "images.zarr").exists()  # refused before the store is made


# ------------------------------------------------------------------ option values


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["images", "--rate", "nan"], "'nan' is not a finite number"),
        (["images", "--rate", "inf"], "'inf' is not a finite number"),
        (["ingest", "--rate", "nan"], "'nan' is not a finite number"),
        (["ingest", "--timeout", "inf"], "'inf' is not a finite number"),
        (["ingest", "--timeout", "nan"], "'nan' is not a finite number"),
        (["images", "--cooldown", "nan"], "'nan' is not a finite number"),
        (["images", "--cooldown", "1e9"], "not in the range 0<=x<=86400"),
        (["images", "--rate", "0.001"], "is below 0.01 requests/s"),  # 0 is no limit; over 80 is the Met's call
        (["ingest", "--rate", "-1"], "not in the range 0<=x<=1000000"),
        (["images", "--size", "0"], "not in the range 8<=x<=1024"),
        (["images", "--max-bytes", "inf"], "is not a valid integer"),
        (["train", "--target", "t", "--out", "r", "--val-fraction", "nan"], "'nan' is not a finite number"),
        (["train", "--target", "t", "--out", "r", "--val-fraction", "1"], "0<=x<1"),
        (["train", "--target", "t", "--out", "r", "--epochs", "0"], "x>=1"),
        (["serve", "--model", "r", "--max-upload-mb", "nan"], "'nan' is not a finite number"),
        (["serve", "--model", "r", "--fetch-timeout", "inf"], "'inf' is not a finite number"),
    ],
)
def test_option_values_are_finite_and_in_range(tmp_path, args, shown):
    result = CliRunner().invoke(main, [args[0], "--data", str(tmp_path / "d"), *args[1:]])
    assert result.exit_code == 2 and shown in result.output, result.output
    assert not (tmp_path / "d").exists()


def test_a_summary_never_holds_nan(tmp_path):
    with pytest.raises(ValueError, match="Out of range float"):
        Dataset(str(tmp_path)).write_json("objects/_summary.json", {"rate": float("nan")})
    assert list(tmp_path.rglob("*.json")) == [] and list(tmp_path.rglob(".*.tmp")) == []


def test_pacing_refuses_nan_for_library_callers():
    from metdata.net.pacing import PaceConfig

    with pytest.raises(ValueError, match="finite"):
        PaceConfig(rate=float("nan"))


# ------------------------------------------------------------------ smaller ones


def test_the_local_dashboard_listens_on_this_machine_only():
    from metdata.cluster import connect

    with connect("local", workers=1) as client:
        port = int(client.dashboard_link.rsplit(":", 1)[1].split("/")[0])
        assert client.dashboard_link.startswith("http://127.0.0.1:")
        requests.get(f"http://127.0.0.1:{port}/status", timeout=30).raise_for_status()
        other = _an_address_of_this_machine_not_loopback()
        if other:
            with pytest.raises(OSError), socket.create_connection((other, port), timeout=5):
                pass


def _an_address_of_this_machine_not_loopback() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_the_replay_catalog_serves_only_its_images(tmp_path):
    from metdata.emulator.catalog import ReplayCatalog

    root = tmp_path / "catalog"
    (root / "objects").mkdir(parents=True)
    (root / "objects" / "1.json").write_text(json.dumps({"objectID": 1}))
    (root / "images" / "CRDImages").mkdir(parents=True)
    (root / "images" / "CRDImages" / "a.jpg").write_bytes(b"\xff\xd8jpeg")
    (root / "secret.txt").write_text("secret")
    (tmp_path / "outside.txt").write_text("secret")
    (root / "images" / "CRDImages" / "link.jpg").symlink_to(root / "secret.txt")
    catalog = ReplayCatalog(root)
    assert catalog.image("/CRDImages/a.jpg").body == b"\xff\xd8jpeg"
    for path in ("/CRDImages/../../secret.txt", "/../secret.txt", "/../../outside.txt", "/CRDImages/link.jpg"):
        assert catalog.image(path) is None, path


@pytest.mark.parametrize(
    "ids",
    [[1, 2, True], [1, -5], [1, 2.5], [1, "7"], [1, 2**53 + 1], [0], "12", {"a": 1}],
)
def test_a_listing_with_bad_ids_is_refused(ids):
    from metdata.acquire.lookup import checked_ids

    with pytest.raises(ValueError, match=r"not an integer from 1|not a list"):
        checked_ids(ids)


def test_a_listing_with_bad_ids_from_the_api_is_a_clear_error(tmp_path, start_met):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Listing(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"total": 3, "objectIDs": [1, -5, 7]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Listing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        api = f"http://127.0.0.1:{server.server_address[1]}/public/collection/v1"
        result = CliRunner().invoke(main, ["ids", "--api", api, "--data", str(tmp_path / "d"), "--rate", "50"])
    finally:
        server.shutdown()
    assert result.exit_code == 1
    assert "id -5 is not an integer from 1" in result.output
    assert not (tmp_path / "d" / "ids" / "listing.parquet").exists()


def test_a_listing_file_with_bad_ids_is_a_clear_error(tmp_path):
    dataset = Dataset(str(tmp_path))
    dataset.write_table("ids/listing.parquet", pa.table({"objectID": pa.array([3, -5], pa.int64())}))
    with pytest.raises(DatasetError, match=r"listing\.parquet is not a listing metdata took \(id -5 .*metdata ids"):
        read_listing(dataset)
    dataset.write_table("ids/listing.parquet", pa.table({"objectID": ["3"]}))
    with pytest.raises(DatasetError, match="column objectID of type string, not int64"):
        read_listing(dataset)


@pytest.mark.parametrize(
    "foreign",
    [
        pa.table({"foo": [1]}),
        pa.table({"objectID": ["x"], "status": ["ok"]}),
        b"not parquet at all",
    ],
)
def test_another_tools_parquet_in_objects_is_named(tmp_path, foreign):
    root = _root(tmp_path)
    path = root / "objects" / "part-9999999.parquet"
    if isinstance(foreign, bytes):
        path.write_bytes(foreign)
    else:
        pq.write_table(foreign, path)
    dataset = Dataset(str(root))
    for read in (read_index, objects_table):
        with pytest.raises(
            DatasetError, match=r"part-9999999\.parquet is not a metdata table.*Move it out of objects/"
        ):
            read(dataset)
    result = CliRunner().invoke(main, ["images", "--data", str(root)])
    assert result.exit_code == 1 and "part-9999999.parquet is not a metdata table" in result.output


def test_a_failed_write_leaves_no_temporary_file(tmp_path):
    dataset = Dataset(str(tmp_path))
    (tmp_path / "objects" / "_summary.json").mkdir(parents=True)  # the rename cannot replace a folder
    (tmp_path / "objects" / "_summary.json" / "x").write_text("x")
    with pytest.raises(OSError):
        dataset.write_json("objects/_summary.json", {"a": 1})
    assert list(tmp_path.rglob(".*.tmp")) == []


def test_stale_temporary_files_are_removed_when_a_stage_starts(tmp_path):
    dataset = Dataset(str(tmp_path))
    old = tmp_path / "objects" / f".part-0000001.parquet.{'a' * 32}.tmp"
    fresh = tmp_path / "objects" / f".part-0001001.parquet.{'b' * 32}.tmp"
    foreign = tmp_path / "objects" / ".editor-swap.tmp"  # not a name metdata writes: never touched
    old.parent.mkdir()
    for path in (old, fresh, foreign):
        path.write_bytes(b"half")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    os.utime(foreign, (time.time() - 7200, time.time() - 7200))
    dataset.check_writable()
    assert not old.exists() and fresh.exists() and foreign.exists()


def test_a_summary_that_cannot_be_written_does_not_hide_the_failed_shards(tmp_path):
    from metdata.jobs.ingest import ShardsFailed, _save_summary

    dataset = Dataset(str(tmp_path / "d"))
    (tmp_path / "d" / "objects" / "_summary.json" / "x").mkdir(parents=True)  # the write fails as a full disk would
    summary = {"finished_at": "2026-01-01T00:00:00+00:00", "rate": 1.0}
    with pytest.raises(ShardsFailed, match=r"1 shard tasks failed .*Also, the run summary .*could not be written"):
        _save_summary(dataset, summary, ["part-0000001.parquet: boom"])
    result = CliRunner().invoke(main, ["ingest", "--data", str(tmp_path / "d"), "--from-csv", str(CSV)])
    assert (
        result.exit_code == 1 and "could not be written" in result.output and "rerun the same command" in result.output
    )
    assert list((tmp_path / "d").rglob(".*.tmp")) == []
    assert dataset.data_files("objects")  # the shards themselves were written
