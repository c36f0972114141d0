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


__all__ = ["PublishedCard", "WeightsSource"]
