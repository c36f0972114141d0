"""The real-resolution generator families: image-to-image inputs, the mask contract,
latent diffusion through a trained first stage, super-resolution, and the CLI around them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from genvis_trust.cli.main import app
from genvis_trust.datasets import read_corpus
from genvis_trust.generators import GeneratorError, create_generator, load_generator, save_generator
from genvis_trust.generators.image_to_image import draw_input, random_mask
from genvis_trust.generators.sampling import generate_to_corpus, regenerate
from genvis_trust.io import load_image

runner = CliRunner()
TINY_AE = {"image_size": 16, "widths": [8, 8, 8]}


pytestmark = pytest.mark.usefixtures("one_thread")


def _steps(m, n=2, size=16):
    opts = m.configure_optimizers()
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (4, 3, size, size), dtype=torch.uint8, generator=g)
    for s in range(n):
        m.training_step(x, None, opts, s)
        m.after_step(s)
    return m.eval()


def test_inputs_are_native_crops_of_builtin_photos_picked_by_seed():
    a, info = draw_input("builtin-photos", 5, 64)
    b, _ = draw_input("builtin-photos", 5, 64)
    assert a.shape == (64, 64, 3) and np.array_equal(a, b)
    x, y, s = info["box"][0], info["box"][1], info["box"][2]
    from genvis_trust.datasets import get_source

    photo = next(p.image for p in get_source("builtin-photos") if p.key == info["key"])
    assert np.array_equal(photo[y : y + s, x : x + s], a)  # native pixels, no resizing
    keys = {draw_input("builtin-photos", seed, 32)[1]["key"] for seed in range(40)}
    assert len(keys) >= 5  # seeds spread over the photographs


def test_input_split_suffix_keeps_one_split():
    from genvis_trust.datasets import get_source

    test_keys = {s.key for s in get_source("builtin-photos", split="test")}
    drawn = {draw_input("builtin-photos:test", seed, 32)[1]["key"] for seed in range(30)}
    assert drawn and drawn <= test_keys  # only test-split photographs
    assert len({draw_input("builtin-photos", seed, 32)[1]["key"] for seed in range(30)} - test_keys) > 0


def test_random_masks_cover_a_bounded_share():
    rng = np.random.default_rng(0)
    shares = [random_mask(rng, 128, 128).mean() for _ in range(60)]
    assert min(shares) > 0.01 and max(shares) < 0.6
    assert np.median(shares) == pytest.approx(0.17, abs=0.1)


def test_inpainting_corpus_masks_inside_differs_outside_matches(tmp_path):
    m = _steps(create_generator("inpainting", image_size=16, widths=[8, 8, 8]))
    save_generator(m, tmp_path / "model")
    generate_to_corpus(tmp_path / "model", tmp_path / "c", n=6, seed=1, batch=4, device="cpu", size=64)
    corpus = read_corpus(tmp_path / "c")
    loaded = load_generator(tmp_path / "model", "cpu")
    for rec in corpus.records:
        assert rec["mask"] and (tmp_path / "c" / rec["mask"]).is_file()
        mask = corpus.load_mask(rec)
        img = load_image(corpus.file(rec)).array
        src, info = draw_input(rec["meta"]["input"]["source"], rec["seed"], 64)
        assert info == rec["meta"]["input"]
        assert mask.shape == img.shape[:2] and 0 < mask.mean() < 0.6
        assert np.array_equal(img[~mask], src[~mask]), "outside the mask is the source photograph"
        assert (img[mask] != src[mask]).any(), "inside the mask is regenerated"
        assert np.array_equal(img, regenerate(loaded, rec))
    with pytest.raises(GeneratorError, match="needs a mask"):
        m.transform(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))


def test_reconstruction_corpora_carry_no_mask_and_name_their_photo(tmp_path):
    m = _steps(create_generator("autoencoder", **TINY_AE))
    save_generator(m, tmp_path / "ae")
    generate_to_corpus(tmp_path / "ae", tmp_path / "c", n=3, seed=0, device="cpu", size=32)
    for rec in read_corpus(tmp_path / "c").records:
        assert "mask" not in rec.data and rec["meta"]["input"]["source"] == "builtin-photos"
        assert (rec["width"], rec["height"]) == (32, 32)
    with pytest.raises(GeneratorError, match="multiples of 8"):
        m.encode(torch.zeros(1, 3, 20, 16))


def test_super_resolution_is_4x_and_starts_as_bicubic():
    m = create_generator("super-resolution", image_size=16, width=8, blocks=1).eval()
    x = torch.from_numpy(draw_input("builtin-photos", 3, 32)[0]).permute(2, 0, 1)[None].contiguous()
    y = m.transform(x)
    assert y.shape == (1, 128, 128, 3)
    bic = torch.nn.functional.interpolate(x.float() / 127.5 - 1, scale_factor=4, mode="bicubic")
    bic = ((bic.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)
    assert (y.int() - bic.int()).abs().max() <= 1  # zero-initialised residual: bicubic exactly
    gain = _steps(m, size=32).bicubic_psnr_gain(x.repeat(2, 1, 1, 1)[..., :32, :32])
    assert set(gain) == {"psnr_db", "bicubic_psnr_db"}


def test_latent_diffusion_reads_its_first_stage_and_is_self_contained(tmp_path):
    ae = _steps(create_generator("autoencoder", **TINY_AE))
    save_generator(ae, tmp_path / "ae")
    ldm = create_generator("latent-diffusion", image_size=32, autoencoder=str(tmp_path / "ae"), width=8,
                           mults=[1], timesteps=20)
    assert ldm.config["ae_config"]["widths"] == [8, 8, 8] and "sha256" in ldm.config["autoencoder"]
    for k, v in ae.state_dict().items():  # the trained first stage's weights, frozen
        assert torch.equal(ldm.ae.state_dict()[k], v)
    assert not any(p.requires_grad for p in ldm.ae.parameters())
    with pytest.raises(GeneratorError, match="never trained"):
        ldm.sample([1], steps=2)
    _steps(ldm, size=32)
    assert float(ldm.latent_scale) > 0
    assert all(torch.equal(ldm.ae.state_dict()[k], v) for k, v in ae.state_dict().items())  # still frozen
    save_generator(ldm, tmp_path / "ldm")
    (tmp_path / "ae" / "model.safetensors").unlink()  # the artifact needs nothing else
    back = load_generator(tmp_path / "ldm", "cpu")
    assert torch.equal(back.sample([4], steps=3), ldm.sample([4], steps=3))
    assert back.sample([4, 5], steps=3).shape == (2, 32, 32, 3)
    vae = _steps(create_generator("vae", image_size=16, latent_dim=8, width=8))
    save_generator(vae, tmp_path / "vae")
    with pytest.raises(GeneratorError, match="not an autoencoder"):
        create_generator("latent-diffusion", image_size=32, autoencoder=str(tmp_path / "vae"))


def test_generate_cli_needs_no_input_argument_and_evaluate_prints_baselines(tmp_path):
    m = _steps(create_generator("inpainting", image_size=16, widths=[8, 8, 8]))
    save_generator(m, tmp_path / "model", {"data": {"source": "builtin-photos"}})
    r = runner.invoke(app, ["generate", str(tmp_path / "model"), "--n", "3", "--seed", "2", "--size", "32",
                            "--out", str(tmp_path / "c"), "--grid", str(tmp_path / "g.png")])
    assert r.exit_code == 0, r.output
    assert len(read_corpus(tmp_path / "c")) == 3 and (tmp_path / "g.png").is_file()
    r = runner.invoke(app, ["generators", "evaluate", str(tmp_path / "model"), "--n", "12", "--size", "32",
                            "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["image_size"] == 32 and set(rep["baselines"]) == {"blurred real train", "uniform noise"}
    assert rep["baselines"]["uniform noise"]["fid"] > rep["baselines"]["blurred real train"]["fid"]


def test_bad_input_or_size_fails_before_any_file_is_written(tmp_path):
    m = create_generator("autoencoder", **TINY_AE)
    save_generator(m, tmp_path / "ae")
    with pytest.raises(GeneratorError, match="multiple of 8"):
        generate_to_corpus(tmp_path / "ae", tmp_path / "c", n=2, device="cpu", size=20)
    from genvis_trust.datasets import SourceError

    with pytest.raises(SourceError, match="unknown source"):
        generate_to_corpus(tmp_path / "ae", tmp_path / "c", n=2, device="cpu", input="nope", size=16)
    assert not (tmp_path / "c").exists()
