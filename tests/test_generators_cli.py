"""The generator commands end to end, and every bundled model's recipe re-run for a few steps."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from genvis_trust.artifacts import read_config
from genvis_trust.cli.main import app
from genvis_trust.datasets import read_corpus
from genvis_trust.generators import list_bundled, load_generator
from genvis_trust.generators.artifact import read_json
from genvis_trust.generators.features import FEATURES_ASSET
from genvis_trust.generators.metrics import output_size
from genvis_trust.io import load_image

runner = CliRunner()
TINY_VAE = ["-c", "image_size=16", "-c", "latent_dim=8", "-c", "width=8"]
BUNDLED = sorted(list_bundled())


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    monkeypatch.setenv("GENVIS_THREADS", "1")
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def tiny_vae(tmp_path_factory):
    out = tmp_path_factory.mktemp("vae")
    r = invoke("train", "generator", "vae", "--data", "builtin-digits", "--n", 64, "--steps", 3, "--batch", 8,
               *TINY_VAE, "--out", out, "--json", "--threads", 1)
    assert r.exit_code == 0, r.output
    return out


def test_train_generator_writes_an_artifact_with_its_command(tiny_vae):
    card = read_json(tiny_vae / "card.json")
    assert card["steps"] == 3 and card["command"].startswith("genvis-trust train generator vae")
    assert card["weights_sha256"] and (tiny_vae / "train_state.safetensors").is_file()
    r = invoke("train", "generator", "vae", "--data", "builtin-digits", "--n", 64, "--steps", 5, "--batch", 8,
               "--out", tiny_vae, "--resume")
    assert r.exit_code == 0, r.output
    assert read_json(tiny_vae / "card.json")["steps"] == 5


def test_train_generator_usage_errors(tmp_path):
    r = invoke("train", "generator", "gan", "--data", "builtin-photos", "--n", 32, "--conditional",
               "--steps", 1, "--out", tmp_path / "g")
    assert r.exit_code == 2 and "no class labels" in r.output
    r = invoke("train", "generator", "nope", "--steps", 1, "--out", tmp_path / "n")
    assert r.exit_code == 2 and "unknown generator family" in r.output


def test_generate_writes_corpus_and_grid(tiny_vae, tmp_path):
    r = invoke("generate", tiny_vae, "--n", 5, "--batch", 2, "--seed", 9, "--out", tmp_path / "c",
               "--grid", tmp_path / "g.png", "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["images"] == 5 and summary["family"] == "vae"
    corpus = read_corpus(tmp_path / "c")
    assert len(corpus) == 5 and corpus.card["command"].startswith("genvis-trust generate")
    assert load_image(tmp_path / "g.png").array.ndim == 3
    r = invoke("generate", tiny_vae, "--n", 2, "--steps", 3, "--out", tmp_path / "x")
    assert r.exit_code == 2 and "unknown sampler setting" in r.output
    r = invoke("generate", "no-such-model", "--n", 2, "--out", tmp_path / "y")
    assert r.exit_code == 2 and "bundled model" in r.output


def test_interpolate_strip(tiny_vae, tmp_path):
    r = invoke("generators", "interpolate", tiny_vae, "--out", tmp_path / "s.png", "--frames", 4, "--rows", 2)
    assert r.exit_code == 0, r.output
    assert load_image(tmp_path / "s.png").array.shape[1] > 4 * 16


@pytest.mark.skipif(not (FEATURES_ASSET / "model.safetensors").is_file(), reason="feature net not bundled")
def test_evaluate_reports_numbers_with_n_reference_and_feature_network(tiny_vae):
    r = invoke("generators", "evaluate", tiny_vae, "--n", 24, "--json")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["n_generated"] == 24 and rep["reference"] == "builtin-digits split=test"
    assert rep["feature_network"]["name"] == "gvt-features-v1"
    for k in ("fid", "kid", "precision", "recall", "density", "coverage", "mode_coverage"):
        assert k in rep["metrics"]


def test_generators_list_json():
    r = invoke("generators", "list", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert set(data["families"]) == {"gan", "vae", "diffusion", "flow", "autoregressive", "autoencoder",
                                     "inpainting", "latent-diffusion", "super-resolution"}
    assert sorted(b["name"] for b in data["bundled"]) == BUNDLED


def test_every_family_has_a_bundled_model_and_assets_stay_small():
    from genvis_trust.generators import list_generators

    fams = {read_json(p / "config.json")["family"] for p in list_bundled().values()}
    assert fams == set(list_generators())
    assert len(list_bundled()) >= 10
    for p in list_bundled().values():
        assert not (p / "train_state.safetensors").exists()  # shipped: sampling weights only
        assert (p / "model.safetensors").stat().st_size < 8_000_000
        card = read_json(p / "card.json")
        assert card.get("command") and card.get("steps") and card.get("data", {}).get("source")
    assets = Path(list_bundled()["vae-photos"]).parent.parent
    total = sum(f.stat().st_size for f in assets.rglob("*") if f.is_file())
    assert total < 60_000_000, f"bundled assets are {total / 1e6:.1f} MB"


def _photos_native_available() -> bool:
    from genvis_trust.datasets import SourceError, get_source

    try:
        get_source("photos-native").list_items()
    except SourceError:
        return False
    return True


def _short_recipe(command: str, out) -> list[str]:
    """The card's exact command with --steps 2, a temp --out and fewer images. The
    photos-native corpus is built, not shipped: where it is absent (CI), the same recipe reads
    the built-in photographs instead (same code path: native-resolution crops of photos)."""
    args = shlex.split(command)[1:]
    drop = {"--steps", "--out", "--time-budget", "--checkpoint-every", "--n", "--resume"}
    flags = {"--resume"}
    kept, i = [], 0
    while i < len(args):
        if args[i] in drop:
            i += 1 if args[i] in flags else 2
            continue
        kept.append(args[i])
        i += 1
    if "photos-native" in kept and not _photos_native_available():
        kept[kept.index("photos-native")] = "builtin-photos"
    return [*kept, "--steps", "2", "--out", str(out), "--n", "32", "--checkpoint-every", "1"]


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_recipe_still_runs_and_model_samples(name, tmp_path):
    path = list_bundled()[name]
    card = read_json(path / "card.json")
    r = runner.invoke(app, _short_recipe(card["command"], tmp_path / "m"))
    assert r.exit_code == 0, r.output
    # the bundled folders predate the shared artifact format: compared as read
    assert read_config(tmp_path / "m", "generator") == read_config(path, "generator")
    g = load_generator(name, "cpu")
    extra = {"steps": 10} if g.family in ("diffusion", "latent-diffusion") else {}
    imgs = g.sample([1, 2], [3, 4] if g.num_classes else None, **extra)
    size = output_size(g, {**g.sampler_defaults, **extra})
    assert imgs.shape == (2, size, size, 3)
