"""Detector families by name: ``register_detector`` / ``list_families`` / ``get_family`` /
``build_net`` over one :class:`genvis_trust.registry.Registry` (``DETECTORS``).

A family is an ``nn.Module`` class whose constructor arguments are its config; it maps
a float batch ``N x 3 x H x W`` in [0, 1] to ``N`` logits (higher = more likely
generated), doing its own normalisation. ``fit_features`` marks families fitted in
closed form (scikit-learn) instead of by gradient descent. A family that can read a
published checkpoint says how beside itself, in a static ``checkpoint_filter_fn(state)``
returning ``(state, config)`` (timm's convention): the published state dict renamed to the
family's keys, and the ``Detector.create`` arguments that fit it (``patch`` included).

A family that reproduces a published detector (its class carries a ``published``
:class:`~genvis_trust.detectors.published.PublishedCard`) also scores the way its authors
do: its network has ``prepare_input(image) -> tensor``, which turns one ``H x W x 3`` uint8
RGB image into exactly the ``3 x H' x W'`` float tensor the reference code feeds its network
(its resizing, cropping and normalisation, nothing of the toolkit's tiling), and its
``forward`` takes a batch of those. ``Detector`` then scores whole images, one logit each.
A class that also serves as one of the toolkit's own tile members says per instance which it is
(a ``whole_image`` attribute set from its config: ``npr``, whose ``checkpoint_filter_fn`` asks for
the published form). Published families are imported, not trained on tiles.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from genvis_trust.registry import Registry


class CheckpointImportError(ValueError):
    """A checkpoint that does not fit the requested architecture."""


@dataclass
class DetectorFamily:
    name: str
    cls: type[nn.Module]
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)
    patch: int = 32  # the input side the family is trained and scored at by default
    version: int = 1

    @property
    def checkpoint_filter_fn(self) -> Callable[[dict], tuple[dict, dict]] | None:
        return getattr(self.cls, "checkpoint_filter_fn", None)


def _load() -> None:
    # every module here that registers a family, found by its decorator: a new detector is
    # one file, with no list to edit (reading these small files costs well under 1 ms)
    for p in sorted(Path(__file__).parent.glob("*.py")):
        if p.stem != "registry" and "\n@register_detector(" in p.read_text(encoding="utf-8"):
            importlib.import_module(f"{__package__}.{p.stem}")


def _build(fam: DetectorFamily, **config) -> nn.Module:
    return fam.cls(**{**fam.defaults, **config})


DETECTORS: Registry[DetectorFamily] = Registry("detector family", load=_load, factory=_build)


def register_detector(name: str, description: str, *, patch: int = 32, version: int = 1, **defaults):
    def deco(cls):
        DETECTORS.register(name, DetectorFamily(name, cls, description, defaults, patch, version))
        cls.family = name
        return cls

    return deco


def get_family(name: str) -> DetectorFamily:
    return DETECTORS.get(name)


def list_families() -> dict[str, DetectorFamily]:
    return DETECTORS.list()


def build_net(family: str, **config) -> nn.Module:
    return DETECTORS.create(family, **config)
