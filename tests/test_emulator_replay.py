"""Replay catalogs: recorded responses served verbatim, tested with the real samples."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
from conftest import SAMPLES

from metdata.emulator import EmulatorConfig, MetEmulator


@pytest.fixture
def catalog(tmp_path):
    (tmp_path / "objects").mkdir()
    for sample in SAMPLES.glob("*.json"):
        shutil.copy(sample, tmp_path / "objects" / sample.name)
    image = tmp_path / "images" / "CRDImages" / "as" / "web-large" / "DP251139.jpg"
    image.parent.mkdir(parents=True)
    image.write_bytes(cv2.imencode(".jpg", np.full((60, 40, 3), 200, np.uint8))[1].tobytes())
    return tmp_path


def test_replay_serves_recorded_bytes_with_image_urls_rewritten(start_met, http, catalog):
    met = start_met(catalog=catalog)
    listing = http.get(f"{met.url}/objects").json()
    assert sorted(listing["objectIDs"]) == sorted(int(p.stem) for p in SAMPLES.glob("*.json"))
    for sample in SAMPLES.glob("*.json"):
        served = http.get(f"{met.url}/objects/{sample.stem}").content
        assert served == sample.read_bytes().replace(b"https://images.metmuseum.org", met.base.encode())
    record = json.loads(http.get(f"{met.url}/objects/24").content)
    assert len(record) == 56 and "measurements" not in record  # an old record, as recorded


def test_replay_images_and_missing_images(start_met, http, catalog):
    met = start_met(catalog=catalog)
    scroll = http.get(f"{met.url}/objects/45734").json()
    answer = http.get(scroll["primaryImageSmall"])
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "image/jpeg"
    assert answer.content == (catalog / "images/CRDImages/as/web-large/DP251139.jpg").read_bytes()
    missing = http.get(scroll["primaryImage"])  # the original was not recorded
    assert missing.status_code == 404 and missing.headers["Content-Type"].startswith("text/html")
    assert http.get(scroll["primaryImageSmall"].replace(".jpg", ".JPG")).status_code == 404
    assert http.get(f"{met.base}/CRDImages/../../objects/24.json").status_code == 404


def test_replay_listing_filters(start_met, http, catalog):
    met = start_met(catalog=catalog)
    asian = http.get(f"{met.url}/objects", params={"departmentIds": "6"}).json()
    assert sorted(asian["objectIDs"]) == [45734, 47892, 51868]
    recent = http.get(f"{met.url}/objects", params={"metadataDate": "2021-01-01"}).json()
    assert sorted(recent["objectIDs"]) == sorted(
        int(p.stem) for p in SAMPLES.glob("*.json") if json.loads(p.read_text())["metadataDate"] >= "2021-01-01"
    )
    assert http.get(f"{met.url}/objects/1").json() == {"message": "ObjectID not found"}


def test_replay_search(start_met, http, catalog):
    met = start_met(catalog=catalog)
    search = met.url.replace("/v1", "/v1.1") + "/search"
    body = http.get(search, params={"q": "Quail"}).json()
    assert body == {"total": 1, "objectIDs": [45734]}
    assert http.get(search, params={"q": "*", "hasImages": "true", "departmentId": "6"}).json()["total"] == 3


def test_replay_accepts_a_flat_folder_and_rejects_an_empty_one(tmp_path):
    met = MetEmulator(EmulatorConfig(catalog=SAMPLES))
    assert len(met.catalog) == len(list(SAMPLES.glob("*.json")))
    met.stop()
    with pytest.raises(ValueError, match=r"no <objectID>\.json files"):
        MetEmulator(EmulatorConfig(catalog=tmp_path))


def test_cli_prints_the_url_first_and_stops_on_sigterm(catalog):
    proc = subprocess.Popen(
        [sys.executable, "-m", "metdata", "fake-met", "--catalog", str(catalog)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/public/collection/v1")
        import requests

        assert requests.get(f"{url}/objects/24", timeout=5).json()["objectID"] == 24
        csv_url = proc.stdout.readline().strip()  # then the catalog as the Open Access CSV
        assert csv_url == url.removesuffix("/public/collection/v1") + "/openaccess/MetObjects.csv"
        assert requests.get(csv_url, timeout=5).content.startswith(b"\xef\xbb\xbfObject Number,")
    finally:
        proc.terminate()
    assert proc.wait(timeout=10) == 0


def test_cli_rejects_a_bad_catalog(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "metdata", "fake-met", "--catalog", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "no <objectID>.json files" in result.stderr and result.stdout == ""
