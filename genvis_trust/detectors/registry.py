"""Detector families by name: ``register_detector`` / ``list_detectors`` / ``create_detector``.

A family is an ``nn.Module`` class whose constructor arguments are its config; it maps
a float batch ``N x 3 x H x W`` in [0, 1] to ``N`` logits (higher = more likely
generated), doing its own normalisation. ``fit_features`` marks families fitted in
closed form (scikit-learn) instead of by gradient descent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn


@dataclass
class DetectorFamily:
    name: str
    cls: type[nn.Module]
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)
    patch: int = 32  # the input side the family is trained and scored at by default
    version: int = 1


_FAMILIES: dict[str, DetectorFamily] = {}


def register_detector(name: str, description: str, *, patch: int = 32, version: int = 1, **defaults):
    def deco(cls):
        _FAMILIES[name] = DetectorFamily(name, cls, description, defaults, patch, version)
        cls.family = name
        return cls

    return deco


def get_family(name: str) -> DetectorFamily:
    _ensure_loaded()
    if name not in _FAMILIES:
        raise ValueError(f"unknown detector family {name!r}; known: {', '.join(sorted(_FAMILIES))}")
    return _FAMILIES[name]


def list_families() -> dict[str, DetectorFamily]:
    _ensure_loaded()
    return dict(sorted(_FAMILIES.items()))


def build_net(family: str, **config) -> nn.Module:
    fam = get_family(family)
    return fam.cls(**{**fam.defaults, **config})


def _ensure_loaded() -> None:
    from . import cnn, frequency, npr, resnet50, stack, zeroshot  # noqa: F401  (each registers itself)
