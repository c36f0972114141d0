"""Frequency-domain detectors: generators leave periodic peaks and spectral slopes that
real camera images lack (Durall et al. 2020; Frank et al. 2020).

- ``freq-cnn``: log-magnitude FFT spectrum (per channel, centred) fed to a small CNN;
- ``freq-logreg``: logistic regression (scikit-learn) on the log-magnitude DCT of each
  channel, standardised. Fitted in closed form, then held as a linear layer so it scores
  in the same batched, device-aware path as every other family.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .cnn import resnet_trunk
from .registry import register_detector


def dct_matrix(n: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Orthonormal DCT-II basis: ``D @ x`` transforms the columns of ``x``."""
    k = torch.arange(n, dtype=torch.float64).unsqueeze(1)
    i = torch.arange(n, dtype=torch.float64).unsqueeze(0)
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d.to(device=device, dtype=dtype)


def log_dct(x: torch.Tensor) -> torch.Tensor:
    """log(|DCT2| + eps) of each channel of ``N x C x H x W`` (values in [0, 1] scaled to 255)."""
    h, w = x.shape[-2:]
    dh, dw = dct_matrix(h, x.device, x.dtype), dct_matrix(w, x.device, x.dtype)
    c = dh @ (x * 255.0) @ dw.T
    return torch.log(c.abs() + 1e-3)


def log_spectrum(x: torch.Tensor) -> torch.Tensor:
    """Centred log-magnitude FFT of each channel, roughly zero-mean."""
    f = torch.fft.fftshift(torch.fft.fft2((x - 0.5) * 2.0, norm="ortho"), dim=(-2, -1))
    return torch.log(f.abs() + 1e-4) / 4.0


@register_detector("freq-cnn", "log FFT spectrum + small CNN", widths=(16, 32, 64), blocks=(1, 1, 1))
class FrequencyCNN(nn.Module):
    def __init__(self, widths=(16, 32, 64), blocks=(1, 1, 1)):
        super().__init__()
        self.trunk = resnet_trunk(3, tuple(widths), tuple(blocks))
        self.fc = nn.Linear(widths[-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.trunk(log_spectrum(x))).squeeze(1)


@register_detector("freq-logreg", "logistic regression on log DCT coefficients (scikit-learn)", patch=32, C=0.05)
class FrequencyLogReg(nn.Module):
    fitted_in_closed_form = True

    def __init__(self, patch: int = 32, C: float = 0.05):
        super().__init__()
        self.patch, self.C = patch, C
        d = 3 * patch * patch
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("scale", torch.ones(d))
        self.linear = nn.Linear(d, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.patch, self.patch):
            raise ValueError(f"freq-logreg expects {self.patch}x{self.patch} inputs, got {tuple(x.shape[-2:])}")
        return log_dct(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (self.features(x) - self.mean) / self.scale
        return self.linear(z).squeeze(1)

    @torch.no_grad()
    def fit_features(self, features: np.ndarray, labels: np.ndarray, seed: int = 0) -> None:
        """Fit the scikit-learn estimator on raw features; copy its state into the module."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        scaler = StandardScaler().fit(features)
        clf = LogisticRegression(C=self.C, max_iter=2000, random_state=seed)
        clf.fit(scaler.transform(features), labels)
        self.mean.copy_(torch.as_tensor(scaler.mean_, dtype=torch.float32))
        self.scale.copy_(torch.as_tensor(np.where(scaler.scale_ > 0, scaler.scale_, 1.0), dtype=torch.float32))
        self.linear.weight.copy_(torch.as_tensor(clf.coef_, dtype=torch.float32))
        self.linear.bias.copy_(torch.as_tensor(clf.intercept_, dtype=torch.float32))
