"""The audit report as a place to work: every file listed with a page of its own, heat
maps with a colour scale, a histogram panel per class, timings that match the CLI, and the
page checked in a real headless browser (Chromium) when one is installed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from genvis_trust.cli.main import app
from genvis_trust.detectors import Detector
from genvis_trust.io import encode_image

runner = CliRunner()
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def photo(seed: int, size: int) -> np.ndarray:
    r = np.random.default_rng(seed)
    small = r.integers(0, 256, (8, 8, 3)).astype(np.uint8)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    """A small folder audited through the CLI, with a random (untrained) detector."""
    import torch

    base = tmp_path_factory.mktemp("report")
    torch.manual_seed(0)
    det = base / "det"
    Detector.create("cnn", device="cpu").save(det, card={"name": "rnd"})
    root = base / "data"
    for i in range(3):
        (root / "photos").mkdir(parents=True, exist_ok=True)
        (root / "photos" / f"p{i}.jpg").write_bytes(encode_image(photo(i, 160), "JPEG", quality=90))
    (root / "samples").mkdir()
    (root / "samples" / "s0.png").write_bytes(encode_image(photo(9, 32)))
    (root / "broken").mkdir()
    (root / "broken" / "notes.png").write_bytes(b"not an image")
    os.symlink("../photos/p0.jpg", root / "samples" / "link.jpg")
    out = base / "out"
    r = runner.invoke(app, ["audit", str(root), "--out", str(out), "--detector", str(det), "--device", "cpu",
                            "--no-provenance", "--workers", "1", "--heatmaps", "2"])
    assert r.exit_code == 1, r.output  # 1: the broken file
    recs = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    return {"root": root, "out": out, "det": det, "records": recs, "output": r.output}


def _rows(html: str) -> list[dict]:
    return [dict(re.findall(r'data-(\w+)="([^"]*)"', m)) | {"href": h}
            for m, h in re.findall(r'<tr (data-name=[^>]*)>.*?<a href="([^"]+)"', html, re.S)]


def test_every_file_is_listed_and_has_a_page(audited):
    out, recs = audited["out"], audited["records"]
    html = (out / "report.html").read_text(encoding="utf-8")
    rows = _rows(html)
    assert sorted(r["name"] for r in rows) == sorted(x["input"] for x in recs)
    by = {x["input"]: x for x in recs}
    for row in rows:
        rec = by[row["name"]]
        assert row["verdict"] == rec["verdict"] and row["folder"] == rec["input"].split("/")[0]
        page = (out / row["href"]).read_text(encoding="utf-8")
        assert f'class="v {rec["verdict"]}"' in page and "all files" in page
        for e in rec["evidence"]:
            assert e["kind"] in page
        if rec["error"]:
            assert rec["error"]["code"] in page
        else:
            assert float(row["p"]) == pytest.approx(rec["detector"]["probability"], abs=1e-9)
            thumbs = re.findall(r'src="\.\./thumbs/([^"]+)"', page)
            assert thumbs and all((out / "report" / "thumbs" / t).is_file() for t in thumbs)
    assert "link to photos/p0.jpg" in " ".join(html.split())


def test_heat_maps_have_a_colour_scale_and_a_limit(audited):
    out, recs = audited["out"], audited["records"]
    scored = sorted((x for x in recs if x.get("detector")), key=lambda x: -x["detector"]["probability"])
    pages = {}
    for f in (out / "report" / "files").glob("*.html"):
        text = f.read_text(encoding="utf-8")
        pages[re.search(r"<h1>(.*?)</h1>", text)[1]] = text
    top = [x["input"] for x in scored[:2]]
    for name in top:  # --heatmaps 2: the two highest-scoring files
        assert 'class="cbar"' in pages[name] and re.search(r'src="\.\./heat/[^"]+\.(png|jpg)"', pages[name])
        assert "p(generated)" in pages[name] or "Grad-CAM" in pages[name]
    assert len(scored) > 2
    for x in scored[2:]:
        # drawn from the tiles the scan scored (no detector pass, so no limit), else the limit is said
        page = pages[x["input"]]
        if x["detector"].get("tile_map"):
            assert 'class="cbar"' in page and "the tiles the scan scored" in page
        else:
            assert 'class="cbar"' not in page and "--heatmaps" in page
    assert any(x["detector"].get("tile_map") for x in scored) and any(not x["detector"].get("tile_map") for x in scored)


def test_timings_in_report_match_the_cli(audited):
    summary = json.loads((audited["out"] / "summary.json").read_text())
    said = re.search(r"scanned in ([\d.]+)s", audited["output"])
    assert said and float(said[1]) == pytest.approx(summary["elapsed_s"], abs=0.05)
    assert f"in {summary['elapsed_s']} s" in (audited["out"] / "report.html").read_text(encoding="utf-8")
    assert summary["load_s"] + summary["scan_s"] == pytest.approx(summary["elapsed_s"], abs=0.05)


def test_histogram_gives_every_class_a_panel(tmp_path):
    from genvis_trust.report import plots

    rng = np.random.default_rng(0)
    one = plots.histogram(tmp_path / "one.png", {"likely_generated": rng.random(5000)}, "t", "p")
    two = plots.histogram(tmp_path / "two.png", {"likely_generated": rng.random(5000), "no_evidence": rng.random(3) / 10},
                          "t", "p")
    h1, h2 = Image.open(one).size[1], Image.open(two).size[1]
    assert h2 > h1 * 1.25  # a panel of its own for the 3-image class, not bars hidden under 5000


def test_scan_html_heat_map_has_colour_bar(tmp_path, audited):
    f = tmp_path / "a.png"
    f.write_bytes(encode_image(photo(3, 96)))
    r = runner.invoke(app, ["scan", str(f), "--html", str(tmp_path / "r.html"), "--detector", str(audited["det"]),
                            "--device", "cpu", "--no-provenance"])
    assert r.exit_code == 0, r.output
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert 'class="cbar"' in page and "tile p(generated)" in page
    assert re.search(r"HTML report [━ ]+1/1", r.output), r.output  # rendering shows progress too


def _chromium(*args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tempfile.mkdtemp()}"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (apt-get install chromium)")
def test_report_works_in_a_real_browser(audited, tmp_path):
    out, recs = audited["out"], audited["records"]
    n_err = sum(x["verdict"] == "error" for x in recs)
    # the page's script ran (body marked ready) and applied the filter named in the address
    r = _chromium("--dump-dom", f"file://{out / 'report.html'}#verdict=error")
    assert 'data-ready="1"' in r.stdout, r.stderr[-2000:]
    assert f"{n_err} of {len(recs)} shown" in r.stdout
    shot = tmp_path / "shot.png"
    _chromium(f"--screenshot={shot}", "--window-size=1200,900", f"file://{out / 'report.html'}")
    img = np.asarray(Image.open(shot).convert("L"))
    assert img.shape == (900, 1200) and img.std() > 10  # rendered content, not a blank page


def _synthetic_records(n: int) -> list[dict]:
    """Records as a scan writes them (schema 1.1), of every verdict, a tampered one among them."""
    ood = ("outside what it was trained on: image is 32x32, smaller than the 128px native-resolution crops "
           "the detector reads")
    sens = {"orig": {"tpr_pooled": 0.035, "real_fpr": 0.042}, "generators": 19}
    kinds = ["no_evidence", "likely_generated", "error", "skipped", "generated", "uncertain", "no_evidence"]
    recs = []
    for i in range(n):
        v = kinds[i % len(kinds)]
        p = {"no_evidence": 0.1, "likely_generated": 0.97, "uncertain": 0.55, "generated": 0.9}.get(v)
        ev = [{"kind": "c2pa", "strength": "cryptographic", "summary": "no C2PA manifest", "indicates": "none", "details": {}},
              {"kind": "metadata", "strength": "declared", "summary": "no marker", "indicates": "none", "details": {}}]
        if p is not None:
            text = f"detector default: p(generated)={p:.2f} (calibrated, 1 tiles)"
            details = {"probability": p}
            if v == "likely_generated":
                text += "; " + ood
            if v == "no_evidence":
                details["sensitivity"] = sens
            ev.append({"kind": "detector", "strength": "learned", "summary": text,
                       "indicates": "generated" if p >= 0.5 else "none", "details": details})
        if v == "generated":
            ev.append({"kind": "watermark", "strength": "statistical", "summary": "genvis-trust watermark: record 1",
                       "indicates": "generated", "details": {}})
        rec = {"schema_version": "1.1", "input": f"d{i % 5}/f{i:05d}.jpg", "verdict": v, "flags": [],
               "summary": v, "evidence": ev if v not in ("error", "skipped") else [], "image": {},
               "detector": {"probability": p, "logit": 0.0} if p is not None else None, "error": None}
        if v == "error":
            rec["error"] = {"code": "truncated", "message": "file ends early", "path": rec["input"]}
        if v == "skipped":
            rec["skipped"] = {"code": "text", "message": "text file, not media"}
        if i == n - 1:  # the last one written is the one the list must show first
            rec["flags"] = ["tampered"]
            rec["summary"] = "TAMPERED (C2PA manifest present but invalid); " + v
        recs.append(rec)
    return recs


def _report_of(recs: list[dict], out) -> str:
    from genvis_trust.audit import RESULTS, summarize, write_summary

    out.mkdir(parents=True)
    (out / RESULTS).write_text("".join(json.dumps(r) + "\n" for r in recs))
    write_summary(out, summarize(out / RESULTS), detector=None)
    return (out / "report.html").read_text(encoding="utf-8")


def test_report_lists_what_matters_first_and_states_caveats_once(tmp_path):
    recs = _synthetic_records(70)
    html = _report_of(recs, tmp_path / "out")
    rows = _rows(html)
    assert len(rows) == 70
    assert rows[0]["flags"] == "tampered" and "TAMPERED" in html
    order = [r["verdict"] for r in rows[1:]]
    want = ["generated", "likely_generated", "error", "uncertain", "no_evidence", "skipped"]
    assert order == sorted(order, key=want.index)  # tampered, generated, likely, errors, uncertain, no evidence
    assert [int(r["order"]) for r in rows] == sorted(int(r["order"]) for r in rows)
    # the out-of-domain sentence of ten detector rows: once, referenced from each row
    assert html.count("outside what it was trained on") == 1 and html.count('href="#caveat-1"') == 10
    # a no-evidence row says what was checked and what the detector's silence is worth
    body = " ".join(html.split())
    assert "checked C2PA, metadata, detector: nothing found; p=0.10 below 0.5 (the detector caught 3.5% of unseen generators" in body
    assert '<option value="tampered">tampered (1)</option>' in html
    assert "Skipped, not media: 10 (text 10)" in body


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (apt-get install chromium)")
def test_ten_thousand_rows_open_and_filter_in_a_real_browser(tmp_path):
    import time

    recs = _synthetic_records(10_000)
    _report_of(recs, tmp_path / "out")
    page = tmp_path / "out" / "report.html"
    t0 = time.time()
    r = _chromium("--dump-dom", f"file://{page}#verdict=error")
    took = time.time() - t0
    assert 'data-ready="1"' in r.stdout, r.stderr[-2000:]
    n_err = sum(x["verdict"] == "error" for x in recs)
    assert f"{n_err} of 10000 shown" in r.stdout and "page 1 of 8" in r.stdout
    assert r.stdout.count("<tr data-name=") == 200  # one page of rows in the document, not ten thousand
    r = _chromium("--dump-dom", f"file://{page}#flag=tampered")
    assert "1 of 10000 shown" in r.stdout
    assert took < 60, took


def test_audit_pictures_come_from_the_pixels_the_scan_decoded(tmp_path, monkeypatch):
    """Thumbnails, page images and heat maps are written as each image is scanned; writing the
    report reads no image again (and runs no detector pass for files with a tile map)."""
    import torch

    from genvis_trust.audit import run_audit
    from genvis_trust.report import audit_report as ar
    from genvis_trust.scan import Scanner

    torch.manual_seed(0)
    Detector.create("cnn", device="cpu").save(tmp_path / "det", card={"name": "rnd"})
    root = tmp_path / "data"
    root.mkdir()
    for i in range(3):
        (root / f"p{i}.jpg").write_bytes(encode_image(photo(30 + i, 300), "JPEG", quality=90))
    reads = []
    for name in ("_decode_small", "heat_map"):
        orig = getattr(ar, name)
        monkeypatch.setattr(ar, name, lambda *a, _o=orig, _n=name, **k: reads.append(_n) or _o(*a, **k))
    s = Scanner(tmp_path / "det", device="cpu", workers=1)
    try:
        run_audit(root, tmp_path / "out", scanner=s)
    finally:
        s.close()
    assert reads == []
    pages = list((tmp_path / "out" / "report" / "files").glob("*.html"))
    assert len(pages) == 3
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert "the tiles the scan scored" in text and 'class="cbar"' in text
        assert all((page.parent / src).is_file() for src in re.findall(r'src="(\.\./[^"]+)"', text))
