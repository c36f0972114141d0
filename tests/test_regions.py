"""Regions and faces: region maps, the strongest-region rule in scan, face crops with their
boxes, localisation metrics against masks, spliced corpora and the CLI that reports them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from genvis_trust.cli.main import app
from genvis_trust.datasets import get_source
from genvis_trust.datasets.corpus import CorpusWriter, read_corpus
from genvis_trust.detectors import Detector
from genvis_trust.io import encode_image
from genvis_trust.regions import (
    REGION_MARGIN,
    dense_positions,
    evaluate_localisation,
    localisation_metrics,
    masked_items,
    region_map,
    strongest_region,
)


class Brightness(torch.nn.Module):
    """A stand-in network whose logit is the tile's mean red value, scaled: bright = generated."""

    def forward(self, x):
        return (x[:, 0].mean(dim=(1, 2)) - 0.5) * 20


def bright_detector(patch: int = 32) -> Detector:
    return Detector("cnn", Brightness(), net_config={}, patch=patch, device="cpu", name="bright")


def dark_with_square(h=192, w=192, box=(96, 64, 40, 40), seed=0):
    r = np.random.default_rng(seed)
    img = r.integers(20, 60, (h, w, 3)).astype(np.uint8)
    x, y, bw, bh = box
    img[y : y + bh, x : x + bw, 0] = 250
    mask = np.zeros((h, w), bool)
    mask[y : y + bh, x : x + bw] = True
    return img, mask


def test_dense_positions_cover_every_pixel():
    pos = dense_positions(100, 130, 32, 16)
    cover = np.zeros((100, 130), int)
    for y, x in pos:
        cover[y : y + 32, x : x + 32] += 1
    assert cover.min() >= 1 and max(y for y, _ in pos) == 68 and max(x for _, x in pos) == 98


def test_region_map_localises_a_bright_square():
    det = bright_detector()
    img, mask = dark_with_square()
    rm = region_map(det, img)
    assert rm.stride == 16 and rm.pixel_logits().shape == mask.shape
    z = rm.pixel_logits()
    m = localisation_metrics(det.probabilities(z.ravel()).reshape(z.shape), mask)
    assert m["auc"] > 0.95 and m["recall"] > 0.5 and 0.3 < m["iou"] <= 1.0
    # the map is capped: a widened stride, said in the notes
    assert len(region_map(det, img, max_tiles=20).logits) <= 20


def test_localisation_metrics_known_values():
    mask = np.zeros((10, 10), bool)
    mask[:5] = True
    p = np.zeros((10, 10))
    p[:5, :5] = 0.9  # half the mask found, nothing outside it
    m = localisation_metrics(p, mask)
    assert m["precision"] == 1.0 and m["recall"] == 0.5
    assert m["f1"] == pytest.approx(2 / 3) and m["iou"] == pytest.approx(0.5)
    assert m["auc"] == pytest.approx(0.75)
    assert localisation_metrics(np.full((4, 4), 0.7), np.zeros((4, 4), bool))["auc"] is None  # one class only


def test_strongest_region_rule_needs_a_region_that_stands_out():
    det = bright_detector()
    img, _ = dark_with_square(box=(96, 64, 32, 32))
    s = det.score(img)
    assert s.probability < 0.5  # the whole-image average hides the square
    r = strongest_region(det, s)
    assert r.fires and r.margin >= REGION_MARGIN and r.box == [96, 64, 32, 32]
    flat = det.score(np.full((192, 192, 3), 40, np.uint8))
    assert not strongest_region(det, flat).fires
    assert strongest_region(det, det.score(img[:32, :48])) is None  # fewer than MIN_TILES tiles


def test_the_rule_reads_the_margin_fitted_for_its_detector():
    from genvis_trust.detectors import load_detector
    from genvis_trust.regions import region_margin

    det = bright_detector()
    img, _ = dark_with_square(box=(96, 64, 32, 32))
    s = det.score(img)
    standing = strongest_region(det, s).margin  # how far the square's tile stands out
    assert region_margin(det) == REGION_MARGIN  # no fitted margin on the card: the default
    det.card = {"region_rule": {"margin": standing + 0.5}}
    r = strongest_region(det, s)
    assert not r.fires and r.rule_margin == standing + 0.5 and f"{standing + 0.5:g}" in r.to_dict()["rule"]
    assert strongest_region(det, s, margin=standing - 0.5).fires  # an explicit margin wins
    # the bundled default detector carries the margin fitted on validation photographs
    rule = load_detector("default", device="cpu").card["region_rule"]
    assert rule["margin"] > 0 and "regions" in rule["result"] and rule["fitted_on"].startswith("photos-native/val")


def test_scan_reports_the_region_and_changes_the_verdict():
    from genvis_trust.scan import Scanner

    det = bright_detector()
    img, _ = dark_with_square(box=(96, 64, 32, 32))
    plain = np.random.default_rng(1).integers(20, 60, (192, 192, 3)).astype(np.uint8)
    sc = Scanner(det, provenance=False, check_stability=False, faces=False)
    a, b = list(sc.scan([img, plain]))
    assert a.verdict == "likely_generated" and "in one region" in a.summary
    reg = next(e for e in a.evidence if e.kind == "region")
    assert reg.indicates == "edited" and reg.details["box"] == [96, 64, 32, 32]
    assert json.loads(json.dumps(a.to_dict()))["detector"]["region"]["fires"] is True
    assert b.verdict == "no_evidence"
    assert next(e for e in b.evidence if e.kind == "region").indicates == "none"


def test_an_advisory_rule_reports_the_region_but_keeps_the_verdict():
    """A detector whose card marks its fitted rule advisory (it found no spliced region in
    validation, as for the bundled default) still reports the region, but the verdict stays."""
    from genvis_trust.scan import Scanner

    det = bright_detector()
    det.card = {"region_rule": {"margin": REGION_MARGIN, "changes_verdict": False}}
    img, _ = dark_with_square(box=(96, 64, 32, 32))
    (a,) = Scanner(det, provenance=False, check_stability=False, faces=False).scan([img])
    reg = next(e for e in a.evidence if e.kind == "region")
    assert reg.details["fires"] is True and reg.details["changes_verdict"] is False
    assert reg.indicates == "none" and "advisory only" in reg.summary
    assert a.verdict == "no_evidence"


def test_out_of_domain_region_does_not_fire():
    from genvis_trust.scan import Scanner

    det = bright_detector()
    det.card = {"domain": {"photographic": True}}
    img = np.full((192, 192, 3), 40, np.uint8)  # exactly flat: not a photograph
    img[64:96, 96:128, 0] = 250
    (res,) = Scanner(det, provenance=False, check_stability=False, faces=False).scan([img])
    reg = next(e for e in res.evidence if e.kind == "region")
    assert reg.indicates == "none" and "not assessed" in reg.summary and res.verdict == "no_evidence"


def test_faces_found_scored_and_small_ones_not_scored():
    import cv2
    from skimage.data import astronaut

    from genvis_trust.faces import find_faces, score_faces

    img = astronaut()
    boxes = find_faces(img)
    assert len(boxes) == 1
    x, y, w, h = boxes[0]
    assert abs(x - 178) < 15 and abs(y - 74) < 15 and 70 < w < 100  # her face
    det = bright_detector(patch=128)
    (small,) = score_faces(det, img, det.score(img))
    assert small.status == "too_small" and small.probability is None
    big = cv2.resize(img, (1024, 1024), interpolation=cv2.INTER_CUBIC)
    (face,) = score_faces(det, big, det.score(big))
    assert face.status == "scored" and face.stride == 64 and face.tiles >= 4
    assert face.crop[2] >= 128 and face.probability is not None


def test_face_cascade_imports_no_scipy_linalg_and_finds_the_same_faces(tmp_path):
    """The cascade is imported without scipy.linalg (start-up time of every scan): same faces,
    and colour input (the only use of the stand-in rgb2gray) gives the same detections as with
    scikit-image's colour module imported first."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from skimage.data import astronaut, chelsea

    from genvis_trust.io import encode_image

    paths = []
    for i, im in enumerate([astronaut(), chelsea(), np.concatenate([astronaut(), astronaut()], 1)]):
        paths.append(tmp_path / f"{i}.png")
        paths[-1].write_bytes(encode_image(im))
    code = (
        "import sys, json, numpy as np\n"
        "from PIL import Image\n"
        "if sys.argv[1] == 'colour-first': import skimage.color.colorconv\n"
        "from genvis_trust.faces import find_faces, _cascade\n"
        "imgs = [np.asarray(Image.open(p).convert('RGB')) for p in sys.argv[2:]]\n"
        "boxes = [find_faces(im) for im in imgs]\n"
        "linalg = 'scipy.linalg' in sys.modules\n"
        "colour = [_cascade().detect_multi_scale(img=im, scale_factor=1.2, step_ratio=1.5, min_size=(24, 24),\n"
        "          max_size=im.shape[:2], min_neighbor_number=5) for im in imgs[:1]]\n"
        "print(json.dumps([boxes, colour, linalg]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = {}
    for mode in ("plain", "colour-first"):
        r = subprocess.run([sys.executable, "-c", code, mode, *map(str, paths)], capture_output=True, text=True,
                           timeout=300, env=env)
        assert r.returncode == 0, r.stderr
        out[mode] = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["plain"][2] is False and out["colour-first"][2] is True
    assert out["plain"][:2] == out["colour-first"][:2]
    assert out["plain"][0][0] == [[176, 77, 82, 82]] and len(out["plain"][1][0]) == 1


def test_a_face_that_stands_out_is_evidence():
    from genvis_trust.faces import face_evidence, score_faces

    det = bright_detector()
    img, _ = dark_with_square(box=(96, 64, 48, 48))
    (face,) = score_faces(det, img, det.score(img), boxes=[[100, 68, 40, 40]])
    assert face.fires and face.margin >= REGION_MARGIN
    ev = face_evidence(face, 1, 0)
    assert ev["kind"] == "face" and ev["indicates"] == "edited" and ev["details"]["box"] == [100, 68, 40, 40]


def test_scan_reports_faces_with_boxes_and_draws_them(tmp_path):
    from skimage.data import astronaut

    from genvis_trust.report.html import draw_boxes, local_boxes
    from genvis_trust.scan import Scanner

    det = bright_detector(patch=128)
    (res,) = Scanner(det, provenance=False, check_stability=False).scan([astronaut()])
    faces = [e for e in res.evidence if e.kind == "face"]
    assert len(faces) == 1 and "too small to score" in faces[0].summary
    assert res.to_dict()["detector"]["faces"][0]["status"] == "too_small"
    boxes = local_boxes(res.to_dict()["detector"])
    pic = draw_boxes(np.zeros((256, 256, 3), np.uint8), boxes, (512, 512, 3))
    x, y, w, _ = res.to_dict()["detector"]["faces"][0]["box"]
    assert pic[y // 2, x // 2 + w // 4].any()  # the box's top edge, at half scale


def write_masked_corpus(root, n=3, size=160):
    with CorpusWriter(root, card={"about": "test"}) as w:
        for i in range(n):
            img, mask = dark_with_square(size, size, box=(40 + 10 * i, 50, 48, 40), seed=i)
            w.add(img, label="generated", source="test", key=str(i), group=str(i), family="square", mask=mask)


def test_evaluate_localisation_on_a_masked_corpus(tmp_path):
    write_masked_corpus(tmp_path / "c")
    items = list(masked_items(get_source(str(tmp_path / "c"))))
    assert len(items) == 3 and items[0][2].dtype == bool and items[0][2].sum() == 48 * 40
    rep = evaluate_localisation(bright_detector(), items)
    s = rep["summary"]
    assert s["images"] == 3 and s["pixel_auc_pooled"] > 0.95 and s["iou_mean"] > 0.3 and s["rule_hits"] == 1.0


def test_splice_corpus_replaces_only_the_masked_pixels(tmp_path):
    from genvis_trust.datasets.base import Sample
    from genvis_trust.datasets.splice import random_region, splice, splice_corpus

    rng = np.random.default_rng(0)
    mask, desc = random_region(200, 300, rng, (0.05, 0.1))
    assert 0.03 < mask.mean() < 0.12 and desc["shape"] in ("ellipse", "rectangle")
    img = rng.integers(0, 256, (200, 300, 3)).astype(np.uint8)
    out = splice(img, mask, lambda win: 255 - win)
    assert (out[~mask] == img[~mask]).all() and (out[mask] == 255 - img[mask]).all()

    samples = [Sample(img[:96, :128].copy(), "real", "test", f"k{i}", f"g{i}", meta={"split": "test"}) for i in range(2)]
    assert splice_corpus(samples, tmp_path / "s", device="cpu", max_side=None) == 2
    c = read_corpus(tmp_path / "s")
    rec = c.records[0]
    m = c.load_mask(rec)
    spliced = get_source(str(tmp_path / "s")).split_items()[0].load()
    assert m.any() and (spliced[~m] == img[:96, :128][~m]).all() and not (spliced[m] == img[:96, :128][m]).all()
    assert rec["label"] == "generated" and rec["family"] == "taef2-splice" and rec["meta"]["split"] == "test"


def test_cli_evaluate_prints_localisation_and_regions_writes_the_picture(tmp_path):
    torch.manual_seed(0)
    Detector.create("cnn", device="cpu").save(tmp_path / "det", card={"name": "rnd"})
    write_masked_corpus(tmp_path / "c")
    r = CliRunner().invoke(app, ["evaluate", str(tmp_path / "det"), "--real", "builtin-photos", "--real-n", "4",
                                 "--fake", str(tmp_path / "c"), "--split", "all", "--device", "cpu", "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    s = rep["localisation"][str(tmp_path / "c")]["summary"]
    assert s["images"] == 3 and 0.0 <= s["pixel_auc_pooled"] <= 1.0 and 0.0 <= s["iou_mean"] <= 1.0
    r = CliRunner().invoke(app, ["evaluate", str(tmp_path / "det"), "--real", "builtin-photos", "--real-n", "4",
                                 "--fake", str(tmp_path / "c"), "--split", "all", "--device", "cpu"])
    assert r.exit_code == 0 and "localisation against masks" in r.stdout and "pixel AUC" in r.stdout

    img, mask = dark_with_square(160, 160)
    (tmp_path / "x.png").write_bytes(encode_image(img))
    (tmp_path / "m.png").write_bytes(encode_image(np.repeat((mask * 255).astype(np.uint8)[..., None], 3, 2)))
    r = CliRunner().invoke(app, ["detectors", "regions", str(tmp_path / "x.png"), "--mask", str(tmp_path / "m.png"),
                                 "--detector", str(tmp_path / "det"), "--out", str(tmp_path / "r.png"), "--device", "cpu", "--json"])
    assert r.exit_code == 0, r.output
    assert "pixel AUC" in r.stderr and json.loads(r.stdout)["localisation"]["mask_share"] == pytest.approx(mask.mean())
    from genvis_trust.io import load_image

    assert load_image(tmp_path / "r.png").width > 3 * 160  # image, map and mask side by side
    bad = CliRunner().invoke(app, ["detectors", "regions", str(tmp_path / "x.png"), "--mask", str(tmp_path / "r.png"),
                                   "--detector", str(tmp_path / "det"), "--out", str(tmp_path / "r2.png")])
    assert bad.exit_code != 0 and "mask is" in bad.output
