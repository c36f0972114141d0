"""RINE (Koutlis & Papadopoulos, "Leveraging Representations from Intermediate Encoder-blocks for
Synthetic Image Detection", ECCV 2024): the class tokens of every block of a frozen CLIP
ViT-L/14, projected, weighted by learned per-block importances, summed, and classified.

Reference: mever-team/rine (``src/models.py``: forward hooks on every block's ``ln_2``, so the
"class token" of block *i* is ``ln_2`` of that block's residual stream after attention, at the
class position; ``proj1`` = Dropout + ``nproj`` x (Linear, ReLU, Dropout), ``alpha`` softmaxed
over blocks, ``proj2`` likewise, ``head`` = 3 Linear with ReLU/Dropout; logit = ``model(x)[0]``,
sigmoid = p(fake). ``src/utils.py``: ``get_transforms()[1]`` = ``CenterCrop(224)`` of the
unresized PIL image, ``ToTensor``, CLIP's mean/std). The published ``ckpt/model_*_trainable.pth``
holds the trainable part only (``alpha``, ``proj1.*``, ``proj2.*``, ``head.*``); the CLIP tower
comes from :func:`.clip_backbone.clip_vit_l14_weights`.

The Sequential indices of ``proj1``/``proj2``/``head`` are the reference's (Dropouts included),
so the published keys load unchanged. On a CUDA device the reference code runs CLIP in half
precision (``clip.load`` keeps OpenAI's fp16 weights there); this family runs in fp32 unless
the toolkit casts it, and the fidelity is measured in fp32 on CPU, where the reference does too.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .clip_backbone import (
    CLIP_BACKBONE_SOURCE,
    VIT_L14,
    build_clip_visual,
    clip_input,
    clip_vit_l14_weights,
    visual_config,
    visual_state,
)
from .published import PublishedCard, WeightsSource
from .registry import CheckpointImportError, register_detector

REPO = "https://github.com/mever-team/rine"
REPO_COMMIT = "9b7fd5857cc205d0412be6aeee0d7611b95bd620"


def _projection(n: int, d_in: int, d: int) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Dropout()]
    for i in range(n):
        layers += [nn.Linear(d_in if i == 0 else d, d), nn.ReLU(), nn.Dropout()]
    return nn.Sequential(*layers)


@register_detector("rine", "RINE: heads on the class tokens of every CLIP ViT-L/14 block (Koutlis & "
                   "Papadopoulos, ECCV 2024)", patch=224, **VIT_L14, nproj=4, proj_dim=128)
class RINENet(nn.Module):
    published = PublishedCard(
        publication="Koutlis, Papadopoulos: Leveraging Representations from Intermediate Encoder-blocks "
                    "for Synthetic Image Detection, ECCV 2024",
        repository=REPO,
        commit=REPO_COMMIT,
        licence="Apache-2.0 (code and trainable part); the CLIP ViT-L/14 weights are OpenAI's, MIT",
        commercial_use=True,
        preprocessing="no resize: torchvision CenterCrop(224) of the PIL image (sides under 224 px "
                      "padded with black), ToTensor, Normalize(CLIP mean/std); the class token after "
                      "each block's ln_2 (24 x 1024) -> proj1 -> softmax(alpha)-weighted sum over blocks "
                      "-> proj2 -> head -> one logit, sigmoid = p(fake)",
        claimed_accuracy="the publisher's: accuracy and average precision per generator in the paper's "
                         "tables (trained on ProGAN with 1, 2 or 4 classes, or on latent-diffusion images; "
                         "tested on CNNDetection's sets, UnivFD's diffusion sets and Synthbuster); the "
                         "figures are not copied here because this machine could not read the paper",
        weights=[
            WeightsSource(f"{REPO}/raw/{REPO_COMMIT}/ckpt/model_2class_trainable.pth",
                          "model_2class_trainable.pth", size=1139686, variant="2class",
                          note="trained on 2 ProGAN classes; nproj=4, proj_dim=128 (read from the shapes)"),
            CLIP_BACKBONE_SOURCE,
        ],
        checkpoint_key=None,
        requires=["open_clip_torch"],
    )

    def __init__(self, image_size: int = 224, patch_size: int = 14, width: int = 1024, layers: int = 24,
                 heads: int = 16, output_dim: int = 768, nproj: int = 4, proj_dim: int = 128):
        super().__init__()
        self.image_size = image_size
        self.visual = build_clip_visual("rine", image_size=image_size, patch_size=patch_size, width=width,
                                        layers=layers, heads=heads, output_dim=output_dim)
        self.alpha = nn.Parameter(torch.zeros(1, layers, proj_dim))
        self.proj1 = _projection(nproj, width, proj_dim)
        self.proj2 = _projection(nproj, proj_dim, proj_dim)
        self.head = nn.Sequential(nn.Linear(proj_dim, proj_dim), nn.ReLU(), nn.Dropout(),
                                  nn.Linear(proj_dim, proj_dim), nn.ReLU(), nn.Dropout(), nn.Linear(proj_dim, 1))
    def prepare_input(self, image: np.ndarray) -> torch.Tensor:
        return clip_input(image, self.image_size)

    def block_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """``N x blocks x width``: each block's class token after its ``ln_2``, taken where the
        reference takes it (a forward hook, here held only for this call: copies of the network
        carry no hook that points back at this one)."""
        tokens: list[torch.Tensor] = []
        batch_first = getattr(self.visual.transformer, "batch_first", True)

        def keep(_module, _inputs, out):
            tokens.append(out[:, 0] if batch_first else out[0])

        handles = [b.ln_2.register_forward_hook(keep) for b in self.visual.transformer.resblocks]
        try:
            self.visual(x)
        finally:
            for h in handles:
                h.remove()
        return torch.stack(tokens, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.proj1(self.block_tokens(x))
        z = (torch.softmax(self.alpha, dim=1) * g).sum(dim=1)
        return self.head(self.proj2(z)).squeeze(1)

    @staticmethod
    def checkpoint_filter_fn(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict]:
        """The published trainable part as is (``alpha``, ``proj1.*``, ``proj2.*``, ``head.*``);
        the CLIP tower from the same file when it holds one (``clip.visual.*``, ``visual.*``),
        else OpenAI's ViT-L/14. ``nproj`` and ``proj_dim`` are read from the shapes."""
        if "alpha" not in state or not any(k.startswith("proj1.") for k in state):
            raise CheckpointImportError("no 'alpha' / 'proj1.*': not a RINE checkpoint")
        heads = {k: v for k, v in state.items() if k == "alpha" or k.startswith(("proj1.", "proj2.", "head."))}
        vis = visual_state(state) or clip_vit_l14_weights("rine")
        config = visual_config(vis)
        blocks, proj_dim = state["alpha"].shape[1:]
        nproj = sum(1 for k in heads if k.startswith("proj1.") and k.endswith(".weight"))
        if blocks != config["layers"] or heads["proj1.1.weight"].shape[1] != config["width"]:
            raise CheckpointImportError(
                f"the heads expect {blocks} blocks of width {heads['proj1.1.weight'].shape[1]}, the CLIP tower "
                f"has {config['layers']} of width {config['width']}")
        return {**vis, **heads}, {"patch": config["image_size"], **config, "nproj": nproj, "proj_dim": int(proj_dim)}


__all__ = ["RINENet"]
