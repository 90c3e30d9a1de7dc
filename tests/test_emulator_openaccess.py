"""The emulator's catalog as the Open Access MetObjects.csv, read back with metdata's own reader."""

from __future__ import annotations

import datetime as dt

from metdata.acquire.opencsv import open_csv
from metdata.emulator.openaccess import COLUMNS


def read_rows(url: str) -> tuple[list[dict], object]:
    """Every row of a MetObjects.csv, read by metdata's own streaming reader; and its source record."""
    with open_csv(url) as reader:
        rows = [r for batch in reader.batches() for r in batch]
    return rows, reader.source


def download(http, url: str, path) -> bytes:
    with http.get(url, stream=True, timeout=60) as answer:
        answer.raise_for_status()
        assert answer.headers["Transfer-Encoding"] == "chunked"  # streamed, never held whole
        with open(path, "wb") as f:
            for chunk in answer.iter_content(1 << 16):
                f.write(chunk)
    return path.read_bytes()


def test_csv_has_the_real_columns_and_the_listing_as_of_its_date(start_met, http, tmp_path):
    met = start_met(objects=2000, seed=4, mix="real")
    assert met.csv_url == f"{met.base}/openaccess/MetObjects.csv"
    body = download(http, met.csv_url, tmp_path / "MetObjects.csv")
    assert body.startswith(b"\xef\xbb\xbfObject Number,Is Highlight,Is Timeline Work,Is Public Domain,Object ID,")
    header = body[3:].split(b"\r\n", 1)[0].decode().split(",")
    assert len(COLUMNS) == 54 and header == list(COLUMNS)
    rows, source = read_rows(met.csv_url)  # by URL: streamed (chunked, no Content-Length), not downloaded first
    assert (source.bytes, source.rows) == (len(body), len(rows))
    assert rows == read_rows(str(tmp_path / "MetObjects.csv"))[0]
    ids = [r["objectID"] for r in rows]
    listed = http.get(f"{met.url}/objects").json()["objectIDs"]
    newer = http.get(f"{met.url}/objects", params={"metadataDate": "2026-08-26"}).json()["objectIDs"]
    assert ids == sorted(set(listed) - set(newer))  # the listing but its newest objects, in id order
    assert 0.02 < 1 - len(ids) / len(listed) < 0.07  # the real CSV misses ~19k of ~503k
    withdrawn = set(met.catalog.withdrawn[0].tolist())
    assert not withdrawn & set(ids)
    for row in rows[:150]:
        record = http.get(f"{met.url}/objects/{row['objectID']}").json()
        for field in ("title", "culture", "country", "classification", "objectName", "medium", "dimensions"):
            assert row[field] == record[field], field
        assert row["isPublicDomain"] is record["isPublicDomain"]
        assert row["objectBeginDate"] == record["objectBeginDate"]
        assert row["artistDisplayName"] == record["artistDisplayName"]
        assert row["constituents"] == record["constituents"]
        assert row["tags"] == record["tags"]
        assert row["primaryImage"] is None and row["measurements"] is None  # no image URLs in the CSV
    assert any("\r\n" in r["dimensions"] for r in rows) and any(r["tags"] and len(r["tags"]) > 1 for r in rows)


def test_csv_date_chooses_its_rows(start_met, http, tmp_path):
    early = start_met(objects=500, seed=4, csv_date=dt.date(2022, 1, 1))
    body = download(http, early.csv_url, tmp_path / "early.csv")
    rows, _ = read_rows(str(tmp_path / "early.csv"))
    assert rows and all(r["metadataDate"] < "2022-01-01" for r in rows)
    assert len(rows) < 500 and body.count(b"\r\n") > len(rows)  # a header line, and dimensions on two lines
    head = http.head(early.csv_url)
    assert head.status_code == 200 and head.content == b""
