"""ResNet-50 with a one-logit head, in the layout of the published CNNDetection checkpoints
(Wang et al., CVPR 2020): torchvision ``resnet50`` with ``fc`` -> 1 logit, ImageNet
normalisation. Checkpoints keep the state dict under ``'model'``; ``detectors import``
converts them with :meth:`ResNet50Detector.checkpoint_filter_fn`.
"""

from __future__ import annotations

import torch
from torch import nn

from .npr import IMAGENET_MEAN, IMAGENET_STD
from .registry import register_detector


@register_detector("resnet50", "ResNet-50 binary head, CNNDetection checkpoint layout", patch=224)
class ResNet50Detector(nn.Module):
    def __init__(self):
        super().__init__()
        # imported here, not at module import: the registry imports every family, and
        # torchvision's import costs seconds that a scan with another family never uses
        from genvis_trust.environment import import_torchvision

        self.model = import_torchvision().models.resnet50(weights=None, num_classes=1)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std).squeeze(1)

    @staticmethod
    def checkpoint_filter_fn(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict]:
        """torchvision ``resnet50`` keys sit under ``model.`` here; 224 px is the published input."""
        return {f"model.{k}": v for k, v in state.items()}, {"patch": 224}
