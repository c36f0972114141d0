"""Super-resolution x4: a residual network on the low-resolution grid, two pixel-shuffle x2 steps.

The network predicts the *residual* over a bicubic up-sampling (Kim et al. 2016's VDSR trick;
the body is EDSR-like: residual blocks without normalisation, Lim et al. 2017), so an untrained
model starts as plain bicubic and training only adds the detail bicubic misses. Up-sampling is
sub-pixel convolution (pixel shuffle, Shi et al. 2016), whose periodic traces differ from a
latent decoder's nearest-neighbour ones.

Training: high-resolution crops of real photographs (``image_size``), down-sampled x4 with an
anti-aliased bicubic filter as the input, L1 loss plus an L1 on log-amplitude spectra.
As a generator it is image-to-image: ``generate`` up-samples native-resolution crops of the
built-in photographs (``size`` 256 by default -> 1024 x 1024 outputs).

>>> m = SuperResolution(image_size=16, width=8, blocks=1)
>>> import torch
>>> m.transform(torch.zeros(1, 3, 8, 12, dtype=torch.uint8)).shape
torch.Size([1, 32, 48, 3])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .autoencoder import spectral_l1
from .base import GeneratorError, from_unit, register_generator, to_unit
from .image_to_image import ImageToImage


class _Res(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1), nn.ReLU(inplace=True), nn.Conv2d(c, c, 3, 1, 1))

    def forward(self, x):
        return x + 0.2 * self.body(x)


def downsample(x: torch.Tensor, scale: int) -> torch.Tensor:
    """The degradation the model learns to invert: anti-aliased bicubic x1/scale."""
    h, w = x.shape[-2] // scale, x.shape[-1] // scale
    return F.interpolate(x, size=(h, w), mode="bicubic", antialias=True, align_corners=False)


@register_generator("super-resolution", "x4 super-resolution (residual net over bicubic, pixel-shuffle); image-to-image")
class SuperResolution(ImageToImage):
    version = 1
    output_scale = 4

    def __init__(self, *, image_size: int = 128, num_classes: int = 0, width: int = 48, blocks: int = 6,
                 spectral_weight: float = 0.05, lr: float = 3e-4):
        if num_classes:
            raise GeneratorError("super-resolution is unconditional")
        super().__init__(image_size=image_size, num_classes=0, width=width, blocks=blocks,
                         spectral_weight=spectral_weight, lr=lr)
        self.spectral_weight = spectral_weight
        self.head = nn.Conv2d(3, width, 3, 1, 1)
        self.body = nn.Sequential(*[_Res(width) for _ in range(blocks)], nn.Conv2d(width, width, 3, 1, 1))
        self.up = nn.Sequential(
            nn.Conv2d(width, 4 * width, 3, 1, 1), nn.PixelShuffle(2), nn.ReLU(inplace=True),
            nn.Conv2d(width, 4 * width, 3, 1, 1), nn.PixelShuffle(2), nn.ReLU(inplace=True),
            nn.Conv2d(width, 3, 3, 1, 1),
        )
        nn.init.zeros_(self.up[-1].weight)
        nn.init.zeros_(self.up[-1].bias)

    def forward(self, lr_img: torch.Tensor) -> torch.Tensor:
        """[-1, 1] low-resolution -> [-1, 1] x4 image."""
        h = self.head(lr_img)
        base = F.interpolate(lr_img, scale_factor=4, mode="bicubic", align_corners=False)
        return base + self.up(h + self.body(h))

    def configure_optimizers(self, lr=None):
        return {"sr": self._adam(self.parameters(), lr or self.config["lr"])}

    def training_step(self, x, y, optimizers, step):
        hr = to_unit(x)
        sr = self(downsample(hr, 4))
        l1 = F.l1_loss(sr, hr)
        spec = spectral_l1(sr, hr)
        loss = l1 + self.spectral_weight * spec
        opt = optimizers["sr"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.item(), "l1": l1.item(), "spectral": spec.item()}

    @torch.no_grad()
    def transform(self, x, masks=None):
        return from_unit(self(to_unit(x)))

    @torch.no_grad()
    def bicubic_psnr_gain(self, hr_uint8: torch.Tensor) -> dict[str, float]:
        """PSNR (dB) of the model and of plain bicubic on x4 down-sampled ``hr_uint8`` crops."""
        hr = to_unit(hr_uint8.to(self.device))
        lr_img = downsample(hr, 4)
        bic = F.interpolate(lr_img, scale_factor=4, mode="bicubic", align_corners=False).clamp(-1, 1)
        sr = self(lr_img).clamp(-1, 1)

        def psnr(a):
            mse = ((a - hr) / 2).pow(2).mean().clamp(min=1e-10)
            return float(10 * torch.log10(1 / mse))

        return {"psnr_db": round(psnr(sr), 3), "bicubic_psnr_db": round(psnr(bic), 3)}
