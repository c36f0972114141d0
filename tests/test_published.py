"""Published detector families against their reference code's logits, recorded as fixtures.

tests/fixtures/published/FAMILY.json holds what ``benchmarks/published_fidelity.py --fixtures``
measured with the reference repository's own code: the published key layout (names, shapes,
dtypes), the seed of the random weights filling it (:func:`seeded_state_dict`, the published
weights being out of reach), and the reference logits of the small images beside it. Here the
same checkpoint is rebuilt from the layout and the seed, saved the way the publisher's files are,
imported, and scored by the toolkit; the logits must agree within the fixture's tolerance (1e-4).
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from genvis_trust.detectors import Detector, list_families
from genvis_trust.detectors.importing import import_checkpoint
from genvis_trust.detectors.published import PublishedCard, seeded_state_dict
from genvis_trust.io import load_image

FIX = Path(__file__).parent / "fixtures" / "published"
# the whole-image families of the core layout (the CLIP/ViT families' fixtures, another format, are
# read by tests/test_published_clip.py)
FAMILIES = sorted(p.stem for p in FIX.glob("*.json") if "layout" in json.loads(p.read_text()))


def fixture(family: str) -> dict:
    return json.loads((FIX / f"{family}.json").read_text())


def published_checkpoint(fx: dict, path: Path) -> Path:
    """The fixture's checkpoint: seeded weights in the published layout, saved the publisher's way."""
    template = {k: torch.zeros(shape, dtype=getattr(torch, dtype)) for k, shape, dtype in fx["layout"]}
    state = seeded_state_dict(template, fx["seed"])
    torch.save({fx["checkpoint_key"]: state} if fx["checkpoint_key"] else state, path)
    return path


def test_fixtures_cover_the_families_of_this_change():
    assert {"npr", "cnndetection", "safe"} <= set(FAMILIES)


@pytest.mark.parametrize("family", FAMILIES)
def test_published_family_matches_the_reference_logits(family, tmp_path):
    fx = fixture(family)
    det = import_checkpoint(published_checkpoint(fx, tmp_path / "w.pth"), family)
    assert det.family == family and det.whole_image and not det.optimize_for_inference()
    assert det.card["published"]["commit"] == fx["reference_commit"]
    for name, ref in fx["reference_logits"].items():
        s = det.score(load_image(FIX / "images" / name).array)
        assert s.tiles == 1 and s.grid == (1, 1)
        assert abs(s.logit - ref) <= fx["tolerance"], (name, s.logit, ref)


def test_the_old_tile_path_does_not_match_npr_reference():
    """What the issue measured: NPR's checkpoint read as 224 px tiles misses the reference;
    the check above is able to fail."""
    fx = fixture("npr")
    template = {k: torch.zeros(shape, dtype=getattr(torch, dtype)) for k, shape, dtype in fx["layout"]}
    tiles = Detector.create("npr", patch=224, device="cpu", width=64, blocks=[3, 4])
    tiles.net.load_state_dict(seeded_state_dict(template, fx["seed"]))
    diffs = [abs(tiles.score(load_image(FIX / "images" / n).array).logit - ref) for n, ref in fx["reference_logits"].items()]
    assert max(diffs) > 100 * fx["tolerance"]


@pytest.mark.parametrize("family", FAMILIES)
def test_import_and_scan_from_the_command_line_give_the_reference_p(family, tmp_path):
    from typer.testing import CliRunner

    from genvis_trust.cli.main import app

    fx = fixture(family)
    ck = published_checkpoint(fx, tmp_path / "published.pth")
    r = CliRunner().invoke(app, ["detectors", "import", str(ck), "--arch", family, "--out", str(tmp_path / "det")])
    assert r.exit_code == 0, r.output
    assert "whole images" in r.output
    names = sorted(fx["reference_logits"])
    r = CliRunner().invoke(app, ["scan", *[str(FIX / "images" / n) for n in names], "--detector", str(tmp_path / "det"),
                                 "--json", "--device", "cpu"])
    assert r.exit_code in (0, 1), r.output
    recs = [json.loads(line) for line in r.stdout.splitlines() if line.strip().startswith("{")]
    if len(recs) == 1 and isinstance(recs[0].get("results"), list):
        recs = recs[0]["results"]
    assert len(recs) == len(names)
    for name, rec in zip(names, recs, strict=True):
        d = rec["detector"]
        want = 1.0 / (1.0 + np.exp(-fx["reference_logits"][name]))
        assert d["tiles"] == 1 and d["grid"] == [1, 1]
        assert abs(d["probability"] - want) <= 1e-4 + 1e-6, (name, d["probability"], want)
        assert "faces and regions not scored apart" in " ".join(d["notes"])


def _published_families():
    return sorted(n for n, f in list_families().items() if getattr(f.cls, "published", None) is not None)


@pytest.mark.parametrize("family", _published_families())
def test_every_published_family_has_a_full_card_and_reads_whole_images(family):
    """Registry-driven: a family carrying a card says everything the toolkit shows about it and
    turns an image into one float tensor and one logit."""
    fam = list_families()[family]
    card: PublishedCard = fam.cls.published
    assert card.publication and card.preprocessing and card.claimed_accuracy and card.licence
    assert re.fullmatch(r"[0-9a-f]{40}", card.commit) and card.repository.startswith("https://")
    assert card.weights and all(w.url.startswith("https://") and w.filename for w in card.weights)
    assert fam.checkpoint_filter_fn is not None
    for pkg in card.requires:
        pytest.importorskip(pkg.replace("-", "_").replace("_torch", ""))
    cfg = {"whole_image": True} if "whole_image" in inspect.signature(fam.cls.__init__).parameters else {}
    det = Detector.create(family, device="cpu", **cfg)
    assert det.whole_image and det.published["repository"] == card.repository
    img = np.random.default_rng(0).integers(0, 256, (61, 83, 3), dtype=np.uint8)
    x = det.net.prepare_input(img)
    assert x.dtype == torch.float32 and x.dim() == 3 and x.shape[0] == 3
    s = det.score(img)
    assert s.tiles == 1 and np.isfinite(s.logit)
    with pytest.raises(ValueError, match="whole images"):
        det.tiles(img)


def test_engine_groups_equal_shapes_and_keeps_input_order(tmp_path):
    """The engine's whole-image path: equal shapes batched, others alone, results in input order
    and equal to one-at-a-time scoring."""
    from genvis_trust.scoring.engine import ScoringEngine

    torch.manual_seed(0)
    det = Detector.create("npr", device="cpu", width=8, blocks=[1, 1], whole_image=True)
    rng = np.random.default_rng(1)
    imgs = [rng.integers(0, 256, s, dtype=np.uint8) for s in [(40, 50, 3), (33, 41, 3), (40, 50, 3), (64, 64, 3), (40, 50, 3)]]
    alone = [det.score(im).logit for im in imgs]
    recs = list(ScoringEngine(det, batch_size=2).score_arrays(imgs))
    np.testing.assert_allclose([r.score.logit for r in recs], alone, rtol=0, atol=1e-6)


def test_training_checkpoint_with_its_arguments_imports(tmp_path):
    """SAFE's files keep ``args`` (an argparse.Namespace) beside the weights: read as data."""
    import argparse

    fx = fixture("safe")
    template = {k: torch.zeros(shape, dtype=getattr(torch, dtype)) for k, shape, dtype in fx["layout"]}
    f = tmp_path / "checkpoint-best.pth"
    torch.save({"model": seeded_state_dict(template, 0), "epoch": 3, "args": argparse.Namespace(input_size=256, model="SAFE")}, f)
    assert import_checkpoint(f, "safe").family == "safe"


def test_tile_only_views_refuse_or_skip_cleanly(tmp_path):
    """Heat maps and Grad-CAM need the toolkit's tiles: `detectors explain` refuses with a clear
    message, `scan --html` writes its report without a heat map."""
    from typer.testing import CliRunner

    from genvis_trust.cli.main import app

    ck = published_checkpoint(fixture("npr"), tmp_path / "NPR.pth")
    assert CliRunner().invoke(app, ["detectors", "import", str(ck), "--arch", "npr", "--out", str(tmp_path / "det")]).exit_code == 0
    img = str(FIX / "images" / "coffee_67x45.png")
    r = CliRunner().invoke(app, ["detectors", "explain", img, "--detector", str(tmp_path / "det"), "--out", str(tmp_path / "h.png")])
    assert r.exit_code == 2 and "reads whole images" in r.output
    r = CliRunner().invoke(app, ["scan", img, "--detector", str(tmp_path / "det"), "--device", "cpu", "--html", str(tmp_path / "r.html")])
    assert r.exit_code in (0, 1), r.output
    html = (tmp_path / "r.html").read_text()
    assert "coffee_67x45" in html and "detector heat map" not in html
