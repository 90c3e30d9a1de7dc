"""Every row of the endpoint and error tables of met-api-facts.md, over HTTP."""

from __future__ import annotations

import json

from metdata.core.schema import DEPARTMENTS, FIELDS


def test_listing_has_every_object(met, http):
    body = http.get(f"{met.url}/objects").json()
    assert body["total"] == 300 == len(body["objectIDs"]) == len(set(body["objectIDs"]))
    assert all(isinstance(i, int) and 0 < i < 900_000 for i in body["objectIDs"])


def test_listing_filters_by_department(met, http):
    everything = set(http.get(f"{met.url}/objects").json()["objectIDs"])
    asian = http.get(f"{met.url}/objects", params={"departmentIds": "6"}).json()
    several = http.get(f"{met.url}/objects", params={"departmentIds": "3|9|6"}).json()
    assert 0 < asian["total"] < several["total"] < len(everything)
    assert set(asian["objectIDs"]) < set(several["objectIDs"]) <= everything
    for object_id in asian["objectIDs"][:5]:
        assert http.get(f"{met.url}/objects/{object_id}").json()["department"] == "Asian Art"


def test_listing_unknown_department_is_empty_not_an_error(met, http):
    response = http.get(f"{met.url}/objects", params={"departmentIds": "999"})
    assert response.status_code == 200
    assert response.json() == {"total": 0, "objectIDs": []}


def test_listing_filters_by_metadata_date(met, http):
    recent = http.get(f"{met.url}/objects", params={"metadataDate": "2025-01-01"}).json()
    assert 0 < recent["total"] < 300
    for object_id in recent["objectIDs"][:10]:
        assert http.get(f"{met.url}/objects/{object_id}").json()["metadataDate"] >= "2025-01-01"


def test_bad_metadata_date_is_a_bare_json_string(met, http):
    for bad in ("2020-13-01", "yesterday", "2020-1-1"):
        response = http.get(f"{met.url}/objects", params={"metadataDate": bad})
        assert response.status_code == 400
        assert response.json() == ("Date not valid. Dates must be in the format YYYY-MM-DD e.g. 1987-05-03")


def test_object_record_has_57_fields_in_api_order(met, http):
    ids = http.get(f"{met.url}/objects").json()["objectIDs"]
    records = [http.get(f"{met.url}/objects/{i}").json() for i in ids[:60]]
    for record in records:
        assert list(record) == [f for f in FIELDS if f in record]
        assert len(record) in (55, 56, 57)
        assert "dimensionsParsed" not in record
        assert all(
            record[f] is not None for f in FIELDS if f in record and f not in ("constituents", "tags", "measurements")
        )
        assert record["tags"] is None or record["tags"]  # null, never []
        assert isinstance(record["objectBeginDate"], int)
    assert any(len(r) == 57 for r in records)
    public = [r for r in records if r["isPublicDomain"]]
    assert public and all(r["primaryImageSmall"].startswith(met.base) for r in public)
    assert all(r["primaryImage"] == r["primaryImageSmall"] == "" for r in records if not r["isPublicDomain"])


def test_unknown_ids_are_404_not_found(met, http):
    listed = set(http.get(f"{met.url}/objects").json()["objectIDs"])
    unlisted = next(i for i in range(1, 900_000) if i not in listed)
    for object_id in (999999999, 0, -1, unlisted):
        response = http.get(f"{met.url}/objects/{object_id}")
        assert response.status_code == 404
        assert response.json() == {"message": "ObjectID not found"}


def test_non_numeric_ids_are_400(met, http):
    for raw in ("abc", "336228.5"):
        response = http.get(f"{met.url}/objects/{raw}")
        assert response.status_code == 400
        assert response.json() == {"message": "could not parse objectID"}


def test_departments(met, http):
    body = http.get(f"{met.url}/departments").json()
    ids = [d["departmentId"] for d in body["departments"]]
    assert len(ids) == 19 and 2 not in ids and 20 not in ids
    assert ids == [i for i, _ in DEPARTMENTS]


def test_v1_search_is_retired(met, http):
    response = http.get(f"{met.url}/search", params={"q": "sunflowers"})
    assert response.status_code == 410
    body = response.json()
    assert "retired" in body["message"] and body["replacement"] == "/public/collection/v1.1/search"


def test_v1_1_search_pages_and_caps(start_met, http):
    met = start_met(objects=1500)
    search = met.url.replace("/v1", "/v1.1") + "/search"
    everything = http.get(search, params={"q": "*"}).json()
    indexed = 1500 + len(met.catalog.withdrawn[0])  # the index also holds withdrawn records
    assert everything["total"] == indexed and len(everything["objectIDs"]) == 100  # default limit
    assert len(http.get(search, params={"q": "*", "limit": "9999"}).json()["objectIDs"]) == 500
    second = http.get(search, params={"q": "*", "offset": "100", "limit": "50"}).json()
    assert second["objectIDs"] == http.get(search, params={"q": "*", "limit": "500"}).json()["objectIDs"][100:150]
    past = http.get(search, params={"q": "*", "offset": str(indexed)}).json()
    assert past == {"total": indexed, "objectIDs": None}
    nothing = http.get(search, params={"q": "no such words anywhere"}).json()
    assert nothing == {"total": 0, "objectIDs": None}


def test_v1_1_search_results_end_at_10000(start_met, http):
    met = start_met(objects=10_500)
    search = met.url.replace("/v1", "/v1.1") + "/search"
    tail = http.get(search, params={"q": "*", "offset": "9900", "limit": "500"}).json()
    assert tail["total"] == 10_500 + len(met.catalog.withdrawn[0]) and len(tail["objectIDs"]) == 100
    assert http.get(search, params={"q": "*", "offset": "10000"}).json()["objectIDs"] is None


def test_v1_1_search_filters(start_met, http):
    met = start_met(objects=1500)
    search = met.url.replace("/v1", "/v1.1") + "/search"

    def ids(**params):
        found = set(http.get(search, params={"q": "*", "limit": "500", **params}).json()["objectIDs"] or [])
        return found - withdrawn

    def record(i):
        return http.get(f"{met.url}/objects/{i}").json()

    withdrawn = set(met.catalog.withdrawn[0].tolist())  # hits whose lookup is 404 (test_emulator_search.py)

    asian = ids(departmentId="6")
    assert asian and all(record(i)["department"] == "Asian Art" for i in list(asian)[:10])
    highlights = ids(isHighlight="true")
    assert all(record(i)["isHighlight"] for i in highlights)
    # booleans are lower-case only: anything else is silently ignored
    assert ids(isHighlight="True") == ids() == ids(unknownFilter="x")
    with_images = ids(hasImages="true")
    public = {i for i in ids() if record(i)["isPublicDomain"]}
    assert public <= with_images and len(with_images) > len(public)  # hasImages lets imageless through
    china = ids(geoLocation="China|Japan")
    assert china and all(
        record(i)["culture"] in ("China", "Japan") or record(i)["country"] in ("China", "Japan")
        for i in list(china)[:10]
    )
    dated = ids(dateBegin="1700", dateEnd="1800")
    assert dated and all(
        1700 <= record(i)["objectBeginDate"] <= record(i)["objectEndDate"] <= 1800 for i in list(dated)[:10]
    )
    scrolls = ids(medium="Hanging scroll|Album leaf")
    assert scrolls and scrolls <= ids(q="scroll") | ids(q="album")
    titled = http.get(search, params={"q": "Portrait", "title": "true"}).json()["objectIDs"]
    assert titled and all("portrait" in record(i)["title"].lower() for i in titled[:10])


def test_records_are_deterministic_under_a_seed(start_met, http):
    a, b, c = start_met(seed=7), start_met(seed=7), start_met(seed=8)
    ids = http.get(f"{a.url}/objects").json()["objectIDs"]
    assert ids == http.get(f"{b.url}/objects").json()["objectIDs"]
    assert ids != http.get(f"{c.url}/objects").json()["objectIDs"]
    for i in ids[:20]:
        ra = http.get(f"{a.url}/objects/{i}").content.replace(a.base.encode(), b"HOST")
        rb = http.get(f"{b.url}/objects/{i}").content.replace(b.base.encode(), b"HOST")
        assert ra == rb


def test_synthetic_catalog_has_the_real_label_quirks():
    from metdata.emulator.synthetic import SyntheticCatalog

    catalog = SyntheticCatalog(20_000, seed=3, mix="dense")
    records = [catalog.record(int(i)) for i in catalog.ids]
    paintings = [r for r in records if r["objectName"] == "Painting" or r["classification"] == "Paintings"]
    kinds = {(r["department"], r["culture"], r["country"], r["classification"]) for r in records}
    assert ("Islamic Art", "", "India", "Codices") in kinds
    assert any(
        r["department"] == "The American Wing"
        and r["classification"] == ""
        and r["objectName"] == "Painting"
        and r["culture"] == "American"
        for r in paintings
    )
    assert any(
        r["department"] == "European Paintings" and r["culture"] == "" and r["artistNationality"] for r in paintings
    )
    assert any(r["culture"].startswith("India (") for r in records)
    assert {"Metalwork", "Metal", "Metal-Ornaments"} <= {r["classification"] for r in records}
    assert len({r["classification"] for r in records}) >= 300
    assert any("&#39;" in json.dumps(r["constituents"]) for r in records if r["constituents"])
    assert any(r["constituents"] is None for r in records) and any(
        r["measurements"] is None for r in records if "measurements" in r
    )
    assert 0.2 < sum(r["isPublicDomain"] for r in records) / len(records) < 0.35
    assert any("\r\n" in r["dimensions"] for r in records)


def test_large_synthetic_catalog_starts_lazily(start_met, http):
    met = start_met(objects=500_000)
    body = http.get(f"{met.url}/objects").json()
    assert body["total"] == 500_000
    assert http.get(f"{met.url}/objects/{body['objectIDs'][-1]}").status_code == 200
