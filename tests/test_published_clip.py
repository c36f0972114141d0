"""The CLIP/ViT published families (univfd, rine, commfor, bfree) against their reference code.

The fixtures under ``tests/fixtures/published/`` hold logits that the reference repositories' own
code gave (``benchmarks/published_fidelity_clip.py --tiny``: a reduced size of each architecture,
weights drawn by ``seeded_state`` over the reference model's keys, generated lossless images);
here the same weights are drawn again, written as the published files, read through each
family's ``checkpoint_filter_fn`` and scored by ``prepare_input`` + ``forward``. Tolerance 1e-4
(fp32). Full-size fidelity: ``benchmarks/results/published-fidelity-clip.md``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from genvis_trust.detectors.registry import CheckpointImportError, get_family

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "published"
NEEDS = {"univfd": "open_clip", "rine": "open_clip", "commfor": "timm", "commfor-224": "timm", "bfree": "timm"}
FAMILIES = ("univfd", "rine", "commfor", "bfree")


def _bench():
    spec = importlib.util.spec_from_file_location("published_fidelity_clip", ROOT / "benchmarks" / "published_fidelity_clip.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


BENCH = _bench()


def _published(family: str, tmp_path: Path) -> tuple[dict, dict]:
    fx = json.loads((FIXTURES / f"{family}.json").read_text())
    state = BENCH.seeded_state(fx["state_shapes"], fx["seed"])
    assert BENCH.state_sha256(state) == fx["state_sha256"], "weights differ from the fixture's (torch's RNG changed?)"
    return fx, BENCH.published_files(family, state, tmp_path / "published")


@pytest.mark.parametrize("family", sorted(NEEDS))
def test_matches_the_reference_codes_logits(family, tmp_path):
    pytest.importorskip(NEEDS[family])
    fx, files = _published(family, tmp_path)
    images = BENCH.make_images(tmp_path / "images", large=False, jpeg=False)
    digests = {p.name: hashlib.sha256(BENCH.decoded(p).tobytes()).hexdigest() for p in images}
    assert digests == fx["images"], "generated images differ from the fixture's"
    ours = BENCH.ours(BENCH.FAMILY.get(family, family), files)(images)
    np.testing.assert_allclose(ours, fx["reference_logits"], rtol=0, atol=1e-4)
    assert np.ptp(fx["reference_logits"]) > 1e-3  # the images are told apart: the comparison is not vacuous


@pytest.mark.parametrize("family", sorted(NEEDS))
def test_import_checkpoint_builds_the_published_architecture(family, tmp_path, monkeypatch):
    """``detectors import --arch NAME FILE``: the published file fits the network the filter configures."""
    pytest.importorskip(NEEDS[family])
    from genvis_trust.detectors.importing import import_checkpoint

    fx, files = _published(family, tmp_path)
    for k, v in files.get("env", {}).items():
        monkeypatch.setenv(k, v)
    det = import_checkpoint(files["checkpoint"], BENCH.FAMILY.get(family, family))
    assert det.patch == fx["config"].get("img_size", fx["config"].get("image_size"))  # read from the file
    image = BENCH.decoded(BENCH.make_images(tmp_path / "images", large=False, jpeg=False)[0])
    with torch.no_grad():
        logit = det.net.cpu().eval()(det.net.prepare_input(image)[None])
    assert logit.shape == (1,)
    np.testing.assert_allclose(float(logit[0]), fx["reference_logits"][0], rtol=0, atol=1e-4)


def test_head_only_checkpoint_without_clip_weights_says_where_to_get_them(tmp_path, monkeypatch):
    pytest.importorskip("open_clip")
    _, files = _published("univfd", tmp_path)
    monkeypatch.delenv("GENVIS_TRUST_CLIP_WEIGHTS", raising=False)
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # no hub client: the message names the package
    head = torch.load(files["checkpoint"], weights_only=True)
    with pytest.raises(ImportError, match="huggingface_hub"):
        get_family("univfd").checkpoint_filter_fn(head)
    monkeypatch.setenv("GENVIS_TRUST_CLIP_WEIGHTS", str(tmp_path / "missing.safetensors"))
    with pytest.raises(CheckpointImportError, match="no such file"):
        get_family("univfd").checkpoint_filter_fn(head)


def test_wrong_layouts_are_refused(tmp_path):
    pytest.importorskip("open_clip")
    _, univfd = _published("univfd", tmp_path / "u")
    _, commfor = _published("commfor", tmp_path / "c")
    head = torch.load(univfd["checkpoint"], weights_only=True)
    vit = torch.load(commfor["checkpoint"], weights_only=True)["model"]
    with pytest.raises(CheckpointImportError, match="not a RINE"):
        get_family("rine").checkpoint_filter_fn(head)
    with pytest.raises(CheckpointImportError, match="not a B-Free"):
        get_family("bfree").checkpoint_filter_fn(vit)
    with pytest.raises(CheckpointImportError, match="not a Community Forensics"):
        get_family("commfor").checkpoint_filter_fn(head)
    with pytest.raises(CheckpointImportError, match="not a UnivFD"):
        get_family("univfd").checkpoint_filter_fn(vit)


def test_openai_torchscript_archive_is_refused(tmp_path):
    """OpenAI's own ViT-L-14.pt is a TorchScript archive (code): never loaded."""
    from genvis_trust.detectors.clip_backbone import read_clip_weights

    path = tmp_path / "ViT-L-14.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    with pytest.raises(CheckpointImportError, match="not a weights-only"):
        read_clip_weights(path)


@pytest.mark.parametrize(("family", "module", "package"), [
    ("univfd", "open_clip.transformer", "open_clip_torch"), ("rine", "open_clip.transformer", "open_clip_torch"),
    ("commfor", "timm.models.vision_transformer", "timm"), ("bfree", "timm.models.vision_transformer", "timm")])
def test_missing_optional_package_is_named(family, module, package, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match=rf"'{family}' detector needs the optional package '{package}'.*genvis-trust\[published\]"):
        get_family(family).cls(**json.loads((FIXTURES / f"{family}.json").read_text())["config"])


def test_cards():
    cards = {f: get_family(f).cls.published for f in FAMILIES}
    assert {f: get_family(f).patch for f in FAMILIES} == {"univfd": 224, "rine": 224, "commfor": 384, "bfree": 504}
    assert not cards["bfree"].commercial_use and all(cards[f].commercial_use for f in ("univfd", "rine", "commfor"))
    for f, card in cards.items():
        assert len(card.commit) == 40 and card.weights and card.requires, f
        assert "publisher" in card.claimed_accuracy, f


def test_transformers_clip_layout_gives_the_same_image_embedding():
    """A CLIP ViT in Hugging Face transformers' layout (``openai/clip-vit-large-patch14``'s
    ``model.safetensors``), renamed by ``visual_state``: our tower gives transformers' own image
    embedding (a reduced size of the same architecture, seeded weights)."""
    pytest.importorskip("open_clip")
    transformers = pytest.importorskip("transformers")
    from genvis_trust.detectors.clip_backbone import visual_config, visual_state

    cfg = transformers.CLIPVisionConfig(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=1,
                                        image_size=224, patch_size=32, projection_dim=16, hidden_act="quick_gelu")
    hf = transformers.CLIPVisionModelWithProjection(cfg).eval()
    hf.load_state_dict(BENCH.seeded_state({k: v.shape for k, v in hf.state_dict().items()}, 3))
    vis = visual_state(hf.state_dict())
    config = visual_config(vis)
    assert config == {"image_size": 224, "patch_size": 32, "width": 64, "layers": 2, "heads": 1, "output_dim": 16}
    net = get_family("univfd").cls(**config).eval()
    missing = net.load_state_dict({**vis, "fc.weight": torch.zeros(1, 16), "fc.bias": torch.zeros(1)})
    assert not missing.missing_keys and not missing.unexpected_keys
    x = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        np.testing.assert_allclose(net.visual(x).numpy(), hf(pixel_values=x).image_embeds.numpy(), rtol=0, atol=1e-4)


# the tensors' shapes in the files the publishers released (read from UniversalFakeDetect's
# pretrained_weights/fc_weights.pth and rine's ckpt/model_2class_trainable.pth at the recorded commits)
REAL_HEADS = {
    "univfd": {"weight": (1, 768), "bias": (1,)},
    "rine": {"alpha": (1, 24, 128), **{f"proj{j}.{i}.{p}": ((128, 1024 if (j, i) == (1, 1) else 128) if p == "weight" else (128,))
                                        for j in (1, 2) for i in (1, 4, 7, 10) for p in ("weight", "bias")},
             "head.0.weight": (128, 128), "head.0.bias": (128,), "head.3.weight": (128, 128), "head.3.bias": (128,),
             "head.6.weight": (1, 128), "head.6.bias": (1,)},
}


@pytest.mark.parametrize("family", sorted(REAL_HEADS))
def test_the_released_head_files_fit_vit_l14(family, tmp_path, monkeypatch):
    """The released heads, with OpenAI's ViT-L/14 tower (shapes only: tensors on the meta device),
    map onto the full-size network key for key and shape."""
    pytest.importorskip("open_clip")
    from genvis_trust.detectors.clip_backbone import VIT_L14

    with torch.device("meta"):
        net = get_family(family).cls(**VIT_L14)
    tower = {k: v for k, v in net.state_dict().items() if k.startswith("visual.")}
    monkeypatch.setattr(f"genvis_trust.detectors.{family}.clip_vit_l14_weights", lambda fam: tower)
    head = {k: torch.zeros(s, device="meta") for k, s in REAL_HEADS[family].items()}
    state, config = get_family(family).checkpoint_filter_fn(head)
    assert config == {"patch": 224, **VIT_L14, **({"nproj": 4, "proj_dim": 128} if family == "rine" else {})}
    with torch.device("meta"):
        net = get_family(family).cls(**{k: v for k, v in config.items() if k != "patch"})
    expected = net.state_dict()
    assert set(state) == set(expected)
    assert all(tuple(state[k].shape) == tuple(v.shape) for k, v in expected.items())
