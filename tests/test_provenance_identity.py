"""Who stamped it, and what it is: issuer-bound payloads and the derivative rule.

Two stores with two keys: a mark is credited only to the store that issued it. A stamped
copy of a photograph recorded as a capture does not make the untouched original
"generated"; a perceptual-hash match to a generated record is a near-duplicate, weaker
than a mark.
"""

import sqlite3

import pytest

from genvis_trust.datasets import get_source
from genvis_trust.io import encode_image, load_image
from genvis_trust.provenance.keys import init_keys, load_signing_material
from genvis_trust.provenance.payload import get_codec
from genvis_trust.provenance.stamp import StampError, stamp_array
from genvis_trust.provenance.store import ProvenanceStore
from genvis_trust.provenance.verify import verify_bytes
from genvis_trust.scan import _decide


def _evidence(rep):
    return list(rep.evidence)  # the verdict reads the typed Evidence, as scan's fuse does


@pytest.fixture(scope="module")
def photos():
    return [s.image for s in get_source("builtin-photos", patch=320, n=3, seed=11, split="train")]


@pytest.fixture(scope="module")
def two_issuers(tmp_path_factory):
    d = tmp_path_factory.mktemp("issuers")
    init_keys(d / "ka")
    init_keys(d / "kb")
    a = ProvenanceStore(d / "a.db")
    b = ProvenanceStore(d / "b.db")
    bits = get_codec("p64").issuer_bits
    while b.issuer_id(bits) == a.issuer_id(bits):  # 1 in 2048: draw B again so the test is exact
        b.close()
        (d / "b.db").unlink()
        b = ProvenanceStore(d / "b.db")
    return d, (a, load_signing_material(d / "ka")), (b, load_signing_material(d / "kb"))


def test_no_cross_issuer_credit(two_issuers, photos):
    d, (a, ka), (b, kb) = two_issuers
    # B holds records 1 and 2 of other pictures by another generator
    stamp_array(photos[1], d / "b1.png", store=b, material=kb, generator="gen-beta")
    stamp_array(photos[2], d / "b2.png", store=b, material=kb, generator="gen-beta")
    res = stamp_array(photos[0], d / "a.png", store=a, material=ka, generator="gen-alpha")
    assert res.issuer_id == a.issuer_id(11) and b.get(res.record_id) is not None  # same record number in B
    # strip the manifest: re-encode the pixels as JPEG 90 (4:2:0, no metadata)
    stripped = encode_image(load_image(d / "a.png").array, "JPEG", quality=90)

    rep_b = verify_bytes(stripped, store=b, known_generators=False)
    assert rep_b.watermarks[0]["detected"]
    assert rep_b.store["found"] is False and rep_b.store["foreign"] is True
    assert not any(e.kind == "store" for e in rep_b.evidence)  # never attributed to B's record
    wm = next(e for e in rep_b.evidence if e.kind == "watermark")
    assert f"from issuer {res.issuer_id:#x}, not in this store" in wm.summary
    assert wm.strength == "statistical" and wm.indicates == "generated"
    verdict, summary = _decide(_evidence(rep_b), 0.01, None)
    assert verdict == "generated" and "not in this store" in summary and "gen-beta" not in summary

    # the signed file itself: its manifest's record id belongs to A as well
    rep_b = verify_bytes((d / "a.png").read_bytes(), store=b, known_generators=False)
    assert rep_b.c2pa.state == "Valid" and rep_b.c2pa.generator_assertion["record_id"] == res.record_id
    assert not any(e.kind == "store" for e in rep_b.evidence) and rep_b.store["found"] is False

    # B also holds a stamped copy of the same picture: a near-duplicate, and the mark is still A's
    stamp_array(photos[0], d / "b3.png", store=b, material=kb, generator="gen-beta")
    rep_b = verify_bytes(stripped, store=b, known_generators=False)
    assert rep_b.store["path"] == "perceptual_hash" and rep_b.store["watermark"]["foreign"] is True
    wm = next(e for e in rep_b.evidence if e.kind == "watermark")
    assert f"from issuer {res.issuer_id:#x}, not in this store" in wm.summary

    rep_a = verify_bytes(stripped, store=a, known_generators=False)
    assert rep_a.store["found"] and rep_a.store["path"] == "watermark"
    assert rep_a.store["record"]["id"] == res.record_id and rep_a.store["record"]["generator"] == "gen-alpha"
    assert any(e.kind == "store" and "gen-alpha" in e.summary for e in rep_a.evidence)
    rep_a = verify_bytes((d / "a.png").read_bytes(), store=a, known_generators=False)
    assert rep_a.store["path"] == "c2pa" and rep_a.store["record"]["id"] == res.record_id


def test_unstamped_original_of_a_stamped_photo_is_not_generated(two_issuers, photos, tmp_path):
    _, (a, ka), _ = two_issuers
    store = ProvenanceStore(tmp_path / "photos.db")
    res = stamp_array(photos[0], tmp_path / "copy.png", store=store, material=ka, source_type="digitalCapture")
    assert res.source_type == "digitalCapture"
    assert store.get(res.record_id).source_type == "digitalCapture"
    original = encode_image(photos[0], "PNG")  # the untouched original: no mark, no manifest

    rep = verify_bytes(original, store=store, known_generators=False)
    assert not rep.watermarks[0]["detected"] and rep.c2pa.present is False
    assert rep.store["path"] == "perceptual_hash" and rep.store["derivative"] is True
    ev = next(e for e in rep.evidence if e.kind == "store")
    assert ev.indicates == "authentic_provenance" and ev.details["source_type"] == "digitalCapture"
    assert f"near-duplicate of stamped item {res.record_id}" in ev.summary
    verdict, summary = _decide(_evidence(rep), 0.001, None)
    assert verdict == "no_evidence" and "recorded as digitalCapture" in summary

    # the stamped copy itself: its C2PA says digitalCapture, its mark says "not generated"
    copy = (tmp_path / "copy.png").read_bytes()
    rep = verify_bytes(copy, store=store, known_generators=False)
    assert rep.c2pa.digital_source_types[0].endswith("/digitalCapture")
    assert rep.watermarks[0]["payload"]["generative"] is False
    assert _decide(_evidence(rep), 0.001, None)[0] == "no_evidence"


def test_near_duplicate_of_generated_record_is_weaker_than_a_mark(two_issuers, photos, tmp_path):
    _, (a, ka), _ = two_issuers
    store = ProvenanceStore(tmp_path / "gen.db")
    res = stamp_array(photos[1], tmp_path / "g.png", store=store, material=ka, generator="gen-alpha")
    assert res.source_type == "trainedAlgorithmicMedia"
    rep = verify_bytes(encode_image(photos[1], "PNG"), store=store, known_generators=False)  # unmarked look-alike
    assert rep.store["path"] == "perceptual_hash"
    verdict, summary = _decide(_evidence(rep), 0.001, None)
    assert verdict == "likely_generated" and "near-duplicate of stamped item" in summary and "no mark" in summary
    # the marked copy is "generated"
    rep = verify_bytes((tmp_path / "g.png").read_bytes(), store=store, known_generators=False)
    assert _decide(_evidence(rep), 0.001, None)[0] == "generated"


def test_unknown_source_type_refused(two_issuers, photos, tmp_path):
    _, (a, ka), _ = two_issuers
    with pytest.raises(StampError, match="digital source type"):
        stamp_array(photos[0], tmp_path / "x.png", store=a, material=ka, source_type="photo")


def test_schema1_store_upgraded_and_v1_payload_needs_a_look_alike(two_issuers, photos, tmp_path):
    """A store written before issuers existed: upgraded in place; its v1 marks name no
    issuer, so they are claimed only when the picture looks alike too."""
    _, (a, ka), _ = two_issuers
    from genvis_trust.provenance.phash import phash
    from genvis_trust.provenance.watermarks import detect, get_watermark

    path = tmp_path / "old.db"
    con = sqlite3.connect(path)
    from genvis_trust.provenance.store import _SCHEMA

    con.executescript(_SCHEMA)
    con.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    codec = get_codec("p64")
    marked = get_watermark("dwtDctSvd").embed(photos[2], codec.encode(1, version=1))
    con.execute("INSERT INTO records (id, created, state, phash, backend, short_id, generator) "
                "VALUES (1, 0, 'complete', ?, 'dwtDctSvd', 1, 'old-gen')", (phash(marked),))
    con.commit()
    con.close()
    old = ProvenanceStore(path)
    assert old.issuer_id(11) >= 0 and old.get(1).payload_version is None
    det = detect(marked)
    assert det.detected and det.payload["version"] == 1
    assert old.resolve_payload(det.payload, "dwtDctSvd", phash(marked))["found"]
    # the same v1 payload on a different picture: no issuer, no look-alike, no credit
    other = old.resolve_payload(det.payload, "dwtDctSvd", phash(photos[0]))
    assert other["found"] is False and "names no issuer" in other["note"]


def test_cli_source_type_media_and_exit_codes(photos, tmp_path):
    import io
    import json
    import wave

    import numpy as np
    from typer.testing import CliRunner

    from genvis_trust.cli.main import app

    runner = CliRunner()
    assert runner.invoke(app, ["keys", "init", str(tmp_path / "k")]).exit_code == 0
    (tmp_path / "photo.png").write_bytes(encode_image(photos[0], "PNG"))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(np.zeros(400, np.int16).tobytes())
    (tmp_path / "voice.wav").write_bytes(buf.getvalue())
    out, keys = str(tmp_path / "o"), str(tmp_path / "k")

    r = runner.invoke(app, ["stamp", str(tmp_path / "photo.png"), "--out", out, "--keys", keys, "--source-type", "photo"])
    assert r.exit_code == 2 and "--source-type" in r.output and "digitalCapture" in r.output
    r = runner.invoke(app, ["stamp", str(tmp_path / "photo.png"), str(tmp_path / "voice.wav"), "--out", out,
                            "--keys", keys, "--source-type", "digitalCapture", "--json"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    assert [x["source_type"] for x in rows] == ["digitalCapture", "digitalCapture"]
    assert rows[1]["media_type"] == "audio/wav" and rows[1]["watermark"].startswith("none")

    store = str(tmp_path / "o" / "provenance.db")
    r = runner.invoke(app, ["verify", str(tmp_path / "o" / "voice.wav"), "--store", store, "--json"])
    assert r.exit_code == 0, r.output  # a WAV has no pixels: not an error
    rep = json.loads(r.stdout)
    assert rep["c2pa"]["state"] == "Valid" and rep["store"]["record"]["source_type"] == "digitalCapture"
    # the untouched original photo: a near-duplicate of a capture, reported as such
    r = runner.invoke(app, ["verify", str(tmp_path / "photo.png"), "--store", store])
    assert r.exit_code == 0 and "near-duplicate of stamped item 1 (digitalCapture)" in " ".join(r.output.split())
    # one flipped bit in the stamped PNG's pixel data: decode error and C2PA Invalid, exit 1
    data = bytearray((tmp_path / "o" / "photo.png").read_bytes())
    data[data.find(b"IDAT") + 4] ^= 1  # the zlib header of the pixel data: decoding fails for sure
    (tmp_path / "flipped.png").write_bytes(bytes(data))
    r = runner.invoke(app, ["verify", str(tmp_path / "flipped.png")])
    text = " ".join(r.output.split())
    assert r.exit_code == 1 and "[corrupt]" in text and "assertion.dataHash.mismatch" in text


def test_store_close_reaches_every_threads_connection(tmp_path):
    """Worker threads open their own connection; close() on any thread closes them all (the
    WAL files go with the last one), and the store opens a new one when used again."""
    import threading

    from genvis_trust.provenance.store import ProvenanceStore, close_open_stores

    db = tmp_path / "p.db"
    st = ProvenanceStore(db)
    ids = []
    workers = [threading.Thread(target=lambda: ids.append(st.reserve_id())) for _ in range(3)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    assert len(set(ids)) == 3
    assert (tmp_path / "p.db-wal").exists()  # four connections open: the main thread's and three workers'
    st.close()
    assert not (tmp_path / "p.db-wal").exists() and not (tmp_path / "p.db-shm").exists()
    assert st.reserve_id() not in ids  # usable again: a new connection
    close_open_stores()
    assert not (tmp_path / "p.db-wal").exists()
