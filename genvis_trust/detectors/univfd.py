"""UnivFD (Ojha, Li & Lee, "Towards Universal Fake Image Detectors that Generalize Across
Generative Models", CVPR 2023): one linear layer on the frozen image embedding of OpenAI's
CLIP ViT-L/14.

Reference: WisconsinAIVision/UniversalFakeDetect (``models/clip_models.py``: ``CLIPModel`` =
``clip.load("ViT-L/14")`` + ``fc = nn.Linear(768, 1)``; ``validate.py``: ``CenterCrop(224)`` of
the unresized PIL image, ``ToTensor``, CLIP's mean/std; ``sigmoid(fc(encode_image(x)))`` is
p(fake)). The published ``pretrained_weights/fc_weights.pth`` is the head alone (``weight``
1x768, ``bias``); the CLIP tower comes from :func:`.clip_backbone.clip_vit_l14_weights`.
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

REPO = "https://github.com/WisconsinAIVision/UniversalFakeDetect"
REPO_COMMIT = "76a0e3e60a8a06458707a625d269ba815a2e5919"


@register_detector("univfd", "UnivFD: linear probe on CLIP ViT-L/14 image features (Ojha et al., CVPR 2023)",
                   patch=224, **VIT_L14)
class UnivFDNet(nn.Module):
    published = PublishedCard(
        publication="Ojha, Li, Lee: Towards Universal Fake Image Detectors that Generalize Across "
                    "Generative Models, CVPR 2023",
        repository=REPO,
        commit=REPO_COMMIT,
        licence="MIT (code and head); the CLIP ViT-L/14 weights are OpenAI's, MIT",
        commercial_use=True,
        preprocessing="no resize: torchvision CenterCrop(224) of the PIL image (sides under 224 px "
                      "padded with black), ToTensor, Normalize(CLIP mean 0.4815/0.4578/0.4082, "
                      "std 0.2686/0.2613/0.2758); CLIP ViT-L/14 image embedding (768) -> Linear -> "
                      "one logit, sigmoid = p(fake)",
        claimed_accuracy="the publisher's: average precision and accuracy per test generator in the "
                         "paper's tables (trained on ProGAN; tested on CNNDetection's GAN/deepfake sets and "
                         "their own diffusion / autoregressive sets); the figures are not copied here "
                         "because this machine could not read the paper to check them",
        weights=[
            WeightsSource(f"{REPO}/raw/{REPO_COMMIT}/pretrained_weights/fc_weights.pth", "fc_weights.pth",
                          size=4083, note="the linear head only (committed in the repository)"),
            CLIP_BACKBONE_SOURCE,
        ],
        checkpoint_key=None,
        requires=["open_clip_torch"],
    )

    def __init__(self, image_size: int = 224, patch_size: int = 14, width: int = 1024, layers: int = 24,
                 heads: int = 16, output_dim: int = 768):
        super().__init__()
        self.image_size = image_size
        self.visual = build_clip_visual("univfd", image_size=image_size, patch_size=patch_size,
                                        width=width, layers=layers, heads=heads, output_dim=output_dim)
        self.fc = nn.Linear(output_dim, 1)

    def prepare_input(self, image: np.ndarray) -> torch.Tensor:
        return clip_input(image, self.image_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.visual(x)).squeeze(1)

    @staticmethod
    def checkpoint_filter_fn(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict]:
        """The published head (``weight``/``bias``, or ``fc.*`` of a whole ``CLIPModel``) as ``fc.*``;
        the CLIP tower from the same file when it holds one (``visual.*``, ``model.visual.*``),
        else OpenAI's ViT-L/14 (:func:`.clip_backbone.clip_vit_l14_weights`)."""
        head = {k.removeprefix("fc."): v for k, v in state.items() if k in ("weight", "bias", "fc.weight", "fc.bias")}
        if set(head) != {"weight", "bias"} or head["weight"].ndim != 2 or head["weight"].shape[0] != 1:
            raise CheckpointImportError("no 1-output linear head ('weight'/'bias' or 'fc.*'): not a UnivFD checkpoint")
        vis = visual_state(state) or clip_vit_l14_weights("univfd")
        config = visual_config(vis)
        if config["output_dim"] != head["weight"].shape[1]:
            raise CheckpointImportError(
                f"the head takes {head['weight'].shape[1]} features, the CLIP tower gives {config['output_dim']}")
        return {**vis, "fc.weight": head["weight"], "fc.bias": head["bias"]}, {"patch": config["image_size"], **config}


__all__ = ["UnivFDNet"]
