"""CNNDetection (Wang et al., CVPR 2020): torchvision's ResNet-50 with one logit, trained on
ProGAN images with blur and JPEG augmentation, scored the way its code scores one image.

``prepare_input`` is ``demo.py``'s transform: the whole image at its own size (``crop=None``,
the default there and the README's "no crop" columns), or ``CenterCrop(crop)`` first (``crop=224``:
the paper's setting), then ``ToTensor`` and ImageNet normalisation; ``forward`` is the ResNet-50.
The published files are ``torch.save({'model': state_dict, ...})`` of torchvision ``resnet50``
with ``fc`` -> 1; the keys sit under ``model.`` here. The old tile form is ``resnet50``
(:mod:`.resnet50`), kept so artifacts made with it still load.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .npr import IMAGENET_MEAN, IMAGENET_STD
from .published import PublishedCard, WeightsSource
from .registry import CheckpointImportError, register_detector

CNNDETECTION_CARD = PublishedCard(
    publication="Wang, Wang, Zhang, Owens, Efros: CNN-generated images are surprisingly easy to spot... "
    "for now, CVPR 2020",
    repository="https://github.com/PeterWang512/CNNDetection",
    commit="ea0b5622365e3a9cd31d1b54b6b5971131a839ab",
    licence="CC-BY-NC-SA-4.0",
    commercial_use=False,
    preprocessing="whole image at its own size, no resize (demo.py and eval.py's defaults; optional "
    "CenterCrop(224), the paper's setting); ToTensor; ImageNet mean/std normalisation; ResNet-50 -> 1 logit",
    claimed_accuracy="blur_jpg_prob0.5.pth, no crop: AP 99.3 StyleGAN, 90.4 BigGAN, 97.9 CycleGAN, 97.5 "
    "StarGAN, 98.8 GauGAN, 99.1 StyleGAN2, 62.8 SAN, 63.1 Deepfake (accuracy 77.5, 59.5, 84.6, 84.7, 82.9, "
    "72.4, 50.0, 50.4) on the publisher's ForenSynths test set (the publisher's README table)",
    weights=[
        WeightsSource("https://www.dropbox.com/s/2g2jagq2jn1fd0i/blur_jpg_prob0.5.pth?dl=1", "blur_jpg_prob0.5.pth",
                      variant="blur_jpg_prob0.5", note="weights/download_weights.sh (which asks ?dl=0)"),
        WeightsSource("https://www.dropbox.com/s/h7tkpcgiwuftb6g/blur_jpg_prob0.1.pth?dl=1", "blur_jpg_prob0.1.pth",
                      variant="blur_jpg_prob0.1", note="weights/download_weights.sh (which asks ?dl=0)"),
    ],
    checkpoint_key="model",
)


@register_detector("cnndetection", "CNNDetection (Wang et al., CVPR 2020): ResNet-50 on the whole image, "
                   "the publication's preprocessing", patch=224)
class CNNDetectionNet(nn.Module):
    published = CNNDETECTION_CARD

    def __init__(self, crop: int | None = None):
        super().__init__()
        # imported here, not at module import: the registry imports every family, and
        # torchvision's import costs seconds that a scan with another family never uses
        from torchvision.models import resnet50

        self.crop = crop
        self.model = resnet50(weights=None, num_classes=1)

    def prepare_input(self, image) -> torch.Tensor:
        """demo.py's transform of one ``H x W x 3`` uint8 RGB image."""
        from torchvision.transforms import functional as TF

        x = TF.to_tensor(np.array(image))  # a copy: decoded arrays may be read-only
        if self.crop:  # CenterCrop commutes with ToTensor (pure indexing, zero padding)
            x = TF.center_crop(x, [self.crop, self.crop])
        return TF.normalize(x, IMAGENET_MEAN, IMAGENET_STD)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).squeeze(1)

    @staticmethod
    def checkpoint_filter_fn(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict]:
        """torchvision ``resnet50`` keys (the file's ``'model'``) under ``model.``."""
        if "fc.weight" not in state or "layer4.0.conv1.weight" not in state:
            raise CheckpointImportError("does not fit cnndetection: no fc.weight / layer4 weights (not a CNNDetection ResNet-50 state dict)")
        return {f"model.{k}": v for k, v in state.items()}, {"patch": 224}


__all__ = ["CNNDETECTION_CARD", "CNNDetectionNet"]
