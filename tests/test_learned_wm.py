"""The learned watermark (learnedWm): training, artifacts, reading, false accepts, verify."""

import io

import numpy as np
import pytest
import torch

from genvis_trust.datasets import get_source
from genvis_trust.provenance import learned_wm
from genvis_trust.provenance.learned_wm import LearnedWatermark, bundled_dir, key_bits, load_model
from genvis_trust.provenance.learned_wm_train import (
    ATTACKS,
    apply_attacks,
    calibrate,
    diff_jpeg,
    train,
)
from genvis_trust.provenance.payload import get_codec
from genvis_trust.provenance.watermarks import WatermarkError, detect, get_watermark

TINY = {"work": 16, "channels": 4, "msg_grid": 4}
BUNDLED = (bundled_dir() / "config.json").is_file()
needs_bundled = pytest.mark.skipif(not BUNDLED, reason="no bundled learnedWm weights")


@pytest.fixture(scope="module")
def photos():
    return [s.image for s in get_source("builtin-photos", patch=256, n=4, seed=5, split="train")]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, photos):
    out = tmp_path_factory.mktemp("lwm")
    card = train(out, photos, config=TINY, steps=4, batch=2, train_size=32, device="cpu",
                 log=lambda s: None, command="test")
    return out, card


def test_training_writes_an_artifact_and_resumes(tiny, photos):
    out, card = tiny
    assert card["steps_done"] == 4 and card["recipe"]["config"]["work"] == 16
    assert (out / "model.safetensors").is_file() and (out / "checkpoint" / "state.json").is_file()
    # resume continues from step 4 to 6 with the same recipe; another recipe is refused
    card2 = train(out, photos, config=TINY, steps=6, batch=2, train_size=32, device="cpu", resume=True,
                  log=lambda s: None)
    assert card2["steps_done"] == 6
    with pytest.raises(ValueError, match="another recipe"):
        train(out, photos, config=TINY, steps=6, batch=3, train_size=32, device="cpu", resume=True, log=lambda s: None)


def test_save_load_round_trip(tmp_path, photos):
    out = tmp_path / "m"
    train(out, photos, config=TINY, steps=2, batch=2, train_size=32, device="cpu", log=lambda s: None)
    m1, cfg, card = load_model(out)
    m2, _, _ = load_model(out)
    for (k, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert cfg["work"] == 16 and card["family"] == learned_wm.FAMILY
    be = LearnedWatermark(out, refine_steps=0)
    img = photos[0]
    bits = get_codec(64).encode(5)
    a, b = be.embed(img, bits), LearnedWatermark(out, refine_steps=0).embed(img, bits)
    assert np.array_equal(a, b)  # the same weights stamp the same pixels
    # a corrupted weights file is refused by its sha256
    (out / "model.safetensors").write_bytes((out / "model.safetensors").read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(WatermarkError, match="sha256"):
        LearnedWatermark(out).embed(img, bits)


def test_calibration_makes_each_bit_a_fair_coin(photos):
    model = learned_wm.build_model(TINY)
    cfg = {**learned_wm.DEFAULT_CONFIG, **TINY}
    rng = np.random.default_rng(0)
    imgs = photos + [rng.integers(0, 256, (64, 80, 3), dtype=np.uint8) for _ in range(5)]
    stats = calibrate(model, cfg, imgs)
    # bias = median logit: each bit is 1 on at most half of the calibration images
    assert stats["images"] == len(imgs) and stats["bit_one_rate_max"] <= 0.5 and stats["bit_one_rate_min"] >= 0.5 - 1 / len(imgs)
    assert not torch.equal(model.bias, torch.zeros_like(model.bias))


def test_attack_stand_ins_keep_gradients_and_ranges():
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    y = diff_jpeg(x, 50)
    assert y.shape == x.shape and float((y - x).detach().abs().mean()) > 1e-3
    y.sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    rng = np.random.default_rng(0)
    for group in ATTACKS.values():
        for fn in group.values():
            out = fn(torch.rand(2, 3, 32, 32), 1.0, rng)
            assert out.shape[:2] == (2, 3) and float(out.min()) >= -1e-6 and float(out.max()) <= 1 + 1e-6
    out, names = apply_attacks(torch.rand(2, 3, 32, 32), 0.0, rng)
    assert len(names) == 3


def test_key_is_fixed_per_model():
    cfg = learned_wm.DEFAULT_CONFIG
    assert np.array_equal(key_bits(cfg), key_bits(dict(cfg)))
    assert 16 < key_bits(cfg).sum() < 48


@needs_bundled
def test_bundled_stamp_reads_back_exactly_and_unmarked_gives_nothing(photos):
    be = get_watermark("learnedWm")
    codec = get_codec(64)
    for i, img in enumerate(photos[:2]):
        bits = codec.encode(1000 + i, issuer=77)
        marked = be.embed(img, bits)
        assert np.array_equal(be.read_bits(marked).bits, bits)
        d = detect(marked, "learnedWm")
        assert d.detected and d.payload["record_id"] == 1000 + i and d.payload["issuer_id"] == 77
        assert d.p_value is not None and d.p_value <= 1e-6
    for img in photos:
        assert not detect(img, "learnedWm").detected


@needs_bundled
def test_bundled_mark_survives_jpeg50_through_verify(tmp_path, photos):
    from PIL import Image

    from genvis_trust.provenance.keys import init_keys, load_signing_material
    from genvis_trust.provenance.stamp import stamp_array
    from genvis_trust.provenance.store import ProvenanceStore
    from genvis_trust.provenance.verify import verify_bytes

    init_keys(tmp_path / "keys")
    material = load_signing_material(tmp_path / "keys")
    store = ProvenanceStore(tmp_path / "store.sqlite")
    img = photos[1]
    res = stamp_array(img, tmp_path / "a.png", store=store, material=material, backend="learnedWm")
    stamped = np.asarray(Image.open(tmp_path / "a.png").convert("RGB"))
    buf = io.BytesIO()
    Image.fromarray(stamped).save(buf, "JPEG", quality=50)  # metadata gone, pixels re-encoded
    rep = verify_bytes(buf.getvalue(), name="copy.jpg", store=store, backends=("learnedWm",))
    # found through the mark itself (a perceptual-hash match would find a look-alike too)
    assert rep.store.get("found") and rep.store["path"] == "watermark" and rep.store["record"]["id"] == res.record_id
