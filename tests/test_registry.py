"""Every registry speaks the same verbs (register / list / get / create): a taken name is
refused, an unknown name fails listing the known ones, and each kind's error class is kept."""

from __future__ import annotations

import numpy as np
import pytest

from genvis_trust.datasets import SOURCES, SourceError
from genvis_trust.datasets.perturbations import PERTURBATIONS, Perturbation
from genvis_trust.detectors import DETECTORS
from genvis_trust.generators import GENERATORS, GeneratorError
from genvis_trust.provenance.watermarks import WATERMARKS, WatermarkError
from genvis_trust.registry import Registry

REGISTRIES = {
    "detector family": (DETECTORS, ValueError),
    "generator family": (GENERATORS, GeneratorError),
    "source": (SOURCES, SourceError),
    "perturbation": (PERTURBATIONS, ValueError),
    "watermark backend": (WATERMARKS, WatermarkError),
}


@pytest.mark.parametrize("kind", sorted(REGISTRIES))
def test_every_registry_has_one_shape(kind):
    reg, error = REGISTRIES[kind]
    assert isinstance(reg, Registry) and reg.kind == kind
    names = list(reg.list())
    assert names == sorted(names) and len(names) >= 3
    first = names[0]
    assert reg.get(first) is reg.list()[first] and first in reg
    with pytest.raises(error, match=f"{kind} 'no-such-thing'") as e:
        reg.get("no-such-thing")
    for n in names:
        assert n in str(e.value)
    with pytest.raises(error, match="already registered"):
        reg.register(first, object())
    assert reg.get(first) is not None and reg.list()[first] is reg.get(first)  # the original kept


def test_create_builds_through_each_kinds_factory():
    net = DETECTORS.create("cnn")
    assert net.family == "cnn"
    with pytest.raises(GeneratorError, match="unknown config key"):
        GENERATORS.create("vae", no_such_key=1)
    assert GENERATORS.create("vae", image_size=16, latent_dim=8, width=8).sample([1]).shape == (1, 16, 16, 3)
    src = SOURCES.create("builtin-digits", n=2, seed=0)
    assert len(list(src)) == 2
    with pytest.raises(SourceError, match="builtin-digits"):
        SOURCES.create("builtin-digits", label="real")
    p = PERTURBATIONS.create("jpeg", quality=90)
    assert isinstance(p, Perturbation) and p.spec == "jpeg:quality=90"
    assert p(np.zeros((16, 16, 3), np.uint8)).shape == (16, 16, 3)
    assert WATERMARKS.create("dwtDctSvd").name == "dwtDctSvd"


def test_registry_loads_lazily_once_and_retries_a_failed_load():
    calls = []

    def load():
        calls.append(1)
        if len(calls) == 1:
            raise ImportError("first try fails")
        reg.register("a", dict)

    reg = Registry("thing", load=load)
    with pytest.raises(ImportError):
        reg.list()
    assert reg.list() == {"a": dict} and reg.list() == {"a": dict}
    assert len(calls) == 2
