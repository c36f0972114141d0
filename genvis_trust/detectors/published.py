"""What the toolkit knows about a detector family that reproduces a published model: where it
was published, under which licence, how its authors preprocess an image, what accuracy they
claim (their claim, on their test set), and where the weights can be downloaded.

A family class that reproduces a publication carries one :class:`PublishedCard` as its
``published`` attribute; ``detectors list``, ``detectors fetch`` and the artifact's card read
it from there. Such a family scores whole images the way the reference code does
(``prepare_input``, see :mod:`.registry`), not the toolkit's tiles.

>>> card = PublishedCard(
...     publication="Example et al., 2024", repository="https://github.com/example/detector",
...     commit="0" * 40, licence="MIT", commercial_use=True,
...     preprocessing="whole image, ImageNet normalisation",
...     claimed_accuracy="mean AP 99.0 on Example-Test (the publisher's figure)",
...     weights=[WeightsSource("https://example.org/w.pth", "w.pth")])
>>> card.to_dict()["licence"], card.weights[0].filename
('MIT', 'w.pth')
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class WeightsSource:
    """One downloadable checkpoint file, as its publisher put it."""

    url: str  # Hugging Face hub "resolve" URL, GitHub release asset, or direct URL
    filename: str  # the file name the publisher gave it
    sha256: str | None = None  # when known (recorded on first download otherwise)
    size: int | None = None  # bytes, when known
    variant: str = "default"  # which published model (e.g. "progan", "ldm"), for families with several
    note: str = ""


@dataclass(frozen=True)
class PublishedCard:
    publication: str  # authors, title, venue, year
    repository: str  # the reference code
    commit: str  # the reference code's commit our fidelity is measured against
    licence: str  # SPDX id or the licence's own name
    commercial_use: bool  # whether the licence of the weights allows it
    preprocessing: str  # what the reference code does to an image before the network, in words
    claimed_accuracy: str  # the publisher's figure and its test set, quoted as theirs
    weights: list[WeightsSource] = field(default_factory=list)
    checkpoint_key: str | None = None  # where the state dict sits in the published file ('model', ...)
    requires: list[str] = field(default_factory=list)  # optional packages (e.g. 'open_clip_torch')

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def seeded_state_dict(template: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """Random weights with the names, shapes and dtypes of ``template`` (a state dict in a
    published layout), for checking a family against its reference code where the published
    weights are out of reach. Each tensor comes from its own generator, seeded by ``seed`` and
    its name, so any code that knows the names and shapes (the reference's, ours, a test) makes
    the same ones. Scaled so a deep network's logits stay of order one and still depend on
    inputs of small amplitude (SAFE's wavelet band): weights N(0, 1/fan_in), biases and running
    means N(0, 1e-4), batch-norm scales 1 + N(0, 0.01), running variances U(0.75, 1.25); integer
    buffers zero.

    >>> import torch
    >>> t = {"conv.weight": torch.zeros(4, 3, 3, 3), "bn.running_var": torch.zeros(4)}
    >>> a, b = seeded_state_dict(t, 1), seeded_state_dict(dict(reversed(t.items())), 1)
    >>> all(torch.equal(a[k], b[k]) for k in t), bool(a["bn.running_var"].min() >= 0.75)
    (True, True)
    """
    import torch

    out = {}
    for key, t in template.items():
        g = torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(key.encode())) % (2**63))
        shape = tuple(t.shape)
        if not t.is_floating_point():
            out[key] = torch.zeros(shape, dtype=t.dtype)
            continue
        if key.endswith("running_var"):
            v = 0.75 + 0.5 * torch.rand(shape, generator=g)
        elif key.endswith("running_mean") or key.endswith("bias"):
            v = 0.01 * torch.randn(shape, generator=g)
        elif len(shape) == 1:  # a normalisation's scale
            v = 1.0 + 0.1 * torch.randn(shape, generator=g)
        else:
            fan_in = max(1, t[0].numel())
            v = torch.randn(shape, generator=g) / fan_in**0.5
        out[key] = v.to(t.dtype)
    return out


__all__ = ["PublishedCard", "WeightsSource", "seeded_state_dict"]
