"""An image-level fusion: members scored each its own way, one logit each, combined by a fitted
logistic regression and calibrated at a false-positive budget.

The ``stack`` family (:mod:`.stack`) combines members on shared tiles, which is right for the
toolkit's own tile families and wrong for a published family, which must read the whole image
its authors' way. A fusion keeps every member as it is: a tile member reads its tiles and gives
the mean of their logits, a whole-image member reads the image through its reference
preprocessing (:attr:`Detector.whole_image`); the fusion's logit is ``weights . member_logits +
bias`` and its calibration puts p = 0.5 at the threshold that kept the budget
(``genvis-trust detectors stack`` fits it, :mod:`.stacking`).

The artifact is a detector folder of family ``fusion``: ``config.json`` lists the members by
name (bundled or installed) or folder, each with the sha256 of its weights; ``model.safetensors``
holds the combination (``weights``, ``bias``). The members are not copied: loading resolves each
one and refuses a member that is missing (``detectors fetch NAME`` installs a published one) or
whose weights are not the ones the fusion was fitted with.

For the scoring engine a fusion is a whole-image detector: :meth:`FusionDetector.inputs` runs
every member's own ``inputs`` in the decode worker (one :class:`FusedInput` per image), and
:meth:`FusionDetector.logits_prepared` scores each member over the batch, in its own way, and
combines. Every score carries the members' own logits and p (``DetectionScore.members``), which
scan quotes with each member's licence.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from genvis_trust.artifacts import ArtifactError, load_artifact, save_artifact

from .detector import ARTIFACT_LOADERS, DetectionScore, Detector, load_detector

__all__ = ["FUSION", "FusedInput", "FusionDetector", "FusionHead", "member_licence"]

FUSION = "fusion"  # the artifact family (not a network family: it has no registry entry)
AGGREGATION = "fused_member_logits"  # DetectionScore.aggregation of a fusion's scores
VERSION = 1


def member_licence(det: Detector) -> tuple[str, bool | None]:
    """A detector's licence and whether it allows commercial use: its card's (``detectors
    fetch`` writes them), else its publication's, else the toolkit's own."""
    card = det.card or {}
    if "licence" in card:
        return str(card["licence"]), card.get("commercial_use")
    pub = card.get("published") or det.published
    if pub and pub.get("licence"):
        return str(pub["licence"]), pub.get("commercial_use")
    return "the toolkit's (Apache-2.0)", True


class FusionHead(nn.Module):
    """The fitted combination of the members' image logits (``N x M`` -> ``N``)."""

    whole_image = True  # the scoring engine's whole-image path: one input (and logit) per image

    def __init__(self, n_members: int, weights: list[float] | None = None, bias: float = 0.0):
        super().__init__()
        w = weights if weights is not None else [1.0] * n_members
        if len(w) != n_members:
            raise ValueError(f"{len(w)} weights for {n_members} members")
        self.register_buffer("weights", torch.tensor(w, dtype=torch.float64))
        self.register_buffer("bias", torch.tensor(float(bias), dtype=torch.float64))

    def forward(self, m: torch.Tensor) -> torch.Tensor:
        return m.to(torch.float64) @ self.weights + self.bias


@dataclass
class FusedInput:
    """What every member reads for one image (each member's ``inputs(image)[0]``)."""

    parts: list[Any]
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:  # one image, one logit (the engine counts inputs by len)
        return 1


class FusionDetector(Detector):
    """Members, each a :class:`Detector` scoring images its own way, and their fitted combination."""

    def __init__(self, members: list[Detector], member_names: list[str], *, weights=None, bias: float = 0.0,
                 calibration: dict[str, Any] | None = None, name: str | None = None, card: dict[str, Any] | None = None,
                 device="auto", sha256: str | None = None):
        if len(members) != len(member_names) or not members:
            raise ValueError("a fusion needs one name per member, and at least one member")
        if any(isinstance(m, FusionDetector) for m in members):
            raise ValueError("a fusion cannot contain a fusion: name its members instead")
        self.members = members
        self.member_names = [str(n) for n in member_names]
        head = FusionHead(len(members), None if weights is None else [float(v) for v in weights], bias)
        super().__init__(FUSION, head, net_config={}, patch=max(m.patch for m in members), calibration=calibration,
                         name=name, card=card, device="cpu", sha256=sha256)
        self.device = members[0].device  # where the members run (the combination itself stays on the CPU)

    @property
    def whole_image(self) -> bool:
        return True

    @property
    def weights(self) -> np.ndarray:
        return self.net.weights.numpy()

    @property
    def bias(self) -> float:
        return float(self.net.bias)

    # -- scoring
    def inputs(self, image: np.ndarray, max_tiles: int | None = None):
        """Every member's own input for ``image`` (its tiles, or its reference preprocessing of
        the whole image), as one :class:`FusedInput` at position ``(0, 0)`` of a ``(1, 1)`` grid."""
        parts, notes = [], []
        for name, m in zip(self.member_names, self.members, strict=True):
            x, _, _, n = m.inputs(image)
            parts.append(x)
            notes += [f"{name}: {t}" for t in n if not t.startswith("whole image ")]
        h, w = image.shape[:2]
        return (FusedInput(parts), [(0, 0)], (1, 1),
                [f"image {w}x{h} read by {len(self.members)} members, each its own way; their image logits combined", *notes])

    @torch.no_grad()
    def member_logits(self, inputs: list[FusedInput], batch_size: int = 8) -> np.ndarray:
        """``N x M`` image logits: each member over every image, in its own way (a tile member:
        the mean of its tile logits, its main head; a whole-image member: its one logit)."""
        out = np.zeros((len(inputs), len(self.members)), np.float64)
        tile_batch = 16 if self.device.type == "cpu" else 1024
        for j, m in enumerate(self.members):
            parts = [fi.parts[j] for fi in inputs]
            if m.whole_image:
                out[:, j] = m.logits_prepared(parts, batch_size)
                continue
            z = m.logits(np.concatenate(parts), tile_batch) if parts else np.zeros(0, np.float32)
            pos = 0
            for i, t in enumerate(parts):
                out[i, j] = float(np.mean(z[pos : pos + len(t)]))
                pos += len(t)
        return out

    def image_member_logits(self, images: list[np.ndarray]) -> np.ndarray:
        """``N x M`` member image logits of decoded images (what the fit reads)."""
        return self.member_logits([self.inputs(im)[0] for im in images])

    def logits_prepared(self, inputs: list[FusedInput], batch_size: int = 8, *, members: bool = False):
        m = self.member_logits(inputs, batch_size)
        z = self.net(torch.from_numpy(m)).numpy().astype(np.float32) if len(m) else np.zeros(0, np.float32)
        return (z, m) if members else z

    def logits(self, tiles, batch_size: int = 256, *, members: bool = False):
        """Each entry a whole image (as for any whole-image detector)."""
        return self.logits_prepared([self.inputs(np.asarray(im))[0] for im in tiles], min(batch_size, 8), members=members)

    def optimize_for_inference(self, backend: str = "auto") -> bool:
        """The tile members' faster forms (:meth:`Detector.optimize_for_inference`); whole-image
        members keep their reference code's float32 path."""
        return any([m.optimize_for_inference(backend) for m in self.members if not m.whole_image])

    def member_scores(self, m: np.ndarray) -> list[dict[str, Any]]:
        """Each member's name, family, image logit, own p (its calibration, else the sigmoid) and
        licence, for one image's row of member logits."""
        out = []
        for name, det, z in zip(self.member_names, self.members, m, strict=True):
            lic, commercial = member_licence(det)
            out.append({"name": name, "family": det.family, "logit": round(float(z), 6),
                        "probability": round(float(det.probabilities(np.array([z]))[0]), 6), "calibrated": det.calibrated,
                        "licence": lic, "commercial_use": commercial})
        return out

    def aggregate(self, z, tiles, positions, grid, notes, out_of_domain, members=None) -> DetectionScore:
        if members is None:
            members = self.member_logits([tiles]) if isinstance(tiles, FusedInput) else None
        s = super().aggregate(z, tiles, positions, grid, notes, out_of_domain)
        s.tile_logits = s.tile_positions = None  # no tiles of its own: nothing to map
        s.aggregation = AGGREGATION
        if members is not None:
            s.members = self.member_scores(np.asarray(members).reshape(-1))
        return s

    # -- persistence
    def save(self, path: str | os.PathLike, card: dict[str, Any] | None = None) -> str:
        self.card = {**self.card, **(card or {})}
        config = {
            "members": [{"name": n, "family": m.family, "weights_sha256": m.sha256} for n, m in zip(self.member_names, self.members, strict=True)],
            "calibration": self.calibration,
            "aggregation": AGGREGATION,  # weights . member image logits + bias
        }
        tensors = {"weights": self.net.weights, "bias": self.net.bias.reshape(1)}
        self.sha256 = save_artifact(path, kind="detector", family=FUSION, config=config, tensors=tensors, card=self.card, version=VERSION)
        return self.sha256

    @classmethod
    def load(cls, path: str | os.PathLike, device="auto") -> FusionDetector:
        path = Path(path)
        art = load_artifact(path, kind="detector", family=FUSION, max_version=VERSION)
        specs = art.config.get("members") or []
        members = [resolve_member(s, path, device) for s in specs]
        w = art.tensors["weights"].tolist()
        b = float(art.tensors["bias"].reshape(-1)[0])
        return cls(members, [s["name"] for s in specs], weights=w, bias=b, calibration=art.config.get("calibration"),
                   name=art.card.get("name", path.name), card=art.card, device=device, sha256=art.sha256)


def resolve_member(spec: dict[str, Any], fusion: Path, device="auto") -> Detector:
    """A fusion's member by its recorded name (bundled, installed) or folder, with the weights it
    was fitted with; a clear error naming it otherwise."""
    name = spec["name"]
    try:
        det = load_detector(name, device=device)
    except ArtifactError as e:
        raise ArtifactError(f"{fusion}: member {name!r} ({spec.get('family')}) of this fusion cannot be loaded: {e}. "
                            f"Install it with `genvis-trust detectors fetch {Path(name).name}` (or put its folder back), "
                            "then scan again") from None
    want = spec.get("weights_sha256")
    if want and det.sha256 != want:
        raise ArtifactError(f"{fusion}: member {name!r} has other weights than the fusion was fitted with "
                            f"(sha256 {str(det.sha256)[:16]}…, fitted with {want[:16]}…): refit it with `genvis-trust detectors stack`")
    det.name = name
    return det


ARTIFACT_LOADERS[FUSION] = FusionDetector.load
