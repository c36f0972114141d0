"""Latent interpolation for families with a decoder from a Gaussian latent (VAE, GAN)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .base import GeneratorError


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation: stays in the shell where Gaussian latents live."""
    if t in (0.0, 1.0):  # exact endpoints, so the strip starts and ends on the seeds' images
        return a if t == 0.0 else b
    an, bn = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.arccos((an * bn).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b


def interpolate(model, *, seeds: tuple[int, int] = (0, 1), images: tuple[Path, Path] | None = None,
                frames: int = 8, class_id: int | None = None) -> list[np.ndarray]:
    """``frames`` images from endpoint A to B: latents of two seeds, or (VAE) of two encoded images."""
    if not hasattr(model, "decode_latents"):
        raise GeneratorError(f"{model.family} has no latent decoder to interpolate (use a vae or gan)")
    if frames < 2:
        raise GeneratorError("frames must be >= 2")
    if images is not None:
        if not hasattr(model, "encode_images"):
            raise GeneratorError(f"{model.family} has no encoder; interpolate between seeds instead")
        import cv2

        from genvis_trust.io import load_image

        ims = []
        s = model.image_size
        for p in images:  # centre square, resized to the model's size
            a = load_image(p).array
            side = min(a.shape[:2])
            y, x = (a.shape[0] - side) // 2, (a.shape[1] - side) // 2
            a = a[y : y + side, x : x + side]
            interp = cv2.INTER_AREA if side > s else cv2.INTER_CUBIC
            ims.append(np.ascontiguousarray(cv2.resize(a, (s, s), interpolation=interp)))
        z = model.encode_images(ims)
        linear = True
    else:
        z = model.latents(list(seeds))
        linear = False
    ts = np.linspace(0, 1, frames)
    zs = torch.stack([(z[0] * (1 - t) + z[1] * t) if linear else slerp(z[0], z[1], float(t)) for t in ts])
    classes = [class_id if class_id is not None else 0] * frames if model.num_classes else None
    return list(model.decode_latents(zs, classes).numpy())
