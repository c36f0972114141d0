"""What every generator family shares: the base class, the registry, devices and seeds.

A family is one ``nn.Module`` subclass in its own file, decorated with
:func:`register_generator`. Its constructor's keyword arguments *are* its config
(saved to ``config.json``), and it supplies:

- ``configure_optimizers(lr)`` -> ``{name: optimizer}``,
- ``training_step(x_uint8, class_ids, optimizers, step)`` -> ``{loss_name: float}``
  (the step does its own backward/optimizer steps, so adversarial families fit too),
- ``sample(seeds, class_ids=None, **sampler)`` -> ``uint8`` tensor ``(n, H, W, 3)``,
  where image ``i`` depends only on ``seeds[i]`` (and its class), so one image of a
  corpus can be regenerated alone.

>>> from genvis_trust.generators import create_generator, list_generators
>>> sorted(list_generators())
['autoencoder', 'autoregressive', 'diffusion', 'flow', 'gan', 'inpainting', 'latent-diffusion', 'super-resolution', 'vae']
>>> g = create_generator("vae", image_size=16, latent_dim=8, width=8)
>>> g.sample([1, 2]).shape
torch.Size([2, 16, 16, 3])
"""

from __future__ import annotations

import hashlib
import inspect
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from genvis_trust.registry import Registry


class GeneratorError(ValueError):
    """A generator that cannot be created, loaded or sampled (names the problem and the file)."""


# --------------------------------------------------------------------------- devices, seeds


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA when present, else CPU (the toolkit-wide rule in ``genvis_trust.devices``)."""
    from genvis_trust.devices import resolve_device as _resolve

    try:
        return _resolve("auto" if device is None else device)
    except ValueError as e:
        raise GeneratorError(str(e)) from None


def set_cpu_threads(threads: int | None = None) -> int:
    """Use ``threads`` CPU threads (default: ``GENVIS_THREADS`` or all cores, at most 4).

    Small convolutions gain little from more threads and shared machines lose a lot.
    """
    if threads is None:
        threads = int(os.environ.get("GENVIS_THREADS", min(4, os.cpu_count() or 1)))
    torch.set_num_threads(max(1, threads))
    return torch.get_num_threads()


def image_seed(base_seed: int, index: int) -> int:
    """The seed of image ``index`` in a run seeded ``base_seed`` (stable, 63-bit).

    >>> image_seed(0, 0) == image_seed(0, 0) != image_seed(0, 1)
    True
    """
    h = hashlib.sha256(f"genvis-image\x1f{base_seed}\x1f{index}".encode()).digest()
    return int.from_bytes(h[:8], "little") >> 1


class SeedNoise:
    """Per-image random streams: row ``i`` of every draw comes from ``seeds[i]`` alone.

    Noise is drawn on the CPU (the same numbers on every device) and moved to ``device``.
    """

    def __init__(self, seeds: Sequence[int], device: torch.device | str = "cpu"):
        self.seeds = [int(s) for s in seeds]
        self.device = torch.device(device)
        self.gens = [torch.Generator().manual_seed(s) for s in self.seeds]

    def __len__(self) -> int:
        return len(self.seeds)

    def randn(self, *shape: int) -> torch.Tensor:
        return torch.stack([torch.randn(shape, generator=g) for g in self.gens]).to(self.device)

    def rand(self, *shape: int) -> torch.Tensor:
        return torch.stack([torch.rand(shape, generator=g) for g in self.gens]).to(self.device)


def to_unit(x_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 (B,3,H,W) -> float in [-1, 1]."""
    return x_uint8.float() / 127.5 - 1.0


def from_unit(x: torch.Tensor) -> torch.Tensor:
    """float (B,3,H,W) in [-1, 1] -> uint8 (B,H,W,3), rounded and clipped."""
    y = ((x.clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return y.permute(0, 2, 3, 1).contiguous().cpu()


# --------------------------------------------------------------------------- base class


class Generator(nn.Module):
    """Base of every family. Subclasses call ``super().__init__(**config)`` first."""

    family: str = "generator"
    version: int = 1
    description: str = ""
    has_likelihood: bool = False  # defines bits/dim (exact or a bound)
    sampler_defaults: dict[str, Any] = {}

    def __init__(self, *, image_size: int = 32, num_classes: int = 0, **config: Any):
        super().__init__()
        if image_size < 16 or image_size & (image_size - 1):
            raise GeneratorError(f"image_size must be a power of two >= 16, got {image_size}")
        if num_classes < 0:
            raise GeneratorError(f"num_classes must be >= 0, got {num_classes}")
        self.image_size = image_size
        self.num_classes = num_classes
        self.config: dict[str, Any] = {"image_size": image_size, "num_classes": num_classes, **config}

    # -- to implement
    def configure_optimizers(self, lr: float | None = None) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def training_step(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None,
        optimizers: dict[str, torch.optim.Optimizer],
        step: int,
    ) -> dict[str, float]:
        raise NotImplementedError

    def sample(self, seeds: Sequence[int], class_ids: Sequence[int] | None = None, **sampler) -> torch.Tensor:
        raise NotImplementedError

    # -- optional
    def bits_per_dim(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Per-image bits/dim of uint8 images (families with ``has_likelihood``)."""
        raise GeneratorError(f"{self.family} does not define a likelihood")

    def after_step(self, step: int) -> None:
        """Hook after each optimizer step (EMA updates)."""

    def artifact_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights written to ``model.safetensors``: what sampling needs (EMA for diffusion)."""
        return self.state_dict()

    def load_artifact_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.load_state_dict(state, strict=True)

    # -- shared helpers
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _check_classes(self, n: int, class_ids: Sequence[int] | None) -> torch.Tensor | None:
        if not self.num_classes:
            if class_ids is not None and any(c is not None for c in class_ids):
                raise GeneratorError(f"this {self.family} model is unconditional; class ids not accepted")
            return None
        if class_ids is None:
            class_ids = [i % self.num_classes for i in range(n)]
        if len(class_ids) != n:
            raise GeneratorError(f"got {len(class_ids)} class ids for {n} images")
        bad = [c for c in class_ids if not (0 <= int(c) < self.num_classes)]
        if bad:
            raise GeneratorError(f"class ids must be in 0..{self.num_classes - 1}, got {bad[:5]}")
        return torch.as_tensor([int(c) for c in class_ids], dtype=torch.long, device=self.device)

    def _adam(self, params, lr: float, betas=(0.9, 0.999)) -> torch.optim.Adam:
        return torch.optim.Adam(params, lr=lr, betas=betas)


# --------------------------------------------------------------------------- registry

def _create(cls: type[Generator], **config: Any) -> Generator:
    """A new, untrained model; unknown config keys are an error."""
    sig = inspect.signature(cls.__init__)
    accepts_any = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
    known = {k for k in sig.parameters if k != "self"} | {"image_size", "num_classes"}
    unknown = sorted(set(config) - known)
    if unknown and not accepts_any:
        raise GeneratorError(f"{cls.family}: unknown config key(s) {unknown}; accepted: {sorted(known)}")
    return cls(**config)


GENERATORS: Registry[type[Generator]] = Registry("generator family", error=GeneratorError, factory=_create)
ASSETS = Path(__file__).resolve().parent.parent / "assets" / "generators"


def register_generator(name: str, description: str = "") -> Callable[[type[Generator]], type[Generator]]:
    """Class decorator: make a family available to ``create_generator`` and the CLI."""

    def deco(cls: type[Generator]) -> type[Generator]:
        GENERATORS.register(name, cls)
        cls.family = name
        cls.description = description or (inspect.getdoc(cls) or "").split("\n")[0]
        return cls

    return deco


def list_generators() -> dict[str, str]:
    """Registered families and one-line descriptions."""
    return {k: c.description for k, c in GENERATORS.list().items()}


def generator_class(family: str) -> type[Generator]:
    return GENERATORS.get(family)


def create_generator(family: str, **config: Any) -> Generator:
    """A new, untrained model of ``family``; unknown config keys are an error."""
    return GENERATORS.create(family, **config)


def list_bundled() -> dict[str, Path]:
    """Bundled pretrained artifacts shipped in the package: ``{name: folder}``."""
    if not ASSETS.is_dir():
        return {}
    return {p.name: p for p in sorted(ASSETS.iterdir()) if (p / "config.json").is_file()}
