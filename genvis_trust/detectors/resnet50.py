"""ResNet-50 with a one-logit head in the CNNDetection layout, scored on the toolkit's 224 px
tiles: the old name and form of CNNDetection, kept so that artifacts made with it load and score
as they did. A published CNNDetection file is now imported as ``cnndetection``
(:mod:`.cnndetection`: the whole image, the publication's preprocessing); ``detectors import
--arch resnet50`` does that and says so (``renamed_to``).
"""

from __future__ import annotations

import torch
from torch import nn

from .npr import IMAGENET_MEAN, IMAGENET_STD
from .registry import register_detector


@register_detector("resnet50", "ResNet-50 binary head on 224 px tiles (the old form of CNNDetection, "
                   "kept for artifacts made with it; published files import as cnndetection)", patch=224)
class ResNet50Detector(nn.Module):
    renamed_to = "cnndetection"  # where ``detectors import --arch resnet50`` now goes

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
