"""Target rules on the real samples and on edge cases; user-defined targets and their errors."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from conftest import SAMPLES

from metdata.core.targets import TargetError, builtin, count, label_table, parse, resolve


def sample(object_id: int) -> dict:
    return json.loads((SAMPLES / f"{object_id}.json").read_text())


def test_painting_culture_on_the_real_samples():
    target = builtin("painting-culture")
    labels = {int(p.stem): target.label(json.loads(p.read_text())) for p in SAMPLES.glob("*.json")}
    assert labels[454811] == "India"  # Islamic Art, culture "", country "India", "Codices"
    assert labels[45734] == "Japan"  # a Japanese hanging scroll
    assert labels[51868] == "China"  # a Chinese album leaf
    assert labels[436286] is None  # a European painting: culture "", artistNationality "German"
    assert labels[452641] is None  # an Iranian manuscript folio: a painting, not of the four
    assert labels[47892] is None  # a Chinese jar: not a painting
    assert {i for i, label in labels.items() if label} == {454811, 45734, 51868}


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"classification": "", "objectName": "Painting", "culture": "American"}, "America"),
        ({"classification": "Paintings", "culture": "", "country": "United States"}, "America"),
        ({"classification": "Paintings", "culture": "", "artistNationality": "American"}, "America"),
        ({"classification": "Paintings", "culture": "India (Basohli, Jammu)"}, "India"),
        ({"classification": "Paintings", "culture": "North Indian"}, "India"),
        ({"classification": "Paintings", "culture": "  Chinese "}, "China"),
        ({"classification": "Paintings", "culture": "Japanese", "country": "China"}, "Japan"),
        ({"classification": "Paintings", "culture": "Korea"}, None),  # culture wins over fallbacks
        ({"classification": "Ceramics", "objectName": "Jar", "culture": "China"}, None),
        ({"classification": None, "objectName": "hanging scroll", "culture": "Japan"}, "Japan"),
        ({"classification": "Paintings"}, None),
    ],
)
def test_painting_culture_edge_cases(record, expected):
    assert builtin("painting-culture").label(record) == expected


def test_object_type_merges_aliases():
    target = builtin("object-type")
    values = ["Metalwork", "Metal", "Metal-Ornaments", "Ceramics-Porcelain", "Paintings", ""]
    assert [target.label({"classification": v}) for v in values] == [
        "Metalwork", "Metalwork", "Metalwork", "Ceramics", "Paintings", None,
    ]  # fmt: skip


def test_a_user_target_from_a_file(tmp_path):
    path = tmp_path / "period.toml"
    path.write_text(
        """
name = "edo-vs-qing"
fields = ["period"]
min_count = 2
[select]
department = { exact = ["Asian Art"] }
[aliases]
"edo" = "Edo period (1615–1868)"
[[rules]]
class = "Edo"
regex = "^edo period"
[[rules]]
class = "Qing"
contains = ["qing dynasty"]
"""
    )
    target = resolve(str(path))
    records = [
        {"department": "Asian Art", "period": "Edo period (1615–1868)"},
        {"department": "Asian Art", "period": "edo"},
        {"department": "Asian Art", "period": "Qing dynasty (1644–1911)"},
        {"department": "Asian Art", "period": "Ming dynasty"},
        {"department": "Arms and Armor", "period": "Edo period (1615–1868)"},
    ]
    assert [target.label(r) for r in records] == ["Edo", "Edo", "Qing", None, None]
    counts = count(target, records)
    assert counts == {"Edo": 2, "Qing": 1} and target.classes == ("Edo", "Qing")
    with pytest.raises(TargetError, match="below min_count=2"):
        target.check_counts(counts)
    with pytest.raises(TargetError, match="no object falls in class Qing"):
        target.check_counts({"Edo": 5})


def test_label_table_labels_each_row_as_label_does():
    columns = ["classification", "objectName", "culture", "country", "artistNationality", "department", "period"]
    samples = [json.loads(p.read_text()) for p in sorted(SAMPLES.glob("*.json"))]
    edges = [
        {"classification": None, "objectName": "hanging scroll", "culture": "Japan"},
        {"classification": "Paintings", "culture": "  Chinese ", "department": "Asian Art", "period": "edo"},
        {"classification": "Paintings", "culture": "", "country": "United States"},
        {"classification": "Metal-Ornaments", "culture": "China", "department": "Asian Art", "period": "Qing dynasty"},
        {"classification": "", "objectName": "", "culture": None},
    ]
    rows = [{c: (r.get(c) or None) if i % 3 else r.get(c) for c in columns} for i, r in enumerate(samples + edges * 3)]
    table = pa.concat_tables([pa.Table.from_pylist(rows[:7]), pa.Table.from_pylist(rows[7:])])  # two chunks
    user = parse(
        'name = "p"\nfields = ["period"]\n[select]\ndepartment = "Asian Art"\n'
        '[[rules]]\nclass = "*"\nregex = "^([a-z]+)"'
    )
    for target in (builtin("painting-culture"), builtin("object-type"), user):
        expected = [target.label(r) for r in table.to_pylist()]
        assert label_table(table, target).to_pylist() == expected, target.name
        assert any(expected) and None in expected
    assert label_table(table.slice(0, 0), user).to_pylist() == []
    nothing = pa.table({"classification": pa.nulls(3), "objectName": ["Painting"] * 3})  # a column of null type
    assert label_table(nothing, builtin("object-type")).to_pylist() == [None] * 3
    with pytest.raises(KeyError):
        label_table(pa.table({"culture": ["China"]}), builtin("painting-culture"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('name = "x"\nfields = ["cultur"]\n[[rules]]\nclass = "A"\nexact = ["a"]', "unknown field 'cultur'"),
        ('name = "x"\nfields = ["culture"]', "no \\[\\[rules\\]\\]"),
        ('name = "x"\nfields = ["culture"]\n[[rules]]\nexact = ["a"]', "has no class"),
        ('name = "x"\nfields = ["culture"]\n[[rules]]\nclass = "A"\nregex = "("', "bad regex"),
        ('name = "x"\nfields = ["culture"]\n[[rules]]\nclass = "A"\nlike = "a"', "give a table with exact"),
        ('fields = ["culture"]', "give the target a name"),
        ('name = "x"\n[[rules]]\nclass = "A"\nexact = ["a"]', "give the field"),
        ("name = ", "not valid TOML"),
        ('name = "x"\nfields = ["culture"]\nmin_count = 0\n[[rules]]\nclass = "A"\nexact = "a"', "min_count"),
    ],
)
def test_bad_target_files_say_what_is_wrong(text, message):
    with pytest.raises(TargetError, match=message):
        parse(text, "t.toml")


def test_resolve_rejects_unknown_names():
    with pytest.raises(TargetError, match="unknown target 'paintings'"):
        resolve("paintings")


def test_a_target_file_that_is_not_utf8_is_a_target_error(tmp_path):
    path = tmp_path / "latin.toml"
    path.write_bytes('name = "caf\u00e9"\nfields = ["culture"]\n'.encode("latin-1"))
    with pytest.raises(TargetError, match=r"is not UTF-8 text.*save it as UTF-8"):
        resolve(str(path))


def test_targets_command_counts_classes_on_a_dataset(start_met, dask_client, tmp_path):
    from click.testing import CliRunner
    from test_images import ingested

    from metdata.cli import main
    from metdata.storage.objects import objects_table

    met = start_met(objects=600, seed=11)
    dataset = ingested(met, dask_client, tmp_path / "data")
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'name = "sparse"\nfields = ["culture"]\nmin_count = 100000\n[[rules]]\nclass = "China"\nexact = ["China"]'
    )
    result = CliRunner().invoke(main, ["targets", "--data", str(tmp_path / "data"), "--target", str(bad)])
    assert result.exit_code == 0, result.output
    records = objects_table(dataset).to_pylist()
    expected = count(builtin("painting-culture"), records)
    assert set(expected) == {"America", "China", "India", "Japan"}
    for cls, n in expected.items():
        assert f"{cls:<30} {n:>8,}" in result.output
    assert "object-type" in result.output and "below min_count=100000" in result.output
    missing = CliRunner().invoke(main, ["targets", "--data", str(tmp_path / "empty")])
    assert missing.exit_code == 1 and "run 'metdata ingest' first" in missing.output


def test_search_sections_parse_and_check_their_queries():
    culture = builtin("painting-culture")
    texts = [q.text for q in culture.search.queries]
    assert "medium=Paintings&hasImages=true" in texts
    assert "departmentId=14&geoLocation=India&hasImages=true" in texts
    assert any("departmentId=1&" in t for t in texts) and "medium=Paintings" not in texts[1:]
    assert all(q.get("hasImages") == "true" for q in culture.search.queries)
    honest = builtin("object-type").search
    assert honest.queries == () and "--from-csv" in honest.note and "saves" in honest.note
    base = 'name = "x"\nfields = ["culture"]\n[[rules]]\nclass = "A"\nexact = ["a"]\n'
    assert parse(base).search.queries == ()
    one = parse(base + '[search]\nqueries = "departmentId=6"\nnote = " why "')
    assert [q.text for q in one.search.queries] == ["departmentId=6"] and one.search.note == "why"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ('[search]\nqueries = ["departmentId=999"]', r"\[search\] queries\[0\]: search query 'departmentId=999'"),
        ('[search]\nqueries = ["isPublicDomain=true"]', "not a search filter"),
        ("[search]\nqueries = [1]", "list of query strings"),
        ('[search]\nquery = ["q=a"]', r"\[search\] takes queries and note"),
        ("[search]\nqueries = []", "no queries; add some, or a note"),
        ('[search]\nqueries = ["departmentId=\u00b2"]', "is no department"),
        ('[search]\nqueries = ["dateBegin=--5&dateEnd=10"]', "is not a year"),
        ('[search]\nqueries = ["medium=|"]', "names nothing"),
        ('[search]\nqueries = ["title=true"]', "would answer the whole index"),
    ],
)
def test_bad_search_sections_say_what_is_wrong(section, message):
    base = 'name = "x"\nfields = ["culture"]\n[[rules]]\nclass = "A"\nexact = ["a"]\n'
    with pytest.raises(TargetError, match=message):
        parse(base + section, "t.toml")
