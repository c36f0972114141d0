"""B-Free (Guillaro, Zingarini, Cozzolino, Verdoliva, "A Bias-Free Training Paradigm for More
General AI-generated Image Detection", CVPR 2025): a DINOv2 ViT-B/14 with four registers (timm
``vit_base_patch14_reg4_dinov2``) with a one-logit head, scoring five 504 px views of the whole
image, taken after the patch embedding.

Reference: grip-unina/B-Free (``code/main_bfree.py``: ``ToTensor`` + ImageNet mean/std of the whole
unresized image, ``config.yaml``: arch ``timm_c5i504_vit_base_patch14_reg4_dinov2.lvd142m``,
norm ``resnet``; ``code/networks/wrapper5crops.py``: the patch embedding's convolution runs on the
whole image; a grid smaller than 36 patches on either side is tiled periodically and cut to exactly 36 x 36; the centre
crop (offset ``(grid - 36) // 2``) and the four corner crops of 36 x 36 patch tokens go through the
rest of the ViT; the five logits are averaged. The logit is one output; its sigmoid is p(fake)).
The published ``model_epoch_best.pth`` is ``{'model': <timm ViT state dict>}``.

Licence: GRIP-UNINA's, for nonprofit use only: the toolkit loads a file the user downloaded and
never bundles or fetches it without the licence being accepted.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .commfor import build_timm_vit, imagenet_tensor, vit_config
from .published import PublishedCard, WeightsSource
from .registry import CheckpointImportError, register_detector

REPO = "https://github.com/grip-unina/B-Free"
REPO_COMMIT = "c6a9f898782fb466b29af01f21960b67415afb0e"
VIEWS = 5


@register_detector("bfree", "B-Free: DINOv2 ViT-B/14 with registers on five 504 px views (Guillaro et al., "
                   "CVPR 2025; nonprofit licence)", patch=504)
class BFreeNet(nn.Module):
    published = PublishedCard(
        publication="Guillaro, Zingarini, Cozzolino, Verdoliva: A Bias-Free Training Paradigm for More "
                    "General AI-generated Image Detection, CVPR 2025",
        repository=REPO,
        commit=REPO_COMMIT,
        licence="GRIP-UNINA licence (https://www.grip.unina.it/download/LICENSE_OPEN.txt): nonprofit and "
                "informational use only",
        commercial_use=False,
        preprocessing="no resize, no crop of the pixels: ToTensor, ImageNet mean/std of the whole image; "
                      "the ViT's patch convolution (14 px) over the whole image; a grid under 36 patches on "
                      "either side tiled periodically and cut to 36 x 36; centre + 4 corner crops of 36 x 36 patches (504 px) "
                      "through the ViT; the mean of the 5 logits, sigmoid = p(fake)",
        claimed_accuracy="the publisher's: AUC and balanced accuracy on their test sets (Synthbuster "
                         "extended with FLUX and SD 3.5, their viral-images set, and others) in the paper's "
                         "tables; the figures are not copied here because this machine could not read the "
                         "paper",
        weights=[
            WeightsSource("https://www.grip.unina.it/download/prog/B-Free/weights/BFREE_dino2reg4.zip",
                          "BFREE_dino2reg4.zip",
                          note="a zip of config.yaml + model_epoch_best.pth ({'model': state dict}); the "
                               "publisher's MD5 of the zip: f3f53fa647848b16cf81c913f148a198"),
        ],
        checkpoint_key="model",
        requires=["timm"],
    )

    def __init__(self, img_size: int = 504, patch_size: int = 14, embed_dim: int = 768, depth: int = 12,
                 num_heads: int = 12):
        super().__init__()
        vit = build_timm_vit("bfree", img_size=img_size, patch_size=patch_size, embed_dim=embed_dim, depth=depth,
                             num_heads=num_heads, init_values=1e-5, reg_tokens=4, no_embed_class=True,
                             num_classes=1)
        # the patch embedding runs on the whole image, the rest of the ViT on 36 x 36-token views
        self.patch_embed, vit.patch_embed = vit.patch_embed, nn.Identity()
        self.vit = vit
        self.grid = tuple(self.patch_embed.grid_size)

    def prepare_input(self, image: np.ndarray) -> torch.Tensor:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an H x W x 3 uint8 RGB image, got {image.shape} {image.dtype}")
        return imagenet_tensor(image)  # to_tensor reads an H x W x 3 uint8 array as it reads the PIL image

    def views(self, x: torch.Tensor) -> torch.Tensor:
        """``5N x tokens x C``: the centre and the four corner views of the patch tokens."""
        gh, gw = self.grid
        e = self.patch_embed.proj(x)
        h, w = e.shape[-2:]
        if h < gh or w < gw:  # tiled periodically, then cut to exactly one view (both sides, as the reference)
            e = e.repeat(1, 1, max(-(-gh // h), 1), max(-(-gw // w), 1))[..., :gh, :gw]
            h, w = gh, gw
        top, left = (h - gh) // 2, (w - gw) // 2
        crops = [e[..., top:top + gh, left:left + gw], e[..., :gh, :gw], e[..., h - gh:, :gw],
                 e[..., h - gh:, w - gw:], e[..., :gh, w - gw:]]
        tokens = torch.cat(crops, 0).flatten(2).transpose(1, 2)
        return self.patch_embed.norm(tokens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.vit(self.views(x)).squeeze(1)
        return y.view(VIEWS, x.shape[0]).mean(0)

    @staticmethod
    def checkpoint_filter_fn(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict]:
        """The published timm state dict: ``patch_embed.*`` kept, the rest under ``vit.``; the view
        size from the position embedding (1296 tokens: 36 x 36 patches of 14 px = 504)."""
        if "reg_token" not in state or "head.weight" not in state or state["head.weight"].shape[0] != 1:
            raise CheckpointImportError("no 'reg_token' / one-logit 'head': not a B-Free checkpoint")
        cfg = vit_config(state, "")
        grid = round(cfg.pop("tokens") ** 0.5)  # no class token in the position embedding
        img_size = grid * cfg["patch_size"]
        out = {k if k.startswith("patch_embed.") else f"vit.{k}": v for k, v in state.items()}
        return out, {"patch": img_size, "img_size": img_size, **cfg}


__all__ = ["BFreeNet"]
