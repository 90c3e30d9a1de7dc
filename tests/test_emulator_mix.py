"""The synthetic catalog's mixes: ``real`` has the real collection's proportions, ``dense`` is
the catalog as it was before the mixes, bit for bit."""

from __future__ import annotations

import hashlib

import pytest

from metdata.emulator.synthetic import IMAGE_HOST, SyntheticCatalog

#: sha256 of the records and image specs of ``SyntheticCatalog(3000, 5)`` before the mixes existed
#: (computed from the previous commit's synthetic.py).
DENSE_DIGEST = "b4ca8adf54345a4326882d2b613f0cbfebb6357e3d45669dc010669097cd6546"


def digest(catalog: SyntheticCatalog) -> str:
    d = hashlib.sha256()
    for object_id in catalog.ids.tolist():
        d.update(catalog.record_bytes(object_id))
        record = catalog.record(object_id)
        for url in [record["primaryImage"], record["primaryImageSmall"], *record["additionalImages"]]:
            if url:
                d.update(repr(catalog.image(url.replace(IMAGE_HOST, ""))).encode())
    return d.hexdigest()


def is_painting(record: dict) -> bool:
    return record["classification"] == "Paintings" or record["objectName"] == "Painting"


def test_dense_is_the_catalog_before_the_mixes_bit_for_bit():
    assert digest(SyntheticCatalog(3000, 5, mix="dense")) == DENSE_DIGEST
    assert digest(SyntheticCatalog(3000, 5)) != DENSE_DIGEST  # the default is the real mix


def test_real_mix_has_the_real_proportions_and_the_same_structure():
    catalog = SyntheticCatalog(40_000, seed=2, mix="real")
    records = [catalog.record(int(i)) for i in catalog.ids]
    paintings = [r for r in records if is_painting(r)]
    assert 0.015 < len(paintings) / len(records) < 0.03  # ~2 % (10.2k of ~484k in the 2023 CSV)
    assert 0.5 < sum(r["isPublicDomain"] for r in paintings) / len(paintings) < 0.7  # ~60 %
    prints = sum(r["department"] == "Drawings and Prints" for r in records) / len(records)
    assert 0.33 < prints < 0.41  # 185,098 of 502,886
    kinds = {(r["department"], r["culture"], r["country"], r["classification"]) for r in records}
    assert ("Islamic Art", "", "India", "Codices") in kinds
    assert any(
        r["department"] == "The American Wing" and r["classification"] == "" and r["objectName"] == "Painting"
        for r in paintings
    )
    european = [r for r in paintings if r["department"] == "European Paintings"]
    assert european and all(r["culture"] == "" and r["artistNationality"] for r in european)
    assert any(r["department"] == "Asian Art" and r["culture"] in ("China", "Japan") for r in paintings)
    dense = SyntheticCatalog(40_000, seed=2, mix="dense")
    dense_paintings = sum(is_painting(dense.record(int(i))) for i in dense.ids[:5000])
    assert dense_paintings / 5000 > 4 * len(paintings) / len(records)


def test_unknown_mix_is_refused():
    with pytest.raises(ValueError, match="unknown mix 'sparse'"):
        SyntheticCatalog(10, mix="sparse")


def test_fake_met_refuses_an_unknown_mix():
    from click.testing import CliRunner

    from metdata.cli.fake_met import fake_met

    result = CliRunner().invoke(fake_met, ["--mix", "sparse"])
    assert result.exit_code == 2 and "'sparse' is not one of 'real', 'dense'" in result.output
