"""Every kind of bad answer, from a hostile server of our own, for the API, the image host and
``predict``: each id and each slot ends with exactly one row and the expected status, memory
stays bounded, nothing waits past the deadline, nothing reaches another port."""

from __future__ import annotations

import json
import time
import tracemalloc
from urllib.parse import urlsplit

import pytest
from hostile import API_CASES, ENDLESS, IMAGE_CASES, MAX_SECONDS, Hostile, gzip_bomb

from metdata.acquire.ingest import ShardTask, run_shard, shard_name
from metdata.acquire.lookup import LookupOptions, lookup_batch
from metdata.core.statuses import Status
from metdata.errors import UserError
from metdata.images import images
from metdata.net.fetch import Policy, fetch, new_session, read_url
from metdata.net.pacing import LocalPacer, PaceConfig
from metdata.net.session import new_pool
from metdata.storage.dataset import Dataset
from metdata.storage.imagestore import prepare_store

DEADLINE = 1.0
#: Far below what the bombs and huge bodies decode to (100-200 MB), far above the caps in use.
MEMORY_CAP = 80 << 20
#: A trickle or a stall holds a request for MAX_SECONDS (20 s) when the deadline does not work.
NO_HANG = MAX_SECONDS / 2
#: One attempt at an answer that never ends: the deadline, and a generous margin (not a timing claim).
ONE_ATTEMPT = DEADLINE + 3


@pytest.fixture(scope="module")
def servers():
    """The hostile server, and the one on another port that its redirects point at."""
    gzip_bomb()  # built once, before any memory is measured
    gzip_bomb(b'{"objectID": 3, "title": "', b'"}')
    with Hostile() as hostile, Hostile() as other:
        hostile.other = other
        yield hostile, other
        assert sum(other.hits.values()) == 0, f"a redirect reached another port: {dict(other.hits)}"


def pacer() -> LocalPacer:
    return LocalPacer(PaceConfig(rate=1000, cooldown=0.05))


def lookup_options(url: str) -> LookupOptions:
    return LookupOptions(api=url, timeout=DEADLINE, max_attempts=2, backoff=0.01)


class Bounded:
    """Measures the Python memory peak and the time of the block it wraps."""

    def __enter__(self) -> Bounded:
        tracemalloc.start()
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.monotonic() - self.started
        self.peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


def test_every_bad_api_answer_is_its_ids_row(servers):
    hostile, _ = servers
    ids = list(API_CASES)
    with Bounded() as bounded:
        rows = lookup_batch(ids, lookup_options(hostile.url), pacer())[0]
    assert [r["objectID"] for r in rows] == ids  # exactly one row per id, in order
    got = {r["objectID"]: r["status"] for r in rows}
    assert got == {i: status for i, (_, status) in API_CASES.items()}, [r["error"] for r in rows]
    assert bounded.peak < MEMORY_CAP and bounded.seconds < NO_HANG
    errors = {r["objectID"]: r["error"] for r in rows}
    assert "True" in errors[1]  # "objectID": true is not id 1's record
    assert "nested too deep" in errors[5] and "4,194,304 bytes" in errors[3]
    assert "not allowed" in errors[10] and "ftp" in errors[9] and "malformed URL" in errors[11]
    assert errors[27].startswith("TypeError: ") and rows[ids.index(27)].get("unexpected")
    assert errors[6] == f"no complete answer within {DEADLINE:g} s"
    assert "Content-Length" in errors[33]  # the server's malformed header, not "malformed URL"
    assert hostile.hits["/objects/12?moved"] >= 1  # the redirect on its own host was followed


def test_a_shard_of_bad_answers_is_written_whole(servers, tmp_path):
    hostile, _ = servers
    dataset = Dataset(str(tmp_path))
    task = ShardTask(shard_name(1), tuple(API_CASES))
    summary = run_shard(task, dataset, lookup_options(hostile.url), pacer())
    table = dataset.read_table(task.name)
    assert sorted(table["objectID"].to_pylist()) == sorted(API_CASES)
    got = dict(zip(table["objectID"].to_pylist(), table["status"].to_pylist(), strict=True))
    assert got == {i: status for i, (_, status) in API_CASES.items()}
    assert summary["errors"] == 1  # measurements_str: a bug-shaped record, logged and counted
    assert sum(summary["statuses"].values()) == len(API_CASES)


def test_ingest_cli_against_the_hostile_api(servers, tmp_path):
    from click.testing import CliRunner

    from metdata.cli import main

    hostile, _ = servers
    root = str(tmp_path / "data")
    runner = CliRunner()
    common = ["--api", hostile.url, "--data", root, "--timeout", str(DEADLINE), "--max-attempts", "1"]
    assert runner.invoke(main, ["ids", *common]).exit_code == 0
    result = runner.invoke(main, ["ingest", *common, "--rate", "50", "--workers", "1", "--shard-size", "10"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{") :])
    expected: dict[str, int] = {}
    for _, status in API_CASES.values():
        expected[status] = expected.get(status, 0) + 1
    assert summary["rows_by_status"] == dict(sorted(expected.items()))


def image_urls(hostile: Hostile, other: Hostile) -> dict[str, tuple[str, str]]:
    """kind -> (URL, expected status): every image kind, and URLs that are malformed or elsewhere."""
    cases = {kind: (f"{hostile.url}/img/{kind}.jpg", status) for kind, status in IMAGE_CASES.items()}
    cases.update(
        malformed=("http://[::1/x.jpg", Status.FAILED),
        bad_port=("http://127.0.0.1:99999/img/good.jpg", Status.FAILED),
        ftp=("ftp://127.0.0.1/x.jpg", Status.FAILED),
        not_a_url=("not a url", Status.FAILED),
        other_port=(f"{other.url}/img/good.png", Status.FAILED),
    )
    return cases


def test_a_chunk_of_bad_images_gives_every_slot_its_status(servers, tmp_path):
    hostile, other = servers
    cases = image_urls(hostile, other)
    kinds = list(cases)
    options = images.ImageOptions(
        lookup=LookupOptions(api=hostile.url, timeout=DEADLINE, max_attempts=2, backoff=0.01),
        size=16,
        chunk=len(kinds),
        max_bytes=5 << 20,
        allowed_hosts=frozenset({urlsplit(hostile.url).netloc}),
    )
    dataset = Dataset(str(tmp_path))
    ids = list(range(1, len(kinds) + 1))
    prepare_store(dataset, options, ids, {})
    task = images.ChunkTask(0, 0, tuple(ids), tuple(cases[k][0] for k in kinds))
    with Bounded() as bounded:
        summary = images.run_chunk(task, dataset, options, pacer())
    assert bounded.peak < MEMORY_CAP and bounded.seconds < NO_HANG
    rows = dataset.read_table(f"{options.status_folder}/{task.name}").to_pylist()
    assert [r["objectID"] for r in rows] == ids
    got = {kind: row["status"] for kind, row in zip(kinds, rows, strict=True)}
    assert got == {kind: status for kind, (_, status) in cases.items()}, {
        k: r["error"] for k, r in zip(kinds, rows, strict=True)
    }
    assert summary["errors"] == 0 and sum(summary["statuses"].values()) == len(kinds)
    valid = dataset.open_zarr(options.store, "r")["valid"][:]
    assert [bool(v) for v in valid] == [cases[k][1] == Status.OK for k in kinds]


@pytest.mark.parametrize("kind", [*ENDLESS, "two_lengths"])
def test_an_answer_that_never_ends_is_transient_within_the_deadline(servers, kind):
    hostile, _ = servers
    object_id = next(i for i, (behaviour, _) in API_CASES.items() if behaviour == kind)
    api = LookupOptions(api=hostile.url, timeout=DEADLINE, max_attempts=1)
    image = images.ImageOptions(
        lookup=LookupOptions(api=hostile.url, timeout=DEADLINE, max_attempts=1),
        allowed_hosts=frozenset({urlsplit(hostile.url).netloc}),
    )
    expected = f"no complete answer within {DEADLINE:g} s" if kind in ENDLESS else "InvalidHeader: Content-Length"
    started = time.monotonic()
    row = lookup_batch([object_id], api, pacer())[0][0]
    looked_up = time.monotonic() - started
    slot = images.fetch_slots([1], [f"{hostile.url}/img/{kind}.jpg"], image, pacer())[0][0]
    fetched = time.monotonic() - started - looked_up
    assert (row["status"], slot.status) == (Status.TRANSIENT, Status.TRANSIENT)
    assert row["error"].startswith(expected) and slot.error.startswith(expected)
    assert looked_up < ONE_ATTEMPT and fetched < ONE_ATTEMPT


def test_a_slot_whose_handling_raises_is_failed_and_marked(servers):
    hostile, _ = servers
    options = images.ImageOptions(
        lookup=LookupOptions(api=hostile.url, timeout=DEADLINE, max_attempts=1), size=16, chunk=2
    )
    kept = {1: ("http://x/1.jpg", 12345)}  # kept bytes that are not bytes: a bug, deep inside decoding
    fetched = images.fetch_slots([1], ["kept:elsewhere/part-000000.parquet"], options, pacer(), kept)[0][0]
    assert fetched.status == Status.FAILED and fetched.unexpected and fetched.error.startswith("TypeError: ")


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        ("gzip_bomb", Status.TOO_LARGE),
        ("huge_stream", Status.TOO_LARGE),
        ("trickle", Status.TRANSIENT),
        ("cut", Status.TRANSIENT),
        ("bad_gzip", Status.TRANSIENT),
        ("redirect_ftp", Status.FAILED),
        ("redirect_other_port", Status.FAILED),
        ("redirect_malformed", Status.FAILED),
        ("503", Status.TRANSIENT),
        ("block_403", Status.BLOCKED),
    ],
)
def test_predict_reads_urls_within_bounds(servers, kind, status):
    hostile, _ = servers
    with Bounded() as bounded, pytest.raises(UserError, match=f"cannot download .*{kind}.* \\({status}: "):
        read_url(f"{hostile.url}/img/{kind}.jpg", deadline=DEADLINE)  # what predict's read_image calls
    assert bounded.seconds < NO_HANG and bounded.peak < 120 << 20  # predict's cap is 50 MB


def test_predict_reads_a_good_url_and_refuses_a_malformed_one(servers):
    from metdata.predict.prediction import read_image

    hostile, _ = servers
    assert read_image(f"{hostile.url}/img/redirect_same.jpg", timeout=DEADLINE).startswith(b"\x89PNG")
    with pytest.raises(UserError, match="malformed URL"):
        read_image("http://[::1/x.jpg", timeout=DEADLINE)


@pytest.mark.parametrize("make", [new_session, new_pool])
def test_fetch_never_leaves_the_policy(servers, make):
    hostile, other = servers
    policy = Policy.same_origin(hostile.url, deadline=DEADLINE)
    with make(1) as session:
        reply = fetch(session, f"{hostile.url}/img/redirect_other_port.jpg", policy)
        assert reply.outcome == Status.FAILED and other.url.removeprefix("http://") in reply.error
        assert fetch(session, "https" + hostile.url.removeprefix("http") + "/x", policy).outcome == Status.FAILED
        assert fetch(session, f"{hostile.url}/img/good.png", policy).status == 200
