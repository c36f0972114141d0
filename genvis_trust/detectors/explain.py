"""Where a detector's evidence comes from, as a picture.

- ``patch_score_map``: the calibrated probability of every tile of a large image (the
  same tiles the verdict aggregates), so a composited region stands out;
- ``gradcam``: Grad-CAM (Selvaraju et al. 2017) on the last convolution, for one
  detector-sized input, where tiles would be too coarse;
- ``overlay``: either map blended over the image, for the HTML report.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from .detector import Detector


def patch_score_map(det: Detector, image: np.ndarray, max_tiles: int = 4096) -> np.ndarray:
    """``rows x cols`` calibrated p(generated) per tile (NaN where a tile was not scored)."""
    tiles, positions, grid, _ = det.tiles(image, max_tiles)
    p = det.probabilities(det.logits(tiles))
    ys = sorted({y for y, _ in positions})
    xs = sorted({x for _, x in positions})
    out = np.full((len(ys), len(xs)), np.nan, np.float32)
    for (y, x), v in zip(positions, p, strict=True):
        out[ys.index(y), xs.index(x)] = v
    return out


def _last_conv(net: torch.nn.Module) -> torch.nn.Module:
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(net).__name__} has no convolution: Grad-CAM does not apply; use patch_score_map")
    return convs[-1]


def gradcam(det: Detector, patch: np.ndarray) -> np.ndarray:
    """Grad-CAM map in [0, 1] at the input's resolution, for the 'generated' logit."""
    if det.whole_image:  # its network reads prepare_input's tensors, not [0, 1] tiles
        raise ValueError(f"detector {det.name!r} ({det.family}) reads whole images with its publication's "
                         "preprocessing: no Grad-CAM or tile map for it here")
    patch = det.prepare(patch)
    layer = _last_conv(det.net)
    acts: list[torch.Tensor] = []
    grads: list[torch.Tensor] = []
    h1 = layer.register_forward_hook(lambda m, i, o: acts.append(o))
    h2 = layer.register_full_backward_hook(lambda m, gi, go: grads.append(go[0]))
    try:
        det.net.eval()
        # a copy: ``patch`` may be a read-only view, which torch warns about on stderr
        x = torch.from_numpy(np.array(patch, copy=True)).to(det.device).permute(2, 0, 1)[None].float() / 255.0
        x.requires_grad_(True)
        det.net.zero_grad(set_to_none=True)
        det.net(x).sum().backward()
    finally:
        h1.remove()
        h2.remove()
    a, g = acts[0].detach()[0], grads[0].detach()[0]
    cam = torch.relu((g.mean(dim=(1, 2), keepdim=True) * a).sum(0)).cpu().numpy()
    cam = cv2.resize(cam, (patch.shape[1], patch.shape[0]), interpolation=cv2.INTER_LINEAR)
    return cam / cam.max() if cam.max() > 0 else cam


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45, vmin: float = 0.0, vmax: float = 1.0) -> np.ndarray:
    """Blend a map (any shape; resized nearest so tiles stay visible) over ``image``."""
    from matplotlib import colormaps

    h, w = image.shape[:2]
    m = np.nan_to_num((heat - vmin) / max(vmax - vmin, 1e-9), nan=0.0).clip(0, 1).astype(np.float32)
    m = cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST)
    colour = (colormaps["inferno"](m)[..., :3] * 255).astype(np.float32)
    return (image.astype(np.float32) * (1 - alpha) + colour * alpha).round().clip(0, 255).astype(np.uint8)
