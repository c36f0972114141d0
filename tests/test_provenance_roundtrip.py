"""Stamp -> verify end to end, stripped copies, the store under concurrency, and the CLI."""

import json
import multiprocessing as mp
import threading

import pytest
from typer.testing import CliRunner

from genvis_trust.cli.main import app
from genvis_trust.datasets import get_source
from genvis_trust.io import encode_image, load_image
from genvis_trust.io import encode_image as enc
from genvis_trust.provenance.keys import init_keys, load_signing_material
from genvis_trust.provenance.stamp import stamp_array
from genvis_trust.provenance.store import ProvenanceStore
from genvis_trust.provenance.verify import verify_bytes


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("rt")
    init_keys(d / "keys")
    img = next(iter(get_source("builtin-photos", patch=320, n=1, seed=5, split="train"))).image
    return d, load_signing_material(d / "keys"), ProvenanceStore(d / "p.db"), img


def test_round_trip_trusted_payload_store(env):
    d, m, store, img = env
    res = stamp_array(img, d / "a.jpg", store=store, material=m, fmt="JPEG", generator="dcgan", family="gan",
                      checkpoint_sha256="ab" * 32)
    assert res.psnr_db > 30
    data = (d / "a.jpg").read_bytes()
    rep = verify_bytes(data, store=store, trust_anchors_pem=(d / "keys" / "ca.cert.pem").read_text())
    assert rep.c2pa.state == "Trusted"
    wm = rep.watermarks[0]
    assert wm["backend"] == "dwtDctSvd" and wm["detected"] and wm["payload"]["record_id"] == res.record_id
    assert rep.store["found"] and rep.store["record"]["id"] == res.record_id
    assert json.loads(json.dumps(rep.to_dict()))["schema_version"] == "1.1"
    assert {e.strength for e in rep.evidence} <= {"cryptographic", "statistical", "learned", "declared"}
    # without anchors: Valid
    assert verify_bytes(data, known_generators=False).c2pa.state == "Valid"
    # a flipped byte in the image data: Invalid with the data-hash mismatch
    b = bytearray(data)
    b[data.find(b"\xff\xda") + 60] ^= 0x55
    bad = verify_bytes(bytes(b), known_generators=False)
    assert bad.c2pa.state == "Invalid" and "assertion.dataHash.mismatch" in bad.c2pa.failure_codes


def test_stripped_jpeg80_recovered_via_watermark(env):
    d, m, store, img = env
    res = stamp_array(img, d / "b.png", store=store, material=m, fmt="PNG", generator="vae")
    pixels = load_image(d / "b.png").array
    stripped = encode_image(pixels, "JPEG", quality=80)  # Pillow default 4:2:0, no metadata
    rep = verify_bytes(stripped, store=store, known_generators=False)
    assert rep.c2pa.present is False
    assert rep.store["found"] and rep.store["path"] == "watermark"
    assert rep.store["record"]["id"] == res.record_id


def test_phash_fallback_when_watermark_is_gone(env):
    d, m, store, img = env
    res = stamp_array(img, d / "c.png", store=store, material=m, fmt="PNG", generator="flow")
    pixels = load_image(d / "c.png").array
    rep = verify_bytes(enc(pixels, "JPEG", quality=30), store=store, known_generators=False)
    # JPEG 30 removes the payload; the perceptual hash still finds a record of this picture
    if not rep.watermarks[0]["detected"]:
        assert rep.store["found"] and rep.store["path"] == "perceptual_hash"
    assert res.record_id > 0


def _writer(path, n, q):
    s = ProvenanceStore(path)
    ids = []
    for _ in range(n):
        rid = s.reserve_id()
        s.complete(rid, sha256=f"{rid}", phash="0" * 16, backend="dwtDctSvd")
        ids.append(rid)
    q.put(ids)


def test_store_concurrent_writers(tmp_path):
    path = tmp_path / "c.db"
    ProvenanceStore(path)
    q = mp.get_context("spawn").Queue()
    procs = [mp.get_context("spawn").Process(target=_writer, args=(path, 15, q)) for _ in range(2)]
    for p in procs:
        p.start()
    results = []
    threads = [threading.Thread(target=lambda: results.extend(_thread_ids(path, 15))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    ids = results + q.get(timeout=10) + q.get(timeout=10)
    assert len(ids) == len(set(ids)) == 60
    assert ProvenanceStore(path).count() == 60


def _thread_ids(path, n):
    s = ProvenanceStore(path)
    out = []
    for _ in range(n):
        rid = s.reserve_id()
        s.complete(rid, sha256="x", phash="0" * 16)
        out.append(rid)
    return out


def test_cli_keys_stamp_verify(tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["keys", "init", str(tmp_path / "k"), "--json"])
    assert r.exit_code == 0, r.output
    img = next(iter(get_source("builtin-photos", patch=288, n=1, seed=9, split="train"))).image
    src = tmp_path / "in.png"
    src.write_bytes(encode_image(img, "PNG"))
    (tmp_path / "tiny.png").write_bytes(encode_image(img[:100, :100], "PNG"))
    r = runner.invoke(app, ["stamp", str(src), str(tmp_path / "tiny.png"), "--out", str(tmp_path / "o"),
                            "--keys", str(tmp_path / "k"), "--generator", "ddpm", "--json"])
    assert r.exit_code == 1  # the tiny image fails, loudly; the other is stamped
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    ok = [x for x in lines if "error" not in x]
    assert len(ok) == 1 and "minimum" in [x for x in lines if "error" in x][0]["error"]
    r = runner.invoke(app, ["verify", ok[0]["path"], "--json", "--store", str(tmp_path / "o" / "provenance.db"),
                            "--trust-anchors", str(tmp_path / "k" / "ca.cert.pem")])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["c2pa"]["state"] == "Trusted" and rep["store"]["found"]
    r = runner.invoke(app, ["verify", str(src), "--backends", "bogus"])
    assert r.exit_code == 2
