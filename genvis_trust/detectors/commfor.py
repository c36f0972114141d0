"""Community Forensics (Park & Owens, "Community Forensics: Using Thousands of Generators to Train
Fake Image Detectors", CVPR 2025): a timm ViT-S/16, fine-tuned whole, with a one-logit head;
published at 384 px and 224 px input.

Reference: JeongsooP/Community-Forensics (``models.py``: ``ViTClassifier`` = timm
``vit_small_patch16_{384,224}.augreg_in21k_ft_in1k`` with ``head = Linear(384, 1)``, state under
``vit.*``; ``dataloader.get_transform(mode='test')``: torchvision ``Resize(440)`` (``256`` for the
224 model) of the PIL image (shorter side, bilinear with PIL's antialiasing), ``CenterCrop(384)``
(``224``), ``ToTensor``, ImageNet mean/std; ``sigmoid(model(x))`` is p(fake)). The published
checkpoints: the Hugging Face repositories ``OwensLab/commfor-model-384`` / ``-224``
(``PyTorchModelHubMixin``: ``model.safetensors`` with ``vit.*`` keys) and a Dropbox tarball of
``torch.save({'model': state_dict, ...})`` files.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .clip_backbone import require
from .published import PublishedCard, WeightsSource
from .registry import CheckpointImportError, register_detector

REPO = "https://github.com/JeongsooP/Community-Forensics"
REPO_COMMIT = "5ec815fb59bb46d4bcf4155bab1baea23337c4f9"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE = {384: 440, 224: 256}  # dataloader.determine_resize_crop_sizes


def build_timm_vit(family: str, **kwargs) -> nn.Module:
    """timm's ``VisionTransformer`` with the given architecture (class token, token pooling)."""
    vit = require("timm.models.vision_transformer", "timm", family)
    return vit.VisionTransformer(**kwargs)


def imagenet_tensor(pil) -> torch.Tensor:
    from torchvision.transforms import functional as F

    return F.normalize(F.to_tensor(pil), IMAGENET_MEAN, IMAGENET_STD)


def vit_config(state: dict[str, torch.Tensor], prefix: str) -> dict[str, int]:
    """A timm ViT's architecture from its tensors (heads: 64 channels each, as in ViT-Ti/S/B)."""
    try:
        embed_dim, _, patch, _ = state[f"{prefix}patch_embed.proj.weight"].shape
        tokens = state[f"{prefix}pos_embed"].shape[1]
    except KeyError as e:
        raise CheckpointImportError(f"no {e.args[0]}: not a timm ViT state dict") from None
    depth = 1 + max(int(k[len(prefix):].split(".")[1]) for k in state if k.startswith(f"{prefix}blocks."))
    return {"patch_size": int(patch), "embed_dim": int(embed_dim), "depth": depth,
            "num_heads": max(1, int(embed_dim) // 64), "tokens": int(tokens)}


@register_detector("commfor", "Community Forensics: timm ViT-S/16 fine-tuned on thousands of generators "
                   "(Park & Owens, CVPR 2025)", patch=384)
class CommForNet(nn.Module):
    published = PublishedCard(
        publication="Park, Owens: Community Forensics: Using Thousands of Generators to Train Fake Image "
                    "Detectors, CVPR 2025",
        repository=REPO,
        commit=REPO_COMMIT,
        licence="MIT",
        commercial_use=True,
        preprocessing="torchvision Resize(440) of the PIL image (shorter side to 440, bilinear, PIL "
                      "antialiasing; 256 for the 224 model), CenterCrop(384) (224), ToTensor, ImageNet "
                      "mean/std; ViT-S/16 -> one logit, sigmoid = p(fake)",
        claimed_accuracy="the publisher's: accuracy and average precision on their Community Forensics "
                         "evaluation set (generators held out of training) and on public benchmarks, in "
                         "the paper's tables; the figures are not copied here because this machine could "
                         "not read the paper",
        weights=[
            WeightsSource("https://huggingface.co/OwensLab/commfor-model-384/resolve/main/model.safetensors",
                          "model.safetensors", variant="384", note="input 384 px (the repository's default)"),
            WeightsSource("https://huggingface.co/OwensLab/commfor-model-224/resolve/main/model.safetensors",
                          "model.safetensors", variant="224", note="input 224 px"),
            WeightsSource("https://www.dropbox.com/scl/fi/e8titz35ci9a2ij1oq5mu/model_weights.tar?"
                          "rlkey=tmyz3tjqf7b4dg071kypsgoal&st=09ud9hdj&dl=1", "model_weights.tar",
                          variant="torch", note="PyTorch checkpoints ({'model': state_dict}) in a tarball"),
        ],
        checkpoint_key="model",
        requires=["timm"],
    )

    def __init__(self, img_size: int = 384, patch_size: int = 16, embed_dim: int = 384, depth: int = 12,
                 num_heads: int = 6, resize: int | None = None):
        super().__init__()
        self.img_size = img_size
        self.resize = resize or RESIZE.get(img_size) or round(img_size * 256 / 224)
        self.vit = build_timm_vit("commfor", img_size=img_size, patch_size=patch_size, embed_dim=embed_dim,
                                  depth=depth, num_heads=num_heads, num_classes=1)

    def prepare_input(self, image: np.ndarray) -> torch.Tensor:
        from PIL import Image
        from torchvision.transforms import functional as F

        pil = F.resize(Image.fromarray(image), self.resize)  # bilinear on the PIL image, as the reference
        return imagenet_tensor(F.center_crop(pil, [self.img_size, self.img_size]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit(x).squeeze(1)

    @staticmethod
    def checkpoint_filter_fn(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict]:
        """``vit.*`` keys as published (Hugging Face or ``{'model': ...}``); the input size from the
        position embedding (577 tokens: 384 px, 197: 224 px at patch 16)."""
        if "vit.head.weight" not in state or state["vit.head.weight"].shape[0] != 1:
            raise CheckpointImportError("no one-logit 'vit.head': not a Community Forensics checkpoint")
        cfg = vit_config(state, "vit.")
        grid = round((cfg.pop("tokens") - 1) ** 0.5)
        img_size = grid * cfg["patch_size"]
        return dict(state), {"patch": img_size, "img_size": img_size, **cfg}


__all__ = ["CommForNet", "build_timm_vit", "vit_config"]
