"""Registry-driven tests: every registered generator family gets the same checks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from genvis_trust.datasets import read_corpus
from genvis_trust.generators import (
    GeneratorError,
    create_generator,
    image_seed,
    list_generators,
    load_generator,
    save_generator,
    train_generator,
)
from genvis_trust.generators.artifact import CARD, CONFIG, WEIGHTS
from genvis_trust.generators.sampling import generate_to_corpus, regenerate
from genvis_trust.io import load_image, sha256_file

# Tiny configs: every family at 16x16 with a handful of channels, so a step takes milliseconds.
TINY = {
    "gan": dict(image_size=16, z_dim=8, width=8, d_width=8),
    "vae": dict(image_size=16, latent_dim=8, width=8),
    "diffusion": dict(image_size=16, width=12, mults=[1, 2], timesteps=50),
    "flow": dict(image_size=16, depth=2, hidden=16),
    "autoregressive": dict(image_size=16, hidden=12, blocks=2),
    "autoencoder": dict(image_size=16, widths=[8, 8, 8]),
    "inpainting": dict(image_size=16, widths=[8, 8, 8]),
    "super-resolution": dict(image_size=16, width=8, blocks=1),
    "latent-diffusion": dict(image_size=16, ae_config={"image_size": 16, "widths": [8, 8, 8]}, width=8,
                             mults=[1], timesteps=50),
}
# image-to-image families draw a crop of a built-in photo per seed: tiny crops keep them fast
# (super-resolution makes 4x its input: a 4 px crop gives the 16 px images the checks expect)
SAMPLER = {"diffusion": {"steps": 3}, "latent-diffusion": {"steps": 3}, "autoencoder": {"size": 16},
           "inpainting": {"size": 16}, "super-resolution": {"size": 4}}
CONDITIONAL = {"gan", "diffusion"}
FAMILIES = sorted(list_generators())


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(family: str, conditional: bool = False, seed: int = 0):
    torch.manual_seed(seed)
    cfg = dict(TINY[family])
    if conditional:
        cfg["num_classes"] = 3
    return create_generator(family, **cfg)


def batch(n: int = 4, size: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    return x, torch.arange(n) % 3


def trained(family: str, conditional: bool = False, steps: int = 2):
    m = tiny(family, conditional)
    opts = m.configure_optimizers()
    x, y = batch()
    for s in range(steps):
        m.training_step(x, y if conditional else None, opts, s)
        m.after_step(s)
    return m.eval()


def test_registry_has_the_nine_families_one_file_each():
    assert FAMILIES == ["autoencoder", "autoregressive", "diffusion", "flow", "gan", "inpainting",
                        "latent-diffusion", "super-resolution", "vae"]
    pkg = Path(__import__("genvis_trust.generators", fromlist=["x"]).__file__).parent
    for fam in FAMILIES:
        assert (pkg / f"{fam.replace('-', '_')}.py").is_file()
    with pytest.raises(GeneratorError, match="unknown generator family"):
        create_generator("nope")
    with pytest.raises(GeneratorError, match="unknown config key"):
        create_generator("vae", not_a_key=1)


def test_tiny_configs_cover_the_registry():
    assert set(TINY) == set(FAMILIES)  # a new family must add a tiny config here


@pytest.mark.parametrize("family", FAMILIES)
def test_forward_and_training_step_give_finite_losses(family):
    conditional = family in CONDITIONAL
    m = tiny(family, conditional)
    opts = m.configure_optimizers()
    x, y = batch()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    losses = m.training_step(x, y if conditional else None, opts, 0)
    m.after_step(0)
    assert losses and all(math.isfinite(v) for v in losses.values())
    changed = [k for k, v in m.state_dict().items() if v.dtype.is_floating_point and not torch.equal(v, before[k])]
    assert changed, "a training step must change some weights"
    out = m.sample([1, 2], [0, 1] if conditional else None, **SAMPLER.get(family, {}))
    assert out.shape == (2, 16, 16, 3) and out.dtype == torch.uint8
    assert m.config["image_size"] == 16 and json.dumps(m.config)  # config is JSON-able


@pytest.mark.parametrize("family", FAMILIES)
def test_save_load_round_trip_is_bit_identical(family, tmp_path):
    conditional = family in CONDITIONAL
    m = trained(family, conditional)
    sha = save_generator(m, tmp_path, {"note": "test"})
    assert sha == sha256_file(tmp_path / WEIGHTS)
    cfg = json.loads((tmp_path / CONFIG).read_text())
    assert cfg["kind"] == "generator" and cfg["family"] == family and cfg["family_version"] == m.version
    m2 = load_generator(tmp_path, "cpu")
    a, b = m.artifact_state_dict(), m2.artifact_state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    cls = [0, 2] if conditional else None
    kw = SAMPLER.get(family, {})
    assert torch.equal(m.sample([7, 8], cls, **kw), m2.sample([7, 8], cls, **kw))
    # saving the loaded model again gives the very same weights file
    assert save_generator(m2, tmp_path / "again") == sha


def test_load_refuses_wrong_version_and_tampered_weights(tmp_path):
    m = trained("vae")
    save_generator(m, tmp_path)
    cfg = json.loads((tmp_path / CONFIG).read_text())
    (tmp_path / CONFIG).write_text(json.dumps({**cfg, "family_version": 99}))
    with pytest.raises(GeneratorError, match="version 99"):
        load_generator(tmp_path)
    (tmp_path / CONFIG).write_text(json.dumps(cfg))
    data = bytearray((tmp_path / WEIGHTS).read_bytes())
    data[-1] ^= 1
    (tmp_path / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(GeneratorError, match="sha256"):
        load_generator(tmp_path)
    with pytest.raises(GeneratorError, match="neither an artifact folder nor a bundled model"):
        load_generator(tmp_path / "missing")


@pytest.mark.parametrize("family", FAMILIES)
def test_seeded_sampling_is_reproducible_and_per_image(family):
    conditional = family in CONDITIONAL
    m = trained(family, conditional)
    kw = SAMPLER.get(family, {})
    cls = [0, 1, 2] if conditional else None
    a = m.sample([11, 12, 13], cls, **kw)
    b = m.sample([11, 12, 13], cls, **kw)
    assert torch.equal(a, b)
    alone = m.sample([13], [2] if conditional else None, **kw)
    assert torch.equal(alone[0], a[2]), "image i must not depend on its batch-mates"
    assert not torch.equal(a[0], a[1])


@pytest.mark.parametrize("family", FAMILIES)
def test_corpus_manifest_records_family_checkpoint_seed_and_sampler(family, tmp_path):
    conditional = family in CONDITIONAL
    m = trained(family, conditional)
    art = tmp_path / "model"
    sha = save_generator(m, art)
    kw = SAMPLER.get(family, {})
    res = generate_to_corpus(art, tmp_path / "c", n=5, seed=3, batch=2, device="cpu", **kw)
    assert res["images"] == 5
    corpus = read_corpus(tmp_path / "c")  # verifies paths and sha256
    loaded = load_generator(art, "cpu")
    for i, rec in enumerate(corpus.records):
        assert rec["label"] == "generated" and rec["family"] == family
        assert rec["checkpoint_sha256"] == sha
        assert rec["seed"] == image_seed(3, i)
        assert rec["class_id"] == (i % 3 if conditional else None)
        assert rec["meta"]["sampler"] == res["sampler"]
        img = load_image(corpus.file(rec)).array
        assert np.array_equal(img, regenerate(loaded, rec))  # image i regenerated alone
    assert corpus.card["generator"]["checkpoint_sha256"] == sha
    assert corpus.card["base_seed"] == 3
    # an interrupted run resumed gives the same corpus as an uninterrupted one
    generate_to_corpus(art, tmp_path / "r", n=3, seed=3, batch=2, device="cpu", **kw)
    generate_to_corpus(art, tmp_path / "r", n=5, seed=3, batch=2, device="cpu", resume=True, **kw)
    assert [r["sha256"] for r in read_corpus(tmp_path / "r").records] == [r["sha256"] for r in corpus.records]


def test_unknown_sampler_setting_and_class_errors(tmp_path):
    m = trained("gan", conditional=True)
    save_generator(m, tmp_path)
    with pytest.raises(GeneratorError, match="unknown sampler setting"):
        generate_to_corpus(tmp_path, tmp_path / "c", n=1, steps=3)
    with pytest.raises(GeneratorError, match="class ids must be in"):
        m.sample([1], [7])
    with pytest.raises(GeneratorError, match="unconditional"):
        trained("vae").sample([1], [0])


def test_training_loop_resume_matches_uninterrupted_run(tmp_path):
    kw = dict(data="builtin-digits", n=64, batch=8, config=TINY["vae"], device="cpu", checkpoint_every=2, eval_n=32)
    train_generator("vae", tmp_path / "a", steps=4, **kw)
    train_generator("vae", tmp_path / "b", steps=2, **kw)
    with pytest.raises(GeneratorError, match="pass resume"):
        train_generator("vae", tmp_path / "b", steps=4, **kw)
    res = train_generator("vae", tmp_path / "b", steps=4, resume=True, **kw)
    assert res.step == 4
    assert sha256_file(tmp_path / "a" / WEIGHTS) == sha256_file(tmp_path / "b" / WEIGHTS)
    card = json.loads((tmp_path / "b" / CARD).read_text())
    assert card["steps"] == 4 and card["data"]["source"] == "builtin-digits"
    assert card["metrics"]["bits_per_dim_kind"].startswith("upper bound")
    assert math.isfinite(card["metrics"]["test_bits_per_dim"])


def test_conditional_training_on_digits_uses_labels(tmp_path):
    res = train_generator("diffusion", tmp_path, data="builtin-digits", n=64, steps=2, batch=8,
                          conditional=True, config=TINY["diffusion"], device="cpu")
    m = load_generator(tmp_path, "cpu")
    assert m.num_classes == 10 and res.card["data"]["source"] == "builtin-digits"
    with pytest.raises(GeneratorError, match="no class labels"):
        train_generator("gan", tmp_path / "p", data="builtin-photos", n=32, steps=1, conditional=True,
                        config=TINY["gan"], device="cpu")


# ----------------------------------------------------------------------------- family specifics


def test_diffusion_samplers_and_ema():
    m = trained("diffusion", conditional=True, steps=3)
    a = m.sample([1, 2], [0, 1], sampler="ancestral")
    d1 = m.sample([1, 2], [0, 1], sampler="ddim", steps=5)
    d2 = m.sample([1, 2], [0, 1], sampler="ddim", steps=5, guidance=1.0)
    assert a.shape == d1.shape == (2, 16, 16, 3) and not torch.equal(d1, d2)
    with pytest.raises(GeneratorError, match="ddim steps"):
        m.sample([1], [0], sampler="ddim", steps=0)
    # the artifact holds the EMA weights, which lag the raw weights
    art = m.artifact_state_dict()
    raw = {f"net.{k}": v for k, v in m.net.state_dict().items()}
    assert art.keys() == raw.keys() and any(not torch.equal(art[k], raw[k]) for k in art)


def test_flow_is_invertible_and_bits_per_dim_is_sane():
    m = trained("flow")
    x = torch.randn(2, 3, 16, 16)
    z, _ = m(x)
    assert torch.allclose(m.inverse(z), x, atol=1e-4)
    bpd = m.bits_per_dim(batch()[0])
    assert bpd.shape == (4,) and torch.isfinite(bpd).all() and (bpd > 0).all()


def test_pixelcnn_is_causal_and_windowed_sampling_is_exact():
    m = tiny("autoregressive").eval()
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    i, j = 9, 7
    m.trunk(x)[0, :, i, j].sum().backward()
    dep = (x.grad[0].abs().sum(0) > 0).nonzero().tolist()
    assert dep and all(r < i or (r == i and c < j) for r, c in dep), "trunk sees the future"
    assert max(i - r for r, _ in dep) <= m.reach and max(abs(c - j) for _, c in dep) <= m.reach
    # the causal window used while sampling reproduces the full-image trunk features
    img = batch(1)[0]
    full = m.trunk(img.float() / 127.5 - 1)
    r = m.reach
    for i, j in [(0, 0), (5, 15), (15, 3), (12, 8)]:
        y0, x0, x1 = max(0, i - r), max(0, j - r), min(16, j + r + 1)
        win = m.trunk(img[:, :, y0 : i + 1, x0:x1].float() / 127.5 - 1)[:, :, i - y0, j - x0]
        assert torch.allclose(win, full[:, :, i, j], atol=1e-5)
    # at initialisation the 256-way softmax is near uniform: about 8 bits/dim
    assert abs(float(m.bits_per_dim(img)) - 8.0) < 0.5


def test_vae_and_gan_interpolation_strips():
    from genvis_trust.generators.interpolate import interpolate

    for fam, cond in (("vae", False), ("gan", True)):
        m = trained(fam, cond)
        strip = interpolate(m, seeds=(1, 2), frames=5, class_id=1 if cond else None)
        assert len(strip) == 5 and strip[0].shape == (16, 16, 3)
        assert np.array_equal(strip[0], m.sample([1], [1] if cond else None)[0].numpy())
    with pytest.raises(GeneratorError, match="no latent decoder"):
        interpolate(trained("flow"))


def test_vae_interpolates_between_two_image_files(tmp_path):
    from genvis_trust.generators.interpolate import interpolate
    from genvis_trust.io import encode_image

    paths = []
    for i, v in enumerate((20, 230)):
        p = tmp_path / f"{i}.png"
        p.write_bytes(encode_image(np.full((40, 50, 3), v, np.uint8), "PNG"))
        paths.append(p)
    strip = interpolate(trained("vae"), images=tuple(paths), frames=3)
    assert len(strip) == 3 and strip[1].shape == (16, 16, 3)
