"""Target-driven acquisition end to end: ids --target, ingest (a LocalCluster), the selection, refresh."""

from __future__ import annotations

import logging

import pytest
import requests
from conftest import stats
from test_search import ids_cli

from metdata.acquire.listing import read_listing, read_listing_meta, write_listing
from metdata.acquire.lookup import LookupOptions
from metdata.core.statuses import Status
from metdata.emulator import EmulatorConfig
from metdata.images.selection import select
from metdata.jobs.ingest import IngestOptions, plan, run
from metdata.net.pacing import PaceConfig
from metdata.storage.dataset import Dataset, DatasetError
from metdata.storage.objects import objects_table

log = logging.getLogger(__name__)

#: Enough paintings in a small catalog: the dense mix where the emulator has a calibrated one.
DENSE = {"mix": "dense"} if "mix" in EmulatorConfig.__dataclass_fields__ else {}


def options(met, **overrides) -> IngestOptions:
    lookup = LookupOptions(api=met.url, timeout=3.0, max_attempts=6, backoff=0.05, max_in_flight=8)
    return IngestOptions(lookup=lookup, pace=PaceConfig(rate=200, cooldown=0.5), shard_size=200, **overrides)


def selected(dataset: Dataset) -> set[int]:
    table = select(objects_table(dataset), "primaryImageSmall", target="painting-culture")
    return set(table["objectID"].to_pylist())


def test_a_withdrawn_hit_ends_as_a_not_valid_row(start_met, dask_client, tmp_path):
    met = start_met(objects=1500, seed=8, fault_rate=0.1, faults=frozenset({"not-valid"}), **DENSE)
    root = tmp_path / "data"
    assert ids_cli(met.url, root, "--target", "painting-culture").exit_code == 0
    dataset = Dataset(str(root))
    listed = read_listing(dataset)
    summary = run(dask_client, dataset, options(met))
    rows = objects_table(dataset, ["objectID", "status", "error"]).to_pylist()
    assert [r["objectID"] for r in rows] == listed and summary["this_run"]["ids_looked_up"] == len(listed)
    withdrawn = [r for r in rows if r["status"] == Status.NOT_VALID]
    assert withdrawn and all(r["error"] == "Not a valid object" for r in withdrawn)
    assert {r["status"] for r in rows} <= {Status.OK, Status.NOT_VALID}


def test_since_with_a_target_refreshes_only_its_candidates(start_met, dask_client, tmp_path):
    met = start_met(objects=1500, seed=9, **DENSE)
    root = tmp_path / "data"
    assert ids_cli(met.url, root, "--target", "painting-culture").exit_code == 0
    dataset = Dataset(str(root))
    candidates = read_listing(dataset)
    run(dask_client, dataset, options(met))
    since = "2025-06-01"
    updated = requests.get(f"{met.url}/objects", params={"metadataDate": since}, timeout=10).json()["objectIDs"]
    mine = set(updated) & set(candidates)
    assert mine and set(updated) - mine  # the museum changed more than the target's candidates
    before = stats(met)["api"]["requests"]
    planned = plan(dataset, options(met, since=since, target="painting-culture"))
    assert stats(met)["api"]["requests"] == before + 1  # the listing's metadataDate filter, one request
    assert sorted(i for t in planned.tasks for i in t.ids) == sorted(mine)
    assert all(t.replace for t in planned.tasks) and read_listing(dataset) == candidates
    # without the target, every changed object of the museum would be looked up
    everything = plan(dataset, options(met, since=since))
    assert {i for t in everything.tasks for i in t.ids} == set(updated)

    # a listing that is not the target's candidates: refused before any request, nothing written
    other = Dataset(str(tmp_path / "other"))
    write_listing(other, candidates, {})
    before = stats(met)["api"]["requests"]
    with pytest.raises(DatasetError, match="run 'metdata ids --target painting-culture"):
        plan(other, options(met, since=since, target="painting-culture"))
    assert stats(met)["api"]["requests"] == before and not other.data_files("objects")


@pytest.mark.parametrize(
    ("mix", "objects", "most_lookups"),
    [("dense", 4000, 0.25), ("real", 12_000, 0.05)],
    ids=["dense-mix", "real-mix"],
)
def test_search_then_ingest_selects_what_the_full_crawl_selects_for_a_fraction_of_the_lookups(
    start_met, dask_client, tmp_path, mix, objects, most_lookups
):
    """The measurement of issue 21: recall of the target's images and lookups against the full crawl,
    on the dense mix (many paintings) and on the calibrated one (paintings ~2 % of objects)."""
    met = start_met(objects=objects, seed=21, mix=mix)
    full = Dataset(str(tmp_path / "full"))
    crawl = run(dask_client, full, options(met))
    searched = Dataset(str(tmp_path / "search"))
    result = ids_cli(met.url, tmp_path / "search", "--target", "painting-culture")
    assert result.exit_code == 0, result.output
    search_requests = read_listing_meta(searched)["search"]["requests"]
    lookup = run(dask_client, searched, options(met))
    wanted, got = selected(full), selected(searched)
    recall = len(wanted & got) / len(wanted)
    lookups = lookup["this_run"]["ids_looked_up"] / crawl["this_run"]["ids_looked_up"]
    requests_share = (search_requests + lookup["this_run"]["requests"]) / (1 + crawl["this_run"]["requests"])
    log.warning(
        "painting-culture on %d objects (%s mix): full crawl selects %d images with %d lookups; search selects %d "
        "(recall %.4f) with %d lookups (%.3f of the full crawl) and %d search requests (API requests %.3f)",
        objects,
        mix,
        len(wanted),
        crawl["this_run"]["ids_looked_up"],
        len(got),
        recall,
        lookup["this_run"]["ids_looked_up"],
        lookups,
        search_requests,
        requests_share,
    )
    assert got <= wanted and len(wanted) > 100
    assert recall >= 0.98
    assert lookups <= most_lookups


def test_the_emulators_csv_by_url_then_the_search_looks_up_only_the_candidates_it_lacks(
    start_met, dask_client, tmp_path
):
    """The recommended path, CSV + search: the Open Access CSV by URL (the emulator's, as of a date
    that leaves out its newest objects), ``ids --target --add``, then ingest looks up only the
    candidates the CSV lacks, each once."""
    from metdata.jobs.ingest import load_csv

    met = start_met(objects=3000, seed=22, **DENSE)
    root = tmp_path / "data"
    dataset = Dataset(str(root))
    loaded = load_csv(dataset, IngestOptions(from_csv=met.csv_url))
    in_csv = set(read_listing(dataset))
    assert loaded["this_run"]["csv"]["rows"] == len(in_csv) > 0
    assert stats(met).get("api", {}).get("requests", 0) == 0  # the CSV is not the API host's budget
    assert ids_cli(met.url, root, "--target", "painting-culture", "--add").exit_code == 0
    candidates = set(read_listing(dataset)) - in_csv  # what the search found that the CSV has not
    assert candidates  # the CSV leaves out the newest objects
    before = stats(met)["api"]["requests"]
    summary = run(dask_client, dataset, options(met))
    assert summary["this_run"]["ids_looked_up"] == len(candidates)
    assert stats(met)["api"]["requests"] - before == len(candidates)  # each once, no faults here
    rows = objects_table(dataset, ["objectID", "status"]).to_pylist()
    assert {r["objectID"] for r in rows if r["status"] != Status.CSV} == candidates


def test_since_with_a_target_after_the_csv_looks_up_only_the_searchs_updated_candidates(
    start_met, dask_client, tmp_path
):
    """The recommended path, then a refresh: the CSV by URL, ``ids --target --add``, ingest, then
    ``--since --target`` looks up the target's search candidates updated since, not every updated
    row of the CSV (the listing holds both); a refresh without the target, or a second CSV load,
    in between keeps the search's record."""
    from test_search import search_hits

    from metdata.acquire.listing import read_candidates, searched_targets
    from metdata.core.targets import builtin
    from metdata.jobs.ingest import load_csv

    met = start_met(objects=3000, seed=23, **DENSE)
    root = tmp_path / "data"
    dataset = Dataset(str(root))
    load_csv(dataset, IngestOptions(from_csv=met.csv_url))
    assert ids_cli(met.url, root, "--target", "painting-culture", "--add").exit_code == 0
    found: set[int] = set()
    for query in builtin("painting-culture").search.queries:
        found |= search_hits(met, query.text)[1]
    assert set(read_candidates(dataset, "painting-culture")) == found
    listed = set(read_listing(dataset))
    assert found < listed  # the CSV's rows are listed too
    run(dask_client, dataset, options(met))
    since = "2020-01-01"
    updated = set(requests.get(f"{met.url}/objects", params={"metadataDate": since}, timeout=10).json()["objectIDs"])
    assert updated & found and len(updated & listed) > len(updated & found)  # the old code looked up all of these

    before = stats(met)["api"]["requests"]
    planned = plan(dataset, options(met, since=since, target="painting-culture"))
    assert stats(met)["api"]["requests"] == before + 1  # the metadataDate listing only
    assert sorted(i for t in planned.tasks for i in t.ids) == sorted(updated & found)

    # a refresh without the target that lists new ids rewrites the listing, and keeps the search's record
    everything = plan(dataset, options(met, since=since))
    assert {i for t in everything.tasks for i in t.ids} == updated
    meta = read_listing_meta(dataset)
    assert meta["filters"] == {"since": since} and searched_targets(meta) == {"painting-culture"}
    # so does a second CSV load
    load_csv(dataset, IngestOptions(from_csv=met.csv_url))
    assert searched_targets(read_listing_meta(dataset)) == {"painting-culture"}
    again = plan(dataset, options(met, since=since, target="painting-culture"))  # not refused
    assert {i for t in again.tasks if t.replace for i in t.ids} == updated & found
