"""Built-in generators: five families in a registry, artifacts, training, sampling, metrics.

>>> from genvis_trust.generators import list_generators
>>> list(list_generators())
['autoregressive', 'diffusion', 'flow', 'gan', 'vae']
"""

from . import autoregressive, diffusion, flow, gan, vae  # noqa: F401  (register the families)
from .artifact import LoadedGenerator, load_generator, save_generator
from .base import (
    GENERATORS,
    Generator,
    GeneratorError,
    SeedNoise,
    create_generator,
    generator_class,
    image_seed,
    list_bundled,
    list_generators,
    register_generator,
    resolve_device,
    set_cpu_threads,
)
from .training import TrainResult, load_data, train_generator

__all__ = [
    "GENERATORS",
    "Generator",
    "GeneratorError",
    "LoadedGenerator",
    "SeedNoise",
    "TrainResult",
    "create_generator",
    "generator_class",
    "image_seed",
    "list_bundled",
    "list_generators",
    "load_data",
    "load_generator",
    "register_generator",
    "resolve_device",
    "save_generator",
    "set_cpu_threads",
    "train_generator",
]
