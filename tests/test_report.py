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
        assert 'class="cbar"' in pages[name] and re.search(r'src="\.\./heat/[^"]+\.png"', pages[name])
        assert "p(generated)" in pages[name] or "Grad-CAM" in pages[name]
    assert len(scored) > 2
    for x in scored[2:]:
        assert 'class="cbar"' not in pages[x["input"]] and "--heatmaps" in pages[x["input"]]


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
