"""Built-in generators: nine families in a registry, artifacts, training, sampling, metrics.

>>> from genvis_trust.generators import list_generators
>>> list(list_generators())
['autoencoder', 'autoregressive', 'diffusion', 'flow', 'gan', 'inpainting', 'latent-diffusion', 'super-resolution', 'vae']
"""

from . import (  # noqa: F401  (register the families)
    autoencoder,
    autoregressive,
    diffusion,
    flow,
    gan,
    inpainting,
    latent_diffusion,
    super_resolution,
    vae,
)
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
