"""The per-image loop the engine is measured against (``benchmarks/scoring.py``): a benchmark
baseline, kept beside the engine and out of it, sharing its tiling and aggregation."""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np

from genvis_trust.detectors import Detector


def naive_scores(detector: Detector, paths: Iterable[str]) -> list[float]:
    """The baseline published detector demos use: per image, open with PIL, to tensor,
    normalise, one forward pass. Same network, weights, tiling and aggregation as the engine."""
    import torch
    from PIL import Image

    out = []
    net, dev = detector.net.eval(), detector.device
    for p in paths:
        with Image.open(p) as im:
            fmt = im.format
            img = np.asarray(im.convert("RGB"))
        tiles, positions, grid, notes = detector.tiles(img)
        x = torch.from_numpy(tiles).permute(0, 3, 1, 2).float().div(255.0).to(dev)
        with torch.no_grad():
            z = net(x).float().cpu().numpy()
        # the shared aggregation (a domain head, e.g. for up-scaled inputs, decides as in the engine)
        ood = detector.domain_check(img, fmt, os.path.getsize(p))
        out.append(detector.aggregate(z, tiles, positions, grid, notes, ood).probability)
    return out
