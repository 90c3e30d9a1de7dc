"""The image host: realistic JPEGs per object, deterministic, in both renditions."""

from __future__ import annotations

import cv2
import numpy as np
from test_emulator_faults import public_objects

from metdata.emulator.catalog import Synthetic


def decode(content: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(content, np.uint8), cv2.IMREAD_UNCHANGED)


def test_web_large_and_original_renditions(met, http):
    for record in public_objects(met, http, 8):
        small = http.get(record["primaryImageSmall"])
        big = http.get(record["primaryImage"])
        assert small.status_code == big.status_code == 200
        a, b = decode(small.content), decode(big.content)
        assert 500 <= max(a.shape[:2]) <= 800
        assert max(b.shape[:2]) > max(a.shape[:2])
        # same picture, larger: the aspect ratio is kept
        assert abs(a.shape[0] / a.shape[1] - b.shape[0] / b.shape[1]) < 0.02
        if small.headers["Content-Type"] == "image/jpeg":
            assert small.content[:2] == b"\xff\xd8" and 10_000 < len(small.content) < 400_000
        for extra in record["additionalImages"]:
            assert http.get(extra).status_code == 200


def test_images_are_deterministic_and_case_sensitive(start_met, http):
    a, b = start_met(seed=4), start_met(seed=4)
    for record in public_objects(a, http, 5):
        path = record["primaryImageSmall"].removeprefix(a.base)
        assert http.get(a.base + path).content == http.get(b.base + path).content
        wrong_case = path[:-3] + path[-3:].swapcase()
        answer = http.get(a.base + wrong_case)
        assert answer.status_code == 404 and answer.headers["Content-Type"].startswith("text/html")


def test_some_images_are_grayscale_png_or_very_large(http, start_met):
    catalog = Synthetic(30_000, seed=0, mix="dense")
    specs = {}
    for object_id in catalog.ids[:30_000]:
        record = catalog.record(int(object_id))
        if record["isPublicDomain"]:
            path = record["primaryImage"].removeprefix("https://images.metmuseum.org")
            spec = super(Synthetic, catalog).image(path)
            for kind, hit in (
                ("gray", spec.gray),
                ("png", spec.fmt == "png"),
                ("large", spec.scale > 5),
            ):
                if hit:
                    specs.setdefault(kind, path)
    assert set(specs) == {"gray", "png", "large"}
    met = start_met(objects=30_000, seed=0)
    gray = decode(http.get(met.base + specs["gray"]).content)
    assert gray.ndim == 2
    png = http.get(met.base + specs["png"])
    assert png.headers["Content-Type"] == "image/png" and png.content[:4] == b"\x89PNG"
    large = decode(http.get(met.base + specs["large"]).content)
    assert max(large.shape[:2]) > 3_500
