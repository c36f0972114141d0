"""Real-resolution data path: bundled tiny autoencoder, photo corpus source, aligned reconstructions,
crop-before-augment training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from genvis_trust.datasets import CorpusWriter, SourceError, get_source, read_corpus
from genvis_trust.datasets.photos import NativePhotos, check_not_reserved
from genvis_trust.generators.reconstruct import reconstruct_corpus
from genvis_trust.generators.tiny_autoencoder import (
    TinyAutoencoder,
    list_autoencoders,
    load_autoencoder,
    save_autoencoder,
)


def _photo(seed: int, h: int = 72, w: int = 88) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([np.sin(x / (5 + seed)) , np.cos(y / 7), np.sin((x + y) / 11)], -1) * 90 + 128
    return np.clip(base + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def photo_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    with CorpusWriter(root, card={"about": "test photos"}) as w:
        for i, split in enumerate(["train", "train", "val", "test"]):
            w.add(_photo(i), label="real", source="test", key=f"p{i}", group=f"p{i}",
                  meta={"split": split, "origin": {"repository": "example/photos", "path": f"p{i}.png"}})
    return root


def test_bundled_taef2_loads_and_reconstructs_aligned():
    assert "taef2" in list_autoencoders()
    ae = load_autoencoder("taef2", device="cpu")
    card = ae.card
    assert card["origin"]["repository"] == "madebyollin/taesd" and len(card["origin"]["commit"]) == 40
    assert "MIT" in card["licence"]
    img = _photo(3, 61, 77)  # sides not multiples of 8: padded and cropped back
    rec = ae.reconstruct(img)
    assert rec.shape == img.shape and rec.dtype == np.uint8
    # a faithful but imperfect reconstruction: close to the input, not identical
    err = np.abs(rec.astype(int) - img.astype(int)).mean()
    assert 0.5 < err < 25, err
    # more faithful than a reconstruction of a different image
    other = np.abs(rec.astype(int) - _photo(4, 61, 77).astype(int)).mean()
    assert err < other


def test_autoencoder_save_load_roundtrip(tmp_path):
    torch.manual_seed(0)
    ae = TinyAutoencoder(latent_channels=4)
    save_autoencoder(ae, tmp_path / "ae", card={"name": "t"})
    back = load_autoencoder(tmp_path / "ae", device="cpu")
    x = torch.rand(1, 3, 16, 16)
    # weights are stored in fp16: equal to fp16 precision
    assert torch.allclose(back.decode(back.encode(x)), ae.half().float().decode(ae.encode(x)), atol=1e-2)
    assert json.loads((tmp_path / "ae" / "config.json").read_text())["kind"] == "autoencoder"


def test_reconstruct_corpus_keeps_pairing(photo_corpus, tmp_path):
    out = tmp_path / "recon"
    res = reconstruct_corpus(photo_corpus, out, autoencoder="taef2", device="cpu")
    assert res == {"written": 4, "errors": []}
    src, rec = read_corpus(photo_corpus), read_corpus(out)
    for a, b in zip(src.records, rec.records, strict=True):
        assert b["label"] == "generated" and b["family"] == "taef2-recon"
        assert b["group"] == a["group"]
        assert b["meta"]["split"] == a["meta"]["split"]
        assert b["meta"]["aligned_to"] == {"path": a["path"], "sha256": a["sha256"]}
        assert (b["width"], b["height"]) == (a["width"], a["height"])
    # a rerun refuses to overwrite; --resume continues without duplicating
    with pytest.raises(Exception, match="resume"):
        reconstruct_corpus(photo_corpus, out, autoencoder="taef2", device="cpu")
    assert reconstruct_corpus(photo_corpus, out, autoencoder="taef2", device="cpu", resume=True)["written"] == 4


def test_reconstruct_corpus_with_a_trained_kl_autoencoder(photo_corpus, tmp_path):
    from genvis_trust.generators import create_generator, save_generator
    from genvis_trust.generators.base import GeneratorError

    ae = create_generator("autoencoder", image_size=16, widths=[8, 8, 8]).eval()
    sha = save_generator(ae, tmp_path / "klae")
    res = reconstruct_corpus(photo_corpus, tmp_path / "recon", autoencoder=str(tmp_path / "klae"), device="cpu")
    assert res["written"] == 4
    src, rec = read_corpus(photo_corpus), read_corpus(tmp_path / "recon")
    assert rec.card["autoencoder"]["weights_sha256"] == sha
    for a, b in zip(src.records, rec.records, strict=True):
        assert b["family"] == "klae-recon" and b["checkpoint_sha256"] == sha
        assert (b["width"], b["height"]) == (a["width"], a["height"])  # odd sides padded and cropped back
    save_generator(create_generator("vae", image_size=16, latent_dim=4, width=8), tmp_path / "vae")
    with pytest.raises(GeneratorError, match="not an autoencoder"):
        reconstruct_corpus(photo_corpus, tmp_path / "r2", autoencoder=str(tmp_path / "vae"), device="cpu")


def test_native_photos_source_uses_manifest_splits(photo_corpus, tmp_path, monkeypatch):
    src = get_source("photos-native", root=photo_corpus, split="train")
    assert sorted(s.key for s in src) == ["images/000/000000.png", "images/000/000001.png"]
    assert len(NativePhotos(root=photo_corpus, split="test")) == 1
    monkeypatch.setenv("GENVIS_DATA", str(tmp_path / "nothing"))
    with pytest.raises(SourceError, match="build_photo_corpus"):
        get_source("photos-native")


def test_reserved_sources_are_refused(tmp_path):
    for origin in ({"repository": "CompVis/stable-diffusion"}, {"package": "plasma-workspace-wallpapers"},
                   {"repository": "contentauth/c2pa-python"}):
        with pytest.raises(SourceError, match="reserved"):
            check_not_reserved(origin)
    root = tmp_path / "bad"
    with CorpusWriter(root) as w:
        w.add(_photo(0), label="real", source="x", meta={"split": "train", "origin": {"repository": "deep-floyd/IF"}})
    with pytest.raises(SourceError, match="reserved"):
        list(NativePhotos(root=root))


def test_training_crops_before_augmenting(monkeypatch):
    """The augmentation sees a crop near the patch size, never the whole photograph."""
    from genvis_trust.detectors import training

    seen = []

    def aug(im, rng):
        seen.append(im.shape[:2])
        return im

    big = [np.zeros((1200, 1600, 3), np.uint8)] * 2
    data = training.LabeledImages(big, np.array([0, 1]), ["real", "g"], ["png", "png"])
    x, y = training._batch(data, np.array([0, 1]), 64, aug, np.random.default_rng(0), True, margin=2.0)
    assert x.shape == (2, 64, 64, 3)
    assert all(h <= 64 * 2 + 8 and w <= 64 * 2 + 8 for h, w in seen)


def test_fixed_patches_gives_several_crops_per_image():
    from genvis_trust.detectors.training import fixed_patches

    ims = [_photo(i, 100, 120) for i in range(3)]
    p = fixed_patches(ims, 32, crops=4)
    assert p.shape == (12, 32, 32, 3)
    assert not np.array_equal(p[0], p[1])  # not four copies of the centre
    assert np.array_equal(fixed_patches(ims, 32, crops=4), p)  # deterministic


def test_zero_shot_statistic_sign_and_training(tmp_path):
    """Trained on noisy 'camera' textures only, the coder finds smoothed copies less costly than
    it expects (negative gap -> positive logit), and training needs no generated images."""
    from genvis_trust.datasets import CorpusSource
    from genvis_trust.detectors import Detector
    from genvis_trust.detectors.training import TrainConfig, train_detector
    from genvis_trust.detectors.zeroshot import ZeroShotCoder

    root = tmp_path / "noisy"
    with CorpusWriter(root) as w:
        for i in range(8):
            w.add(_photo(i, 96, 96), label="real", source="t", group=f"g{i}", meta={"split": "train" if i < 6 else "val"})
    cfg = TrainConfig(steps=60, batch=8, lr=3e-3, jpeg_p=0, blur_p=0, eval_every=20, val_crops=4)
    res = train_detector(
        "zed", [CorpusSource(root, keep_splits=True, split="train")], [],
        real_val=[CorpusSource(root, keep_splits=True, split="val")], fake_val=[],
        patch=32, config=cfg, device="cpu", net_config={"width": 8, "levels": 2}, log=lambda m: None,
    )
    det = res.detector
    assert isinstance(det.net, ZeroShotCoder)
    assert res.metrics["real_reference"]["n"] == 8 and res.metrics["generated_families"] == []
    assert not det.calibrated  # thresholded at an FPR on real photos, not calibrated
    import cv2

    noisy = [_photo(i, 96, 96) for i in range(20, 24)]
    smooth = [cv2.GaussianBlur(im, (0, 0), 2.0) for im in noisy]
    z_noisy = np.array([det.score(im).logit for im in noisy])
    z_smooth = np.array([det.score(im).logit for im in smooth])
    assert (z_smooth > z_noisy).all(), (z_smooth, z_noisy)
    det.save(tmp_path / "zed")
    back = Detector.load(tmp_path / "zed", device="cpu")
    assert np.allclose([back.score(im).logit for im in noisy], z_noisy, atol=1e-4)


def test_reconstruction_of_a_jpeg_keeps_its_codec():
    """A JPEG original's reconstruction is a JPEG with the same quantisation tables, so the two
    classes never differ by codec."""
    import io

    from PIL import Image

    from genvis_trust.generators.reconstruct import encode_like
    from genvis_trust.io import encode_image

    img = _photo(1, 64, 64)
    png = encode_image(img, "PNG")
    assert encode_like(img, png) is None
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=63)
    out = encode_like(_photo(2, 64, 64), buf.getvalue())
    with Image.open(io.BytesIO(out)) as a, Image.open(io.BytesIO(buf.getvalue())) as b:
        assert a.format == "JPEG" and a.quantization == b.quantization


def _scan_with(det, images, check_stability: bool = False):
    from genvis_trust.scan import Scanner

    sc = Scanner(detector=det, device="cpu", provenance=False, check_stability=check_stability)
    try:
        return list(sc.scan(images, names=[f"im{i}" for i in range(len(images))]))
    finally:
        sc.close()


def test_out_of_domain_scores_are_not_presented_as_meaningful():
    from genvis_trust.detectors import Detector

    det = Detector.create("cnn", patch=32, device="cpu")
    det.card = {"domain": {"min_side": 64, "photographic": True, "small_images": "the bundled generators"}}
    photo, small = _photo(5, 96, 96), _photo(6, 40, 40)
    flat = np.full((96, 96, 3), 230, np.uint8)
    flat[30:60, 20:70] = (10, 80, 200)  # a drawn box on a flat page
    det.calibration = {"method": "platt", "a": 0.0, "b": -5.0}  # every p = 0.007
    r_photo, r_small, r_flat = _scan_with(det, [photo, small, flat])
    assert r_photo.detector["out_of_domain"] == []
    assert "detector p=0.01" in r_photo.summary and "not meaningful" not in r_photo.summary
    assert [o["code"] for o in r_small.detector["out_of_domain"]] == ["small"]
    assert r_small.verdict == "no_evidence" and "not meaningful here" in r_small.summary and "40x40" in r_small.summary
    assert [o["code"] for o in r_flat.detector["out_of_domain"]] == ["non_photographic"]
    det.calibration = {"method": "platt", "a": 0.0, "b": 5.0}  # every p = 0.993
    r_photo, r_small, r_flat = _scan_with(det, [photo, small, flat])
    assert r_photo.verdict == "likely_generated"
    assert r_small.verdict == "likely_generated"  # small images of the kind it was trained on still count
    assert r_flat.verdict == "no_evidence" and "not a photograph" in r_flat.summary



def test_small_images_count_only_at_the_sizes_and_above_the_p_the_card_names():
    from genvis_trust.detectors import Detector

    det = Detector.create("cnn", patch=32, device="cpu")
    det.card = {"domain": {"min_side": 64, "photographic": True, "small_images": "the bundled 40 px generators",
                           "small_sizes": [[40, 40]], "small_threshold": 0.9, "small_threshold_note": "fitted",
                           "small_sizes_note": "thumbnails flagged often"}}
    known, other = _photo(6, 40, 40), _photo(7, 48, 40)
    det.calibration = {"method": "platt", "a": 0.0, "b": 5.0}  # every p = 0.993
    r_known, r_other = _scan_with(det, [known, other])
    assert r_known.detector["out_of_domain"][0]["counts_above"] == 0.9
    assert r_known.verdict == "likely_generated"  # the known size, above its threshold: counts
    assert r_other.detector["out_of_domain"][0]["counts_above"] is None
    assert r_other.verdict == "no_evidence" and "40x48" in r_other.summary and "not used" in r_other.summary
    det.calibration = {"method": "platt", "a": 0.0, "b": 1.0}  # every p = 0.731: above 0.5, below the card's 0.9
    r_known, r_other = _scan_with(det, [known, other])
    assert r_known.verdict == "no_evidence" and "p >= 0.90" in r_known.summary
    assert r_other.verdict == "no_evidence"


def test_a_counted_small_image_is_checked_for_stability_against_its_own_threshold(monkeypatch):
    import math

    from genvis_trust.detectors import Detector, evaluation

    det = Detector.create("cnn", patch=32, device="cpu")
    det.card = {"domain": {"min_side": 64, "small_sizes": [[40, 40]], "small_threshold": 0.6}}
    det.calibration = {"method": "platt", "a": 0.0, "b": math.log(0.65 / 0.35)}  # every p = 0.65: counts above 0.6
    seen = []
    real = evaluation.stability
    monkeypatch.setattr(evaluation, "stability", lambda *a, **k: seen.append(k["threshold"]) or real(*a, **k))
    (r,) = _scan_with(det, [_photo(6, 40, 40)], check_stability=True)
    assert seen == [0.6]  # a copy below 0.6 would void the score: that is the flip to look for
    ev = next(e for e in r.evidence if e.kind == "detector")
    assert r.verdict == "likely_generated" and ev.indicates == "generated"
    (r,) = _scan_with(det, [_photo(7, 48, 40)], check_stability=True)  # a size the card does not name
    ev = next(e for e in r.evidence if e.kind == "detector")
    assert r.verdict == "no_evidence" and ev.indicates == "none" and "the score is not used" in ev.summary

def test_the_bundled_detector_counts_small_images_only_at_its_generators_size():
    from genvis_trust.detectors import load_detector

    det = load_detector("default", device="cpu")
    dom = det.card["domain"]
    assert dom["small_sizes"] == [[32, 32]] and 0.5 < dom["small_threshold"] < 0.7
    (k,) = det.domain_check(np.zeros((32, 32, 3), np.uint8) + 100)[:1]
    assert k["code"] == "small" and k["counts_above"] == dom["small_threshold"]
    thumb = det.domain_check(_photo(8, 75, 100))  # a camera thumbnail
    assert thumb[0]["code"] == "small" and thumb[0]["counts_above"] is None

def test_reconstruct_max_side_crops_on_the_jpeg_grid(photo_corpus, tmp_path):
    from genvis_trust.generators.reconstruct import centre_crop

    img, box = centre_crop(_photo(0, 100, 150), 64)
    assert img.shape == (64, 64, 3) and box[0] % 8 == 0 and box[1] % 8 == 0
    res = reconstruct_corpus(photo_corpus, tmp_path / "r", device="cpu", max_side=48, limit=1)
    rec = read_corpus(tmp_path / "r").records[0]
    assert res["written"] == 1 and rec["width"] == 48 and rec["height"] == 48
    assert rec["meta"]["aligned_to"]["crop"][2:] == [48, 48]


def test_image_level_calibration_with_an_fpr_budget():
    from genvis_trust.detectors import Detector
    from genvis_trust.detectors.training import calibrate_on_images

    torch.manual_seed(0)
    det = Detector.create("cnn", patch=32, device="cpu")
    real = [_photo(i, 48, 48) for i in range(20)]
    fake = [np.ascontiguousarray(_photo(100 + i, 48, 48)[:, ::-1]) for i in range(20)]
    fit = calibrate_on_images(det, real, fake, "platt", fpr=0.1)
    assert det.calibration["fpr_budget"] == 0.1 and fit["n_real"] == 20
    p_real = np.array([s.probability for s in det.score_many(real)])
    assert np.mean(p_real >= 0.5) <= 0.1 + 1e-9  # the budget holds on the images it was set on
    assert fit["threshold_fpr"] <= 0.1 + 1e-9


def test_stack_is_the_linear_combination_of_its_members():
    from genvis_trust.detectors.stack import StackNet

    torch.manual_seed(0)
    members = [{"family": "npr", "config": {"width": 8, "blocks": [1, 1]}, "patch": 64},
               {"family": "zed", "config": {"width": 8, "levels": 2}, "patch": 32}]
    net = StackNet(members, weights=[0.7, -1.3], bias=0.25).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        z = net.member_logits(x)
        # the 32 px member reads each 64 px tile as four sub-tiles and averages them
        subs = [net.members[1](x[:, :, i : i + 32, j : j + 32]) for i in (0, 32) for j in (0, 32)]
        assert torch.allclose(z[:, 1], torch.stack(subs, 1).mean(1), atol=1e-5)
        assert torch.allclose(z[:, 0], net.members[0](x), atol=1e-6)
        assert torch.allclose(net(x), 0.7 * z[:, 0] - 1.3 * z[:, 1] + 0.25, atol=1e-5)
    with pytest.raises(ValueError, match="weights"):
        StackNet(members, weights=[1.0])


def test_upscaled_inputs_are_out_of_domain():
    import cv2

    from genvis_trust.detectors.detector import domain_check

    dom = {"min_side": 64, "min_hf_share": 0.02}
    rng = np.random.default_rng(1)
    photo = np.clip(_photo(7, 200, 200).astype(int) + rng.normal(0, 8, (200, 200, 3)), 0, 255).astype(np.uint8)
    up = cv2.resize(photo, (400, 400), interpolation=cv2.INTER_CUBIC)
    assert domain_check(dom, photo) == []
    assert [o["code"] for o in domain_check(dom, up)] == ["upscaled"]
    assert domain_check({"min_side": 64}, up) == []  # only when the detector declares it


def test_upscaled_inputs_go_to_the_domain_head_when_the_detector_has_one():
    """A stack with an ``upscaled`` head scores up-scaled-looking inputs with the head's own
    combination and threshold (instead of voiding them); inputs with any other domain reason,
    or with a second reason beside it, stay void."""
    import cv2

    from genvis_trust.detectors import Detector

    torch.manual_seed(0)
    members = [{"family": "npr", "config": {"width": 8, "blocks": [1, 1]}, "patch": 64},
               {"family": "zed", "config": {"width": 8, "levels": 2}, "patch": 32}]
    det = Detector.create("stack", patch=64, device="cpu", members=members, weights=[1.0, 0.0], bias=0.0)
    det.card = {"domain": {"min_side": 64, "min_hf_share": 0.02, "photographic": True}}
    rng = np.random.default_rng(1)
    photo = np.clip(_photo(7, 128, 128).astype(int) + rng.normal(0, 8, (128, 128, 3)), 0, 255).astype(np.uint8)
    up = cv2.resize(photo, (256, 256), interpolation=cv2.INTER_CUBIC)
    det.calibration = {"method": "platt", "a": 0.0, "b": -5.0}
    s_photo, s_up = det.score_many([photo, up])
    assert s_up.head is None and [o["code"] for o in s_up.out_of_domain] == ["upscaled"]
    # a head: the second member's logit alone, shifted so p is high for every input
    det.calibration["heads"] = {"upscaled": {"weights": [0.0, 1.0], "bias": 0.5, "a": 1.0, "b": 50.0, "fpr_budget": 0.05}}
    s_photo2, s_up2 = det.score_many([photo, up])
    assert s_photo2.head is None and s_photo2.probability == pytest.approx(s_photo.probability)  # main head untouched
    assert s_up2.head == "upscaled" and s_up2.out_of_domain == [] and s_up2.probability > 0.99
    tiles = det.tiles(up)[0]
    with torch.no_grad():
        ml = det.net.member_logits(torch.from_numpy(tiles).permute(0, 3, 1, 2).float() / 255)
    assert s_up2.logit == pytest.approx(float((ml[:, 1] + 0.5).mean()), abs=1e-4)  # the head's combination
    assert any("'upscaled' head" in n for n in s_up2.notes) and s_up2.to_dict()["head"] == "upscaled"
    assert "head" not in s_photo2.to_dict()  # records of in-domain inputs are unchanged
    # scan (the batched engine) takes the same path and says so; a flagged up-scaled input counts
    r_photo, r_up = _scan_with(det, [photo, up])
    assert r_up.detector.get("head") == "upscaled" and r_up.verdict == "likely_generated"
    assert any(e["kind"] == "detector" and "'upscaled' head" in e["summary"] for e in r_up.to_dict()["evidence"])
    # two reasons (small and up-scaled would never both apply; use non-photographic + up-scaled): still void
    flat = np.full((256, 256, 3), 128, np.uint8)
    assert det.score(flat).head is None


def test_an_input_the_domain_head_decides_goes_through_the_network_once():
    """The engine's one batched pass gives the head the member logits it combines: an up-scaled
    input's tiles go through the members once (eager network, folded network, TorchScript
    graph), and its score is the one a second, separate pass of the members gives."""
    import cv2

    from genvis_trust.detectors import Detector
    from genvis_trust.scoring.engine import ScoringEngine

    rng = np.random.default_rng(1)
    photo = np.clip(_photo(7, 128, 128).astype(int) + rng.normal(0, 8, (128, 128, 3)), 0, 255).astype(np.uint8)
    up = cv2.resize(photo, (256, 256), interpolation=cv2.INTER_CUBIC)
    scores = {}
    for backend in ("eager", "folded", "torchscript"):
        torch.manual_seed(0)
        members = [{"family": "npr", "config": {"width": 8, "blocks": [1, 1]}, "patch": 64},
                   {"family": "zed", "config": {"width": 8, "levels": 2}, "patch": 32}]
        det = Detector.create("stack", patch=64, device="cpu", members=members, weights=[1.0, 0.3], bias=0.0)
        det.card = {"domain": {"min_side": 64, "min_hf_share": 0.02, "photographic": True}}
        det.calibration = {"method": "platt", "a": 1.0, "b": 0.0,
                           "heads": {"upscaled": {"weights": [0.2, 1.0], "bias": 0.5, "a": 1.0, "b": 0.0}}}
        rows = []
        if backend == "eager":
            real = det.net.member_logits
            det.net.member_logits = lambda x, real=real, rows=rows: (rows.append(len(x)), real(x))[1]
        else:
            assert det.optimize_for_inference(backend) and det.inference_backend == backend
            graph = det._infer
            det._infer = lambda x, graph=graph, rows=rows: (rows.append(len(x)), graph(x))[1]
        (rec,) = ScoringEngine(det, device="cpu", optimize=False).score_arrays([up])
        n_tiles = len(det.tiles(up)[0])
        assert rec.score.head == "upscaled" and rec.score.tiles == n_tiles
        assert sum(rows) == n_tiles  # one pass: the head does not run the members again
        again = det.head_logits(det.tiles(up)[0], "upscaled")  # without the pass's members: a second pass
        assert sum(rows) == 2 * n_tiles
        assert rec.score.logit == pytest.approx(float(again.mean()), abs=1e-6)
        scores[backend] = rec.score.logit
    assert scores["folded"] == scores["torchscript"]  # batch norm folded as torch.jit.freeze folds it
    assert scores["folded"] == pytest.approx(scores["eager"], abs=1e-5)
