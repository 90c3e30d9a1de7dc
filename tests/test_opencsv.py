"""``ingest --from-csv`` by path and by URL: a real HTTP server on 127.0.0.1, moto's S3 server;
streaming in bounded memory, the source's size and sha256, bad input refused with nothing written."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SAMPLES
from csvhost import CsvHost

from metdata.acquire import csvload
from metdata.acquire.opencsv import MET_OBJECTS_CSV_URL, CsvError, open_csv
from metdata.core.statuses import Status
from metdata.jobs.ingest import IngestOptions, load_csv
from metdata.storage import layout
from metdata.storage.dataset import Dataset

SAMPLE = SAMPLES.parent / "MetObjects-sample.csv"
#: The sample's header and rows, to make files of any size in the real format.
HEADER, *ROWS = list(csv.reader(io.StringIO(SAMPLE.read_text(encoding="utf-8"))))
ID = HEADER.index("Object ID")


def rows_for(ids, **columns) -> list[list[str]]:
    """Sample rows (cycled) with these Object IDs and column values."""
    out = []
    for k, object_id in enumerate(ids):
        row = list(ROWS[k % len(ROWS)])
        row[ID] = str(object_id)
        for name, value in columns.items():
            row[HEADER.index(name)] = value
        out.append(row)
    return out


def csv_bytes(rows: list[list[str]], header: list[str] = HEADER) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")  # as the museum's file: CRLF, minimal quoting
    writer.writerow(header)
    writer.writerows(rows)
    return text.getvalue().encode("utf-8")


def write_big_csv(path: Path, megabytes: int) -> int:
    """A MetObjects.csv of about ``megabytes`` MB, written a block at a time; returns its rows."""
    n = 0
    with path.open("wb") as f:
        f.write(csv_bytes([]))
        while f.tell() < megabytes << 20:
            body = csv_bytes(rows_for(range(n + 1, n + 2001)))
            f.write(body[body.index(b"\r\n") + 2 :])
            n += 2000
    return n


def tree(root: Path) -> dict[str, str]:
    """Every file under a root (hidden ones too) and its sha256: what 'nothing written' compares."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


@pytest.fixture
def csv_host():
    # The emulator will serve its own CSV (MetEmulator.csv_url); files made here go through this host.
    host = CsvHost()
    yield host
    host.stop()


def test_a_csv_by_url_loads_as_by_path_and_records_its_size_and_sha256(tmp_path, csv_host):
    data = SAMPLE.read_bytes()
    url = csv_host.serve("/openaccess/MetObjects.csv", data)
    by_path = load_csv(Dataset(str(tmp_path / "p")), IngestOptions(from_csv=str(SAMPLE), shard_size=4))
    by_url = load_csv(Dataset(str(tmp_path / "u")), IngestOptions(from_csv=url, shard_size=4))
    assert by_url["rows"] == by_path["rows"] == 10
    expected = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), "rows": 10}
    for summary, source in ((by_path, str(SAMPLE)), (by_url, url)):
        assert {k: summary["this_run"]["csv"][k] for k in expected} == expected
        assert summary["this_run"]["csv"]["url"] == source
    record = Dataset(str(tmp_path / "u")).read_json(layout.CSV_SOURCE)
    assert record["url"] == url and record["sha256"] == expected["sha256"] and record["new_rows"] == 10
    shards = {k: v for k, v in tree(tmp_path / "p" / "objects").items() if k.endswith(".parquet")}
    assert len(shards) == 3 and shards.items() <= tree(tmp_path / "u" / "objects").items()  # the same bytes
    # GitHub's raw URL redirects to its LFS media host: followed, and the recorded URL is the one given
    raw = csv_host.redirect("/raw/master/MetObjects.csv", "/openaccess/MetObjects.csv")
    again = load_csv(Dataset(str(tmp_path / "r")), IngestOptions(from_csv=raw))
    assert again["this_run"]["csv"]["url"] == raw and again["this_run"]["csv"]["sha256"] == expected["sha256"]


def test_hostile_header_encodings_load_the_same_rows(tmp_path, csv_host):
    """A BOM, LF or CRLF line ends, spaces around names, a header quoted oddly: the same rows."""
    plain = csv_bytes(rows_for([5, 6, 7]))
    variants = {
        "bom": b"\xef\xbb\xbf" + plain,
        "lf": plain.replace(b"\r\n", b"\n"),
        "spaces": plain.replace(b"Object ID,", b'"Object ID" ,', 1).replace(b"Culture,", b"Culture ,", 1),
    }
    expected = load_csv(Dataset(str(tmp_path / "plain")), IngestOptions(from_csv=csv_host.serve("/p.csv", plain)))
    want = Dataset(str(tmp_path / "plain")).read_table("objects/part-0000005.parquet").to_pylist()
    assert expected["rows"] == 3
    for name, body in variants.items():
        root = tmp_path / name
        summary = load_csv(Dataset(str(root)), IngestOptions(from_csv=csv_host.serve(f"/{name}.csv", body)))
        assert summary["rows_by_status"] == {Status.CSV: 3}, name
        assert summary["this_run"]["csv"]["sha256"] == hashlib.sha256(body).hexdigest()
        assert Dataset(str(root)).read_table("objects/part-0000005.parquet").to_pylist() == want, name


def test_an_id_twice_in_the_file_keeps_its_first_row_and_bad_ids_none(tmp_path):
    rows = rows_for([5, 6, 5, 7, 0], Title="first")
    rows[2][HEADER.index("Title")] = "second"
    rows[3][ID] = "not-an-id"
    path = tmp_path / "twice.csv"
    path.write_bytes(csv_bytes(rows))
    summary = load_csv(Dataset(str(tmp_path / "root")), IngestOptions(from_csv=str(path)))
    assert summary["this_run"]["csv"]["rows"] == 5 and summary["this_run"]["csv"]["new_rows"] == 2
    table = Dataset(str(tmp_path / "root")).read_table("objects/part-0000005.parquet")
    assert table["objectID"].to_pylist() == [5, 6] and table["title"].to_pylist() == ["first", "first"]
    assert Dataset(str(tmp_path / "root")).read_table("ids/listing.parquet")["objectID"].to_pylist() == [5, 6]


def _loaded_root(tmp_path: Path) -> Dataset:
    """A root with a listing and CSV shards already: a bad load must leave it exactly so."""
    dataset = Dataset(str(tmp_path / "root"))
    load_csv(dataset, IngestOptions(from_csv=str(SAMPLE), shard_size=4))
    return dataset


def test_bad_sources_are_refused_and_leave_the_root_as_it_was(tmp_path, csv_host):
    dataset = _loaded_root(tmp_path)
    before = tree(tmp_path / "root")
    good = csv_bytes(rows_for(range(900_001, 900_301)))
    cut_row = good[: good.rindex(b"\r\n", 0, len(good) - 2) + 2] + b"999999,False,True\r\n"
    quoted = rows_for(range(900_001, 900_301))
    quoted[-1][HEADER.index("Title")] = "A title\nover two lines"
    in_quotes = csv_bytes(quoted)
    in_quotes = in_quotes[: in_quotes.index(b"A title\n") + 8]  # ends with a line break, inside a quote
    html = b"<!DOCTYPE html><html><head><title>openaccess</title></head><body>MetObjects.csv</body></html>\n"
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
    cases = {
        "an HTML page": (csv_host.serve("/page", html, content_type="text/html"), "answered text/html"),
        "an HTML page said to be text": (
            csv_host.serve("/page.txt", html, content_type="text/plain"),
            "not MetObjects",
        ),
        "an HTML page said to be a CSV, cut": (
            csv_host.serve("/page.csv", b"<!DOCTYPE html><html><body>MetObjects.csv</body></html>"),
            r"is not a CSV \(one line with no rows\): not MetObjects.csv",
        ),
        "a JSON answer": (
            csv_host.serve("/api", b'{"message": "Not Found"}\n', content_type="application/json"),
            "json",
        ),
        "an image": (csv_host.serve("/img", png, content_type="image/png"), "answered image/png"),
        "image bytes said to be a CSV": (csv_host.serve("/img.csv", png), "not UTF-8"),
        "an empty body": (csv_host.serve("/empty.csv", b""), "is empty"),
        "a Git LFS pointer": (
            csv_host.serve("/lfs.csv", b"version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 1\n"),
            "Git LFS pointer",
        ),
        "a header and no rows": (csv_host.serve("/header.csv", csv_bytes([])), "no rows"),
        "a header and blank lines": (csv_host.serve("/blank.csv", csv_bytes([]) + b"\r\n\r\n"), "no rows"),
        "a 404": (csv_host.base + "/nowhere/MetObjects.csv", "HTTP 404"),
        "an HTTP 500": (csv_host.serve("/broken", b"oops", status=500, content_type="text/plain"), "HTTP 500"),
        "a cut connection": (csv_host.serve("/cut.csv", good, cut_after=len(good) // 2), "broke off"),
        "a cut file without a length": (
            csv_host.serve("/cut2.csv", good[: len(good) - 40], length=False),
            "ends without a line break|not a whole",
        ),
        "a last row of too few fields": (csv_host.serve("/short.csv", cut_row), "not a whole MetObjects.csv"),
        "a cut inside a quoted value": (csv_host.serve("/quoted.csv", in_quotes), "not a whole MetObjects.csv"),
        "a redirect to file://": (csv_host.redirect("/to-file", "file:///etc/passwd"), r"only http\(s\) redirects"),
        "a redirect to ftp://": (csv_host.redirect("/to-ftp", "ftp://127.0.0.1/MetObjects.csv"), r"only http\(s\)"),
        "a redirect loop": (csv_host.redirect("/loop", "/loop"), "redirects more than"),
        "an unreachable host": ("http://127.0.0.1:9/MetObjects.csv", "cannot reach"),
        "a missing file": (str(tmp_path / "no-such.csv"), "no such file"),
        "a folder": (str(tmp_path), "is a folder"),
        "another scheme": ("ftp://127.0.0.1/MetObjects.csv", "not ftp://"),
        "a URL urlsplit cannot read": ("http://[::1/MetObjects.csv", "is not a URL"),
        "a redirect to such a URL": (csv_host.redirect("/to-bad", "http://[::1"), "Invalid IPv6 URL"),
    }
    for what, (url, message) in cases.items():
        with pytest.raises(CsvError, match=message):
            load_csv(dataset, IngestOptions(from_csv=url, shard_size=4))
        assert tree(tmp_path / "root") == before, what
    # the same file whole loads: what made each case fail was the fault, not the file
    whole = load_csv(dataset, IngestOptions(from_csv=csv_host.serve("/whole.csv", good), shard_size=4))
    assert whole["rows"] == 310


def test_a_body_of_unstated_size_is_loaded_and_said_so(tmp_path, csv_host, caplog):
    good = csv_bytes(rows_for(range(900_001, 900_301)))
    half = good[: good.index(b"\r\n", len(good) // 2) + 2]  # closed at a line break: reads as a whole file
    unstated = load_csv(
        Dataset(str(tmp_path / "a")), IngestOptions(from_csv=csv_host.serve("/u.csv", half, length=False))
    )
    assert unstated["this_run"]["csv"]["size_stated"] is False
    assert "states neither its length nor chunked encoding" in caplog.text
    stated = load_csv(Dataset(str(tmp_path / "b")), IngestOptions(from_csv=csv_host.serve("/s.csv", good)))
    assert stated["this_run"]["csv"]["size_stated"] is True
    local = tmp_path / "MetObjects.csv"
    local.write_bytes(good)
    assert load_csv(Dataset(str(tmp_path / "c")), IngestOptions(from_csv=str(local)))["this_run"]["csv"]["size_stated"]


def test_the_size_bound_names_itself_and_the_override(tmp_path, csv_host):
    dataset = _loaded_root(tmp_path)
    before = tree(tmp_path / "root")
    body = csv_bytes(rows_for(range(1, 200)))
    announced = csv_host.serve("/big.csv", body)
    streamed = csv_host.serve("/big-stream.csv", body, length=False)  # no length: refused while reading
    for url in (announced, streamed, str(tmp_path / "big.csv")):
        (tmp_path / "big.csv").write_bytes(body)
        with pytest.raises(CsvError, match=r"bound of 10,000 bytes.*--csv-max-mb"):
            load_csv(dataset, IngestOptions(from_csv=url, csv_max_bytes=10_000))
        assert tree(tmp_path / "root") == before
    sample_ids = {int(r[ID]) for r in ROWS}
    rows = load_csv(dataset, IngestOptions(from_csv=streamed, csv_max_bytes=len(body)))["rows"]
    assert rows == len(sample_ids | set(range(1, 200)))


def test_a_cut_after_shards_were_staged_publishes_none_of_them(tmp_path, csv_host):
    """The file is read in 1 MB blocks: with small shards, a cut near the end of a 3 MB file comes
    after many shards were written, staged; none of them is published, none stays behind."""
    dataset = _loaded_root(tmp_path)
    before = tree(tmp_path / "root")
    path = tmp_path / "three.csv"
    rows = write_big_csv(path, 3)
    data = path.read_bytes()
    url = csv_host.serve("/three.csv", data, cut_after=len(data) - 1000)
    with pytest.raises(CsvError, match="broke off"):
        load_csv(dataset, IngestOptions(from_csv=url, shard_size=50))
    assert tree(tmp_path / "root") == before
    whole = load_csv(dataset, IngestOptions(from_csv=csv_host.serve("/whole.csv", path), shard_size=50))
    assert whole["this_run"]["csv"]["rows"] == rows and whole["this_run"]["csv"]["bytes"] == len(data)
    assert len(dataset.data_files("objects")) == 3 + -(-rows // 50)


def test_staged_shards_of_a_failed_or_killed_load_are_removed(tmp_path):
    dataset = Dataset(str(tmp_path))
    load = "a" * 32

    def batches():
        yield [r for r in (_row(i) for i in range(1, 40))]
        raise CsvError("cut")

    with pytest.raises(CsvError):
        csvload.write_csv_shards(dataset, batches(), 10, load)
    staged = csvload.staged_csv_shards(dataset, load)
    assert [first for _, first in staged] == [1, 11, 21]  # written while reading, all hidden
    assert dataset.data_files("objects") == []
    for name, _ in staged:  # two hours old: a slow load's, still staging; the stale-file sweep keeps them
        os.utime(dataset.path(name), (time.time() - 7200, time.time() - 7200))
    dataset.check_writable()
    assert csvload.staged_csv_shards(dataset, load) == staged
    # a killed load's leftovers go at the next load (it holds the lease), and are never published
    summary = load_csv(dataset, IngestOptions(from_csv=str(SAMPLE)))
    assert summary["rows"] == 10 and csvload.staged_csv_shards(dataset) == []
    assert not [p for p in (tmp_path / "objects").iterdir() if p.name.startswith(".")]


def _row(object_id: int) -> dict:
    from metdata.acquire.csvrows import csv_row

    return csv_row(dict(zip(HEADER, rows_for([object_id])[0], strict=True)))


def test_open_csv_reads_the_source_once_with_its_hash():
    with open_csv(str(SAMPLE), batch_rows=3) as reader:
        sizes = [len(batch) for batch in reader.batches()]
    assert sizes == [3, 3, 3, 1]
    assert reader.source.sha256 == hashlib.sha256(SAMPLE.read_bytes()).hexdigest()
    assert reader.source.bytes == SAMPLE.stat().st_size and reader.source.rows == 10


def test_cli_names_the_public_url_and_prints_the_source(tmp_path, csv_host):
    from click.testing import CliRunner

    from metdata.cli import main

    runner = CliRunner()
    help_text = runner.invoke(main, ["ingest", "--help"]).output
    assert MET_OBJECTS_CSV_URL in help_text.split() and "2023-06-17" in help_text
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert MET_OBJECTS_CSV_URL in readme and "2023-06-17" in readme
    url = csv_host.serve("/MetObjects.csv", SAMPLE.read_bytes())
    result = runner.invoke(main, ["ingest", "--data", str(tmp_path / "a"), "--from-csv", url])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)["this_run"]["csv"]
    assert printed["sha256"] == hashlib.sha256(SAMPLE.read_bytes()).hexdigest() and printed["url"] == url
    for args, message in (
        (["--from-csv", csv_host.serve("/p", b"<html></html>", content_type="text/html")], "answered text/html"),
        (["--from-csv", url, "--csv-max-mb", "0"], "0 is not in the range"),
        (["--from-csv", ""], "'' is empty: give MetObjects.csv's path or URL"),  # not a full crawl
        (["--from-csv", "  "], "is empty"),
        (["--target", "", "--since", "2020-01-01"], "'' is empty"),
    ):
        result = runner.invoke(main, ["ingest", "--data", str(tmp_path / "b"), *args])
        assert result.exit_code in (1, 2) and message in result.output, result.output
        assert not (tmp_path / "b" / "objects").exists() or not any((tmp_path / "b" / "objects").iterdir())


@pytest.mark.slow
def test_a_csv_on_s3_loads_into_an_s3_root_all_or_nothing(s3, csv_host):
    import s3fs

    root, options = s3
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": options["endpoint_url"]}, key="testing", secret="testing")
    fs.pipe("metdata-test/source/MetObjects.csv", SAMPLE.read_bytes())
    dataset = Dataset(root, options)
    summary = load_csv(
        dataset,
        IngestOptions(from_csv="s3://metdata-test/source/MetObjects.csv", csv_storage_options=options, shard_size=4),
    )
    assert (
        summary["rows"] == 10
        and summary["this_run"]["csv"]["sha256"] == hashlib.sha256(SAMPLE.read_bytes()).hexdigest()
    )
    shards = dataset.data_files("objects")
    assert len(shards) == 3 and csvload.staged_csv_shards(dataset) == []

    def listing() -> list[str]:
        fs.invalidate_cache()
        return sorted(fs.find("metdata-test/dataset"))

    before = listing()
    data = csv_bytes(rows_for(range(500_000, 504_000)))  # > 1 MB: shards staged on S3 before the cut
    for url, message in (
        (csv_host.serve("/cut.csv", data, cut_after=len(data) - 100), "broke off"),
        ("s3://metdata-test/source/missing.csv", "no such file"),
    ):
        with pytest.raises(CsvError, match=message):
            load_csv(dataset, IngestOptions(from_csv=url, csv_storage_options=options, shard_size=500))
        assert listing() == before


#: One CSV load by URL in a process of its own: its peak RSS (sampled every 5 ms) over the RSS before
#: the load (after a warm-up load of the sample: imports, first allocations), and the load's record.
_MEASURE_LOAD = """
import json, sys, threading
import psutil
from metdata.storage.dataset import Dataset
from metdata.jobs.ingest import IngestOptions, load_csv
sample, url, root = sys.argv[1:4]
load_csv(Dataset(root + "-warm"), IngestOptions(from_csv=sample))
process = psutil.Process()
before = peak = process.memory_info().rss
done = threading.Event()
def sample_rss():
    global peak
    while not done.wait(0.005):
        peak = max(peak, process.memory_info().rss)
sampler = threading.Thread(target=sample_rss, daemon=True)
sampler.start()
summary = load_csv(Dataset(root), IngestOptions(from_csv=url))
done.set()
sampler.join(5)
print(json.dumps({"growth": peak - before, "csv": summary["this_run"]["csv"], "rows": summary["rows"]}))
"""


@pytest.mark.slow
def test_a_large_csv_by_url_streams_in_bounded_memory(tmp_path, csv_host):
    """~24 MB and ~96 MB by URL, each loaded in a fresh process: the peak RSS growth stays flat in the
    file's size (the whole file, or a cache that grows with it, would add ~70 MB from one to the other)."""
    measured = {}
    for megabytes in (24, 96):
        path = tmp_path / f"MetObjects-{megabytes}.csv"
        rows = write_big_csv(path, megabytes)
        size = path.stat().st_size
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        url = csv_host.serve(f"/openaccess/{megabytes}/MetObjects.csv", path)
        done = subprocess.run(
            [sys.executable, "-c", _MEASURE_LOAD, str(SAMPLE), url, str(tmp_path / f"root-{megabytes}")],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        result = json.loads(done.stdout.strip().splitlines()[-1])
        record = result["csv"]
        assert record["bytes"] == size and record["sha256"] == digest.hexdigest() and record["rows"] == rows
        assert result["rows"] == rows
        measured[megabytes] = (size, result["growth"])
        path.unlink()
    (small, small_growth), (large, large_growth) = measured[24], measured[96]
    logging.getLogger(__name__).info(
        "peak RSS growth: %.0f MB for a %.0f MB file, %.0f MB for a %.0f MB file",
        small_growth / 2**20,
        small / 2**20,
        large_growth / 2**20,
        large / 2**20,
    )
    # flat in the size, within a generous bound: the listing's 8 bytes an id and the set of ids seen do grow
    assert large_growth - small_growth < 0.35 * (large - small), measured  # reading it whole: > 1.0
    assert large_growth < 200 << 20, measured  # 30-40 MB measured (pyarrow, the shards' batches)


@pytest.mark.slow
def test_csv_rows_are_looked_up_once_by_the_images_stage_and_never_by_ingest(
    start_met, dask_client, tmp_path, csv_host
):
    """After --from-csv, ``ingest`` looks up only the ids without a CSV row; the images stage looks
    up the CSV rows it selects, each once, and none it does not select; a rerun looks up nothing."""
    from urllib.parse import urlsplit

    from metdata.acquire.lookup import LookupOptions
    from metdata.images.images import ImageOptions
    from metdata.jobs import images as job
    from metdata.jobs.ingest import run, take_listing
    from metdata.net.pacing import PaceConfig

    met = start_met(objects=120)
    fast = PaceConfig(rate=300, cooldown=0.5)
    lookup = LookupOptions(api=met.url, timeout=2.0, backoff=0.05, max_in_flight=8)
    dataset = Dataset(str(tmp_path))
    listed = take_listing(dataset, lookup, fast)
    csv_ids = listed[::2]  # half the catalog comes from the CSV
    url = csv_host.serve("/MetObjects.csv", csv_bytes(rows_for(csv_ids, **{"Is Public Domain": "True"})))
    options = IngestOptions(lookup=lookup, pace=fast, shard_size=25)
    load_csv(dataset, IngestOptions(from_csv=url, shard_size=25))

    def lookups() -> dict[int, int]:
        return {i: met._attempts[f"/public/collection/v1/objects/{i}"] for i in listed}

    summary = run(dask_client, dataset, options)
    assert summary["this_run"]["ids_looked_up"] == len(listed) - len(csv_ids)
    after_ingest = lookups()
    assert {i for i, n in after_ingest.items() if n} == set(listed) - set(csv_ids)
    assert max(after_ingest.values()) == 1
    assert run(dask_client, dataset, options)["this_run"]["ids_looked_up"] == 0  # a rerun: nothing again

    chosen = csv_ids[: len(csv_ids) // 3]
    where = f"status = 'csv' AND objectID <= {chosen[-1]}"
    images = ImageOptions(
        lookup=lookup, size=32, chunk=16, allowed_hosts=frozenset({"images.metmuseum.org", urlsplit(met.url).netloc})
    )
    for _ in range(2):  # the second run finds every chunk done
        job.run(dask_client, dataset, images, fast, job.plan(dataset, images, where=where))
        by_images = {i: n - after_ingest[i] for i, n in lookups().items()}
        assert {i for i, n in by_images.items() if n} == set(chosen)
        assert max(by_images.values()) == 1
