"""Feature networks for FID/KID/precision-recall, always named next to the numbers they give.

- ``toolkit``: :class:`ToolkitFeatureNet`, a small CNN this toolkit trains on built-in
  data (``train`` splits only): one trunk, two heads -- digit class (builtin-digits, 10
  classes) and source photograph of a patch (builtin-photos). Its 128-d pooled trunk
  output is the feature; its digit head is the classifier behind mode coverage and
  class-conditional accuracy. Shipped in ``assets/features/gvt-features-v1``. Numbers
  from it are comparable with each other, *not* with published FIDs (which use Inception).
- ``inception``: :class:`InceptionFeatures`, torchvision's Inception-v3 architecture with
  weights from a file the user supplies (torchvision state dict ``.pth`` loaded with
  ``weights_only=True``, or ``.safetensors``; pytorch-fid's ``pt_inception`` weights have
  the same keys with a 1008-way fc). 2048-d pool features at 299x299. pytorch-fid replaces
  a few Inception blocks with TF-compatible variants, so its FIDs differ slightly from
  this network's with the same weights.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from .base import GeneratorError, resolve_device

FEATURES_ASSET = Path(__file__).resolve().parent.parent / "assets" / "features" / "gvt-features-v1"


def _to_tensor(images: np.ndarray | torch.Tensor, device) -> torch.Tensor:
    """N x H x W x 3 uint8 -> float N x 3 x H x W in [-1, 1]."""
    t = torch.as_tensor(np.asarray(images))
    if t.ndim != 4 or t.shape[-1] != 3:
        raise GeneratorError(f"expected N x H x W x 3 uint8 images, got shape {tuple(t.shape)}")
    return t.permute(0, 3, 1, 2).float().to(device) / 127.5 - 1.0


class ToolkitFeatureNet(nn.Module):
    version = 1

    def __init__(self, width: int = 32, num_digits: int = 10, num_photos: int = 6):
        super().__init__()
        self.config = {"width": width, "num_digits": num_digits, "num_photos": num_photos}
        w = width

        def block(ci, co):
            return [nn.Conv2d(ci, co, 3, 1, 1), nn.BatchNorm2d(co), nn.ReLU(True)]

        self.trunk = nn.Sequential(
            *block(3, w), *block(w, w), nn.MaxPool2d(2),
            *block(w, 2 * w), *block(2 * w, 2 * w), nn.MaxPool2d(2),
            *block(2 * w, 4 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.digit_head = nn.Linear(4 * w, num_digits)
        self.photo_head = nn.Linear(4 * w, num_photos)

    def forward(self, x):
        if x.shape[-1] != 32:
            x = F.interpolate(x, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
        return self.trunk(x)


class FeatureExtractor:
    """Uniform interface: ``features(images)`` -> (N, D) float64, plus a record of what it is."""

    name = "features"
    description = ""

    def __init__(self, net: nn.Module, device, batch: int = 256):
        self.net = net.to(device).eval()
        self.device = device
        self.batch = batch

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @torch.no_grad()
    def features(self, images) -> np.ndarray:
        outs = []
        for i in range(0, len(images), self.batch):
            outs.append(self._embed(_to_tensor(images[i : i + self.batch], self.device)).double().cpu())
        return torch.cat(outs).numpy()

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description}


class ToolkitFeatures(FeatureExtractor):
    name = "gvt-features-v1"
    description = ("toolkit CNN trained on builtin-digits (class) + builtin-photos (source photo) "
                   "train splits; 128-d pooled features")

    def __init__(self, path: str | Path = FEATURES_ASSET, device: str = "auto"):
        path = Path(path)
        if not (path / "model.safetensors").is_file():
            raise GeneratorError(
                f"{path}: toolkit feature network missing; train it with "
                "`genvis-trust generators train-features --out PATH`")
        from genvis_trust.artifacts import ArtifactError, load_artifact

        v = ToolkitFeatureNet.version
        try:
            art = load_artifact(path, kind="features", family=self.name, min_version=v, max_version=v)
        except ArtifactError as e:
            raise GeneratorError(str(e)) from None
        net = ToolkitFeatureNet(**art.config)
        net.load_state_dict(art.tensors)
        self.card = art.card
        self.path = path
        super().__init__(net, resolve_device(device))

    @torch.no_grad()
    def classify_digits(self, images) -> np.ndarray:
        preds = []
        for i in range(0, len(images), self.batch):
            f = self.net(_to_tensor(images[i : i + self.batch], self.device))
            preds.append(self.net.digit_head(f).argmax(1).cpu())
        return torch.cat(preds).numpy()

    def record(self):
        return {**super().record(), "path": str(self.path),
                "digits_test_accuracy": self.card.get("metrics", {}).get("digits_test_accuracy")}


class InceptionFeatures(FeatureExtractor):
    """Inception-v3 pool features (2048-d) from a user-supplied weights file."""

    name = "inception-v3"

    def __init__(self, weights: str | Path, device: str = "auto", batch: int = 32, resize: int = 299):
        from genvis_trust.environment import import_torchvision

        Inception3 = import_torchvision().models.Inception3
        weights = Path(weights)
        if not weights.is_file():
            raise GeneratorError(f"{weights}: Inception weights file not found")
        if weights.suffix == ".safetensors":
            state = load_file(str(weights))
        else:
            try:
                state = torch.load(weights, map_location="cpu", weights_only=True)
            except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file
                raise GeneratorError(f"{weights}: not a weights-only torch state dict ({e})") from None
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        if not isinstance(state, dict) or "fc.weight" not in state:
            raise GeneratorError(f"{weights}: not an Inception-v3 state dict (no 'fc.weight')")
        state = {k: v for k, v in state.items() if not k.startswith("AuxLogits.")}
        num_classes = int(state["fc.weight"].shape[0])
        net = Inception3(num_classes=num_classes, aux_logits=False, init_weights=False, transform_input=False)
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise GeneratorError(f"{weights}: does not fit torchvision's Inception-v3: {e}") from None
        net.fc = nn.Identity()
        # pt_inception (1008 classes) expects inputs in [-1, 1]; torchvision's ImageNet weights
        # expect ImageNet mean/std normalisation.
        self.fid_style = num_classes == 1008
        self.resize = resize
        self.weights = weights
        self.description = (f"torchvision Inception-v3, weights {weights.name} "
                            f"({'pt_inception-style, inputs in [-1,1]' if self.fid_style else 'ImageNet-normalised'}), "
                            f"pool3 2048-d at {resize}px")
        super().__init__(net, resolve_device(device), batch)

    def _embed(self, x):
        x = F.interpolate(x, size=(self.resize, self.resize), mode="bilinear", align_corners=False)
        if not self.fid_style:
            x01 = (x + 1) / 2
            mean = torch.tensor([0.485, 0.456, 0.406], device=x.device).view(1, 3, 1, 1)
            std = torch.tensor([0.229, 0.224, 0.225], device=x.device).view(1, 3, 1, 1)
            x = (x01 - mean) / std
        return self.net(x)

    def record(self):
        return {**super().record(), "weights": str(self.weights)}


def get_feature_extractor(kind: str = "toolkit", *, inception_weights: str | Path | None = None,
                          device: str = "auto") -> FeatureExtractor:
    if kind == "toolkit":
        return ToolkitFeatures(device=device)
    if kind == "inception":
        if inception_weights is None:
            raise GeneratorError("--features inception needs --inception-weights FILE (not downloadable offline)")
        return InceptionFeatures(inception_weights, device=device)
    raise GeneratorError(f"features must be 'toolkit' or 'inception', got {kind!r}")


# --------------------------------------------------------------------------- training


def train_feature_net(out: str | Path = FEATURES_ASSET, *, steps: int = 1500, batch: int = 64, seed: int = 0,
                      photo_patches: int = 6000, device: str = "auto", command: str | None = None) -> dict:
    """Train :class:`ToolkitFeatureNet` on the train splits; writes config/model/card to ``out``."""
    from .training import load_data

    dev = resolve_device(device)
    torch.manual_seed(seed)
    digits = load_data("builtin-digits", n=None, seed=seed)
    photos = load_data("builtin-photos", n=photo_patches, seed=seed)
    groups = sorted({k for k in _photo_groups(photos)})
    pg = torch.as_tensor([groups.index(g) for g in _photo_groups(photos)])
    net = ToolkitFeatureNet(num_photos=len(groups)).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    rng = np.random.default_rng(seed)
    t0 = time.time()
    net.train()
    for _ in range(steps):
        di = torch.from_numpy(rng.integers(0, len(digits), batch))
        pi = torch.from_numpy(rng.integers(0, len(photos), batch))
        xd = digits.images[di].float().to(dev) / 127.5 - 1
        xp = photos.images[pi].float().to(dev) / 127.5 - 1
        # light augmentation: small shifts for digits, flips for photo patches
        xd = torch.roll(xd, shifts=(int(rng.integers(-2, 3)), int(rng.integers(-2, 3))), dims=(2, 3))
        if rng.random() < 0.5:
            xp = xp.flip(3)
        f = net(torch.cat([xd, xp]))
        loss = F.cross_entropy(net.digit_head(f[:batch]), digits.class_ids[di].to(dev)) + \
            F.cross_entropy(net.photo_head(f[batch:]), pg[pi].to(dev))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    net.eval()
    test = load_data("builtin-digits", n=None, seed=seed, split="test")
    with torch.no_grad():
        pred = net.digit_head(net(test.images.float().to(dev) / 127.5 - 1)).argmax(1).cpu()
    acc = float((pred == test.class_ids).float().mean())
    from genvis_trust.artifacts import CARD, read_json, save_artifact

    card = {
        "name": ToolkitFeatures.name,
        "data": {"digits": digits.spec, "photos": photos.spec, "photo_classes": groups},
        "steps": steps, "batch": batch, "seed": seed, "wall_time_s": round(time.time() - t0, 1),
        "metrics": {"digits_test_accuracy": round(acc, 4), "digits_test_n": len(test)},
        "feature_dim": 4 * net.config["width"],
        "command": command,
    }
    # each file is replaced atomically: the bundled asset is rewritten in place
    save_artifact(out, kind="features", family=ToolkitFeatures.name, config=net.config,
                  tensors=net.state_dict(), card=card, version=net.version)
    return read_json(Path(out) / CARD)


def _photo_groups(td) -> list[str]:
    # TrainingData keeps no per-image group; recompute it from the source stream in order
    from genvis_trust.datasets import get_source

    spec = td.spec
    src = get_source(spec["source"], patch=spec["patch"], n=spec["n"], seed=spec["seed"], split=spec["split"])
    return [s.group for s in src]
