"""generate -> stamp a corpus -> verify: the manifest's generator facts reach the C2PA manifest
and the stamped corpus records the provenance applied."""

from __future__ import annotations

import pytest

from genvis_trust.datasets import read_corpus
from genvis_trust.generators.sampling import generate_to_corpus
from genvis_trust.provenance.keys import init_keys, load_signing_material
from genvis_trust.provenance.stamp import stamp_corpus
from genvis_trust.provenance.store import ProvenanceStore
from genvis_trust.provenance.verify import verify_bytes


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_stamp_corpus_round_trip(tmp_path):
    generate_to_corpus("gan-digits", tmp_path / "gen", n=3, seed=0, device="cpu")
    init_keys(tmp_path / "keys")
    store = ProvenanceStore(tmp_path / "store.db")
    res = stamp_corpus(tmp_path / "gen", tmp_path / "stamped", store=store,
                       material=load_signing_material(tmp_path / "keys"), upscale=256)
    assert res["stamped"] == 3 and res["failures"] == []
    src, out = read_corpus(tmp_path / "gen"), read_corpus(tmp_path / "stamped")
    for a, b in zip(src.records, out.records, strict=True):
        assert b["checkpoint_sha256"] == a["checkpoint_sha256"] and b["seed"] == a["seed"]
        assert b["provenance"]["c2pa"] and "enlarged" in b["provenance"]["notes"][0]
    rec = out.records[1]
    rep = verify_bytes(out.file(rec).read_bytes(), name=rec["path"], store=store,
                       trust_anchors_pem=(tmp_path / "keys" / "ca.cert.pem").read_text())
    assert rep.c2pa.state == "Trusted"
    assert rep.store["found"] and rep.store["record"]["id"] == rec["provenance"]["record_id"]
    assert rep.store["record"]["generator"] == "gan-digits"
    # without --upscale, 32x32 samples are refused per image, the rest of the batch goes on
    res = stamp_corpus(tmp_path / "gen", tmp_path / "small", store=store, material=load_signing_material(tmp_path / "keys"))
    assert res["stamped"] == 0 and len(res["failures"]) == 3 and "below" in res["failures"][0]["error"]
    store.close()
