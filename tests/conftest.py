"""Fixtures shared by several test modules."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny models are latency-bound: one thread avoids sync stalls on shared CPUs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def noise_folders():
    """``make(folder, height, width)``: twelve "photographs" (full-resolution noise) in
    ``folder/real`` and twelve "generated" images (2x nearest-neighbour up-sampled noise, the
    trace NPR's residual isolates) in ``folder/gen``, as PNGs; returns ``(real, gen)`` arrays.
    ``make.write(folder, images)`` writes any images that way."""
    import cv2
    import numpy as np

    from genvis_trust.io import encode_image

    def write(folder, images):
        folder.mkdir(parents=True)
        for i, im in enumerate(images):
            (folder / f"{i:03d}.png").write_bytes(encode_image(im, "PNG"))

    def make(folder, height: int, width: int):
        rng = np.random.default_rng(0)
        real = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(12)]
        gen = [cv2.resize(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8), (width, height),
                          interpolation=cv2.INTER_NEAREST) for _ in range(12)]
        write(folder / "real", real)
        write(folder / "gen", gen)
        return real, gen

    make.write = write  # write(folder, images): any images as numbered PNGs in a new folder
    return make
