"""The exploration report: pure counting on hand-made tables, the template's escaping, and the command on an
emulated dataset."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
from click.testing import CliRunner
from test_images import build, image_options, ingested

from metdata.cli import main
from metdata.core import counts as ct
from metdata.core import figures
from metdata.core.statuses import Status
from metdata.core.targets import builtin, label_table
from metdata.explore.explore import FIGURES, report

PNG = "data:image/png;base64,"


def objects(**columns) -> pa.Table:
    n = len(next(iter(columns.values())))
    defaults = {
        "objectID": list(range(1, n + 1)),
        "status": [Status.OK] * n,
        "error": [None] * n,
        "department": ["Asian Art"] * n,
        "isPublicDomain": [True] * n,
        "primaryImageSmall": ["http://x/a.jpg"] * n,
        "classification": [""] * n,
        "objectName": [""] * n,
        "culture": [""] * n,
        "country": [None] * n,
        "artistNationality": [None] * n,
    }
    return pa.table({**defaults, **columns})


def test_collection_counts_count_records_images_and_departments():
    table = objects(
        status=[Status.OK, Status.OK, Status.CSV, Status.NOT_VALID, Status.TRANSIENT],
        department=["Asian Art", "Asian Art", "Egyptian Art", None, None],
        isPublicDomain=[True, False, True, None, None],
        primaryImageSmall=["u", "", None, None, None],
    )
    counts = ct.collection_counts(table)
    assert (counts["objects"], counts["records"], counts["with_image_url"], counts["public_domain"]) == (5, 3, 1, 2)
    assert counts["statuses"] == {Status.OK: 2, Status.CSV: 1, Status.NOT_VALID: 1, Status.TRANSIENT: 1}
    assert list(counts["departments"]) == ["Asian Art", "Egyptian Art"]  # largest first; failed rows left out
    assert counts["departments"]["Asian Art"] == {"records": 2, "with_image_url": 1, "public_domain": 1}


def test_classifications_raw_and_merged():
    table = objects(
        classification=["Metal", "Metal-Ornaments", "Metalwork", "Ceramics-Porcelain", "Glass", None, ""],
        status=[Status.OK] * 6 + [Status.OK],
    )
    raw, merged = ct.classification_counts(table, builtin("object-type"))
    assert raw == Counter(
        {"(none)": 2, "Metal": 1, "Metal-Ornaments": 1, "Metalwork": 1, "Ceramics-Porcelain": 1, "Glass": 1}
    )
    assert merged == Counter({"Metalwork": 3, "(none)": 2, "Ceramics": 1, "Glass": 1})
    assert sum(raw.values()) == sum(merged.values()) == table.num_rows


def test_target_counts_show_the_rules_effect():
    table = objects(
        classification=["Paintings", "Paintings", "", "Codices", "Paintings", "Ceramics"],
        objectName=["", "", "Painting", "Illustrated album leaf", "", "Jar"],
        culture=["Chinese", "", "American", "", "", "China"],
        country=[None, None, None, "India", None, None],
        artistNationality=[None, "German", None, None, None, None],
    )
    raw, classes = ct.target_counts(table, builtin("painting-culture"))
    assert raw == Counter({"Chinese": 1, "German": 1, "American": 1, "India": 1, "(none)": 1})  # the jar is out
    assert classes == Counter({"China": 1, "America": 1, "India": 1, "(no class)": 2})
    labels = label_table(table, builtin("painting-culture")).to_pylist()
    assert labels == ["China", None, "America", "India", None, None]


def test_failures_group_errors_by_cause():
    table = pa.table(
        {
            "status": [Status.OK, Status.BAD_IMAGE, Status.BAD_IMAGE, Status.NOT_FOUND, Status.TRANSIENT],
            "error": [
                None,
                "OpenCV could not decode 8292 bytes (starts b'\\xff\\xd8')",
                "OpenCV could not decode 45923 bytes (starts b'\\x89PNG')",
                "HTTP 404",
                "ConnectionError: http://127.0.0.1:4321/CRDImages/ep/web-large/DT1.jpg reset",
            ],
        }
    )
    found = ct.failures(table)
    assert [(f["status"], f["count"]) for f in found] == [
        (Status.BAD_IMAGE, 2),
        (Status.NOT_FOUND, 1),
        (Status.TRANSIENT, 1),
    ]
    assert found[0]["reason"] == "OpenCV could not decode N bytes (starts b'…')" and found[0]["reason_count"] == 2
    assert found[1]["reason"] == "HTTP 404"
    assert found[2]["reason"] == "ConnectionError: <url> reset"


def test_top_n_and_image_sizes():
    assert ct.top_n(Counter(a=5, b=2, c=2, d=1), 3) == ([("a", 5), ("b", 2), ("c", 2)], 1, 1)
    sizes = ct.image_sizes(
        pa.table(
            {
                "status": [Status.OK, Status.OK, Status.TOO_LARGE, Status.OK],
                "width": pa.array([800, 400, None, None], pa.int32()),
                "height": pa.array([400, 800, None, 10], pa.int32()),
            }
        )
    )
    assert sizes["width"].tolist() == [800, 400] and sizes["ratio"].tolist() == [2.0, 0.5]


def test_grid_samples_take_only_valid_slots_seeded():
    valid = np.zeros(1000, bool)
    valid[::7] = True
    chosen = ct.random_slots(valid, 48, seed=3)
    assert len(chosen) == 48 == len(set(chosen)) and all(valid[s] for s in chosen) and chosen == sorted(chosen)
    assert chosen == ct.random_slots(valid, 48, seed=3) != ct.random_slots(valid, 48, seed=4)
    assert ct.random_slots(np.zeros(5, bool), 4, seed=0) == []
    labels = ["China", None, "Japan", "China", "India", "China", None, "Japan"]
    picks = ct.class_slots(labels, ["America", "China", "India", "Japan"], 2, seed=0)
    assert {c: len(p) for c, p in picks.items()} == {"America": 0, "China": 2, "India": 1, "Japan": 2}
    assert all(labels[i] == c for c, p in picks.items() for i in p)
    assert ct.grid_classes(builtin("painting-culture"), [], 8) == ["America", "China", "India", "Japan"]


def test_drawing_copes_with_nothing_to_show(tmp_path):
    empty = {"width": np.array([]), "height": np.array([]), "ratio": np.array([])}
    for fig in (
        figures.draw_pair(Counter(), Counter(a=1), ("left", "right"), 10),
        figures.draw_statuses({Status.OK: 3}, {}),
        figures.draw_sizes(empty),
        figures.draw_grid(np.zeros((0, 8, 8, 3), np.uint8), [], 8, "none"),
        figures.draw_class_grid({"China": (np.zeros((0, 8, 8, 3), np.uint8), [])}, {}, 8, "none"),
        figures.draw_curves([{"epoch": 0, "accuracy": 0.5, "loss": 1.2}]),  # a run without validation
        figures.draw_confusion(np.array([[3, 1], [0, 2]]), ["China", "Japan"]),
    ):
        assert figures.png_bytes(fig).startswith(b"\x89PNG")


def test_the_report_escapes_every_value_it_shows():
    bad = "<script>x</script>"
    figure = report.Figure("collection", b"\x89PNG", bad)
    sections = {
        "collection": {"rows": [(bad, 12345), ("valid images", True)], "figure": figure},
        "statuses": {"objects": [(Status.OK, 1, "100.0 %", bad)], "notes": [bad], "images": None, "figure": figure},
        "classifications": {"raw": 1, "merge": bad, "merged": 1, "figure": figure},
        "target": {
            "name": bad,
            "description": bad,
            "selected": 1,
            "in_class": 1,
            "rows": [(bad, 1, "-")],
            "figure": figure,
        },
        "images": {"store": None, "notes": [bad]},
    }
    page = report.render(report.Report(sections), url=bad, top=20, seed=0, made="now")
    assert "<script>" not in page
    # the URL twice, a department and a reason, two notes, merge, the target's name twice, its description and
    # a class; each of the four figures' captions twice (alt and figcaption)
    assert page.count("&lt;script&gt;x&lt;/script&gt;") == 2 + 2 + 2 + 1 + 2 + 2 + 4 * 2
    assert "<td>12,345</td>" in page and "<td>True</td>" in page and PNG + "iVBORw==" in page


def parquet(path) -> pa.Table:
    return pads.dataset(str(path), format="parquet").to_table(columns=["status"])


def section(page: str, heading: str) -> str:
    return page.split(heading, 1)[1].split("<h2>", 1)[0]


def test_report_before_and_after_the_images(start_met, dask_client, tmp_path, caplog):
    met = start_met(objects=400, seed=12, fault_rate=0.06, faults=frozenset({"not-valid", "image-404"}))
    root = tmp_path / "data"
    dataset = ingested(met, dask_client, root)
    runner = CliRunner()

    # metadata only: the metadata figures, and a report that says what is missing and how to build it
    early = tmp_path / "early"
    result = runner.invoke(main, ["explore", "--data", str(root), "--out", str(early), "--seed", "1"])
    assert result.exit_code == 0, result.output
    page = (early / "report.html").read_text()
    pngs = sorted(p.stem for p in early.glob("*.png"))
    assert pngs == ["classifications", "collection", "statuses", "target"]
    assert page.count(PNG) == len(pngs)
    assert "No images store" in page and f"metdata images --data {root}" in page
    warned = [
        r.getMessage() for r in caplog.records if r.levelname == "WARNING" and r.name == "metdata.explore.explore"
    ]
    assert any("No images store" in m and "metdata images --data" in m for m in warned)

    build(dask_client, dataset, image_options(met))
    out = tmp_path / "report"
    args = ["--data", str(root), "--out", str(out), "--seed", "1", "--top", "15"]
    result = runner.invoke(main, ["explore", *args])
    assert result.exit_code == 0, result.output
    page = (out / "report.html").read_text()
    pngs = sorted(p.stem for p in out.glob("*.png"))
    assert pngs == sorted(FIGURES) and page.count(PNG) == len(pngs)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left

    # the counts shown are the Parquet's
    object_statuses = Counter(parquet(root / "objects")["status"].to_pylist())
    image_statuses = Counter(parquet(root / "images")["status"].to_pylist())
    assert set(object_statuses) >= {Status.OK, Status.NOT_VALID} and set(image_statuses) >= {
        Status.OK,
        Status.NOT_FOUND,
    }
    glance = section(page, "The collection at a glance")
    assert f"<td>ids looked up (rows of objects/)</td><td>{sum(object_statuses.values()):,}</td>" in glance
    assert f"<td>records (status ok or csv)</td><td>{object_statuses['ok']:,}</td>" in glance
    statuses = section(page, "What was fetched")
    ingestion, images = statuses.split("<h3>Images", 1)
    for status, n in object_statuses.items():
        assert f"<td>{status}</td><td>{n:,}</td>" in ingestion
    for status, n in image_statuses.items():
        assert f"<td>{status}</td><td>{n:,}</td>" in images
    assert "HTTP 404" in images  # and why they failed

    # the per-class grid has every class of the target
    grid = page.split("Examples per class", 1)[1]
    for cls in builtin("painting-culture").classes:
        assert re.search(rf"<td>{cls}</td><td>[1-9]", grid), cls
    summary = result.output[result.output.index("{") :]
    assert f'"objects": {sum(object_statuses.values())}' in summary and str(out / "report.html") in summary

    # a store that is not there: its figures go, so none contradicts the new report
    result = runner.invoke(main, ["explore", *args, "--store", "other.zarr"])
    assert result.exit_code == 0, result.output
    assert sorted(p.stem for p in out.glob("*.png")) == ["classifications", "collection", "statuses", "target"]
    assert "metdata images --data" in (out / "report.html").read_text()


def test_bad_input_exits_with_the_fix(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["explore", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and "metdata ingest" in result.output
    result = runner.invoke(main, ["explore", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--target", "x"])
    assert result.exit_code == 1 and "unknown target" in result.output
    result = runner.invoke(main, ["explore", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--top", "0"])
    assert result.exit_code == 2


def test_targets_without_fixed_classes_take_the_most_frequent():
    labels = ["Glass"] * 3 + ["Metalwork"] * 5 + [None] + ["Wood"]
    assert ct.grid_classes(builtin("object-type"), labels, 2) == ["Metalwork", "Glass"]
