"""Each fault kind, and their determinism under a seed."""

from __future__ import annotations

import pytest
import requests
from conftest import stats

from metdata.emulator.faults import parse_kinds


def public_objects(met, http, n=20):
    out = []
    for object_id in http.get(f"{met.url}/objects").json()["objectIDs"]:
        record = http.get(f"{met.url}/objects/{object_id}")
        if record.status_code == 200 and record.json()["isPublicDomain"]:
            out.append(record.json())
        if len(out) == n:
            break
    return out


@pytest.mark.parametrize("kind", ["500", "502", "503"])
def test_server_errors_are_transient(start_met, http, kind):
    met = start_met(fault_rate=0.3, faults=frozenset({kind}))
    codes = [http.get(f"{met.url}/departments").status_code for _ in range(60)]
    assert int(kind) in codes and 200 in codes
    assert set(codes) == {200, int(kind)}
    assert stats(met)["api"][f"fault_{kind}"] == codes.count(int(kind))


def test_slow_answers_outlast_a_client_timeout(start_met, http):
    met = start_met(fault_rate=1.0, faults=frozenset({"slow"}), slow_seconds=1.5)
    with pytest.raises(requests.Timeout):
        http.get(f"{met.url}/departments", timeout=0.3)


def test_dropped_connections(start_met, http):
    met = start_met(fault_rate=1.0, faults=frozenset({"drop"}))
    with pytest.raises(requests.ConnectionError):
        http.get(f"{met.url}/departments", timeout=5)


def test_transient_faults_clear_on_retry(start_met, http):
    met = start_met(fault_rate=0.5, faults=frozenset({"503"}))
    for _ in range(10):
        for _attempt in range(30):
            if http.get(f"{met.url}/departments").status_code == 200:
                break
        else:
            pytest.fail("a transient fault never cleared")


def test_not_valid_objects_are_listed_but_answer_404(start_met, http):
    met = start_met(fault_rate=0.2, faults=frozenset({"not-valid"}))
    ids = http.get(f"{met.url}/objects").json()["objectIDs"]
    answers = {i: http.get(f"{met.url}/objects/{i}") for i in ids[:100]}
    bad = [i for i, a in answers.items() if a.status_code == 404]
    assert 5 < len(bad) < 40
    assert all(answers[i].json() == {"message": "Not a valid object"} for i in bad)
    assert all(http.get(f"{met.url}/objects/{i}").status_code == 404 for i in bad)  # permanent


def test_image_faults(start_met, http):
    import cv2
    import numpy as np

    clean = start_met(seed=5)
    faulty = start_met(seed=5, fault_rate=0.25, faults=frozenset({"image-404", "truncate", "not-image"}))
    seen = set()
    for record in public_objects(faulty, http, 40):
        path = record["primaryImageSmall"].removeprefix(faulty.base)
        good = http.get(clean.base + path).content
        answer = http.get(faulty.base + path)
        if answer.status_code == 404:
            assert answer.headers["Content-Type"].startswith("text/html")
            seen.add("image-404")
        elif answer.content != good:
            assert answer.headers["Content-Type"].startswith("image/")
            if good.startswith(answer.content):
                seen.add("truncate")
                assert len(answer.content) == int(answer.headers["Content-Length"]) < len(good)
            else:
                seen.add("not-image")
                assert cv2.imdecode(np.frombuffer(answer.content, np.uint8), cv2.IMREAD_COLOR) is None
        assert http.get(faulty.base + path).content == answer.content  # permanent
    assert seen == {"image-404", "truncate", "not-image"}


def test_faults_are_deterministic_under_a_seed(start_met, http):
    def run(seed):
        ids = http.get(f"{start_met(seed=seed).url}/objects").json()["objectIDs"]
        met = start_met(seed=seed, fault_rate=0.3, faults=parse_kinds("500,503,not-valid"))
        return [http.get(f"{met.url}/objects/{i}").status_code for i in ids[:80]]

    first, again, other = run(11), run(11), run(12)
    assert first == again
    assert first != other
    assert {500, 503, 404} <= set(first)


def test_parse_kinds_rejects_unknown_names():
    assert parse_kinds("all") == parse_kinds(",".join(sorted(parse_kinds("all"))))
    with pytest.raises(ValueError, match="unknown fault kind teapot; choose from all, 500"):
        parse_kinds("503,teapot")
