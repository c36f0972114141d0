"""Image perturbations shared by detector training, detector robustness evaluation and
watermark robustness evaluation.

Two layers:

* a **functional core** of plain functions (:func:`jpeg`, :func:`resize`, :func:`crop`,
  ...), each taking and returning an ``H x W x 3`` ``uint8`` RGB array, deterministic given
  its arguments and, where randomness is involved, an ``rng`` (``np.random.Generator``);
* a small **object layer**: :class:`Perturbation` (a registered function by name plus its
  parameters, with a ``spec`` string such as ``"jpeg:quality=75"``), :class:`Compose`,
  :class:`RandomApply`, :class:`OneOf`, and :class:`Range` to sample a parameter per call
  (training augmentation).

Randomness is explicit: a perturbation whose result depends on chance refuses to run
without an ``rng`` instead of picking a hidden seed. :func:`apply` and :func:`apply_batch`
derive one generator per image from ``(seed, index)`` (see :func:`derive_rng`), so a
result never depends on which other images share the batch.

Specs name a perturbation in configs, CLIs and reports: ``name:key=value,key=value``;
``a..b`` is a :class:`Range`; ``|`` chains perturbations into a :class:`Compose`.

>>> import numpy as np
>>> from genvis_trust.datasets.perturbations import (
...     Compose, RandomApply, apply, apply_batch, parse_perturbation)
>>> img = np.full((32, 32, 3), 128, np.uint8)
>>> p = parse_perturbation("resize:factor=0.5,method=area")
>>> p(img).shape, str(p)
((16, 16, 3), 'resize:factor=0.5,method=area')
>>> aug = Compose([RandomApply(0.5, parse_perturbation("jpeg:quality=30..95")),
...                parse_perturbation("gaussian_noise:sigma=2.0")])
>>> out = apply(img, aug, seed=7)
>>> out.dtype, out.shape, bool((out == apply(img, aug, seed=7)).all())
(dtype('uint8'), (32, 32, 3), True)
>>> apply_batch(np.stack([img, img]), STANDARD_ROBUSTNESS_SUITE["crop_0.7"], seed=0).shape
(2, 32, 32, 3)
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, Union

import cv2
import numpy as np

from genvis_trust.io import encode_image, load_image
from genvis_trust.registry import Registry

__all__ = [
    "PERTURBATIONS",
    "RESIZE_METHODS",
    "STANDARD_ROBUSTNESS_SUITE",
    "SUBSAMPLINGS",
    "Compose",
    "OneOf",
    "Perturbation",
    "PerturbationLike",
    "RandomApply",
    "Range",
    "apply",
    "apply_batch",
    "brightness_contrast",
    "create_perturbation",
    "crop",
    "crop_resize",
    "derive_rng",
    "format_roundtrip",
    "gaussian_blur",
    "gaussian_noise",
    "identity",
    "jpeg",
    "list_perturbations",
    "parse_perturbation",
    "register_perturbation",
    "resize",
    "resize_back",
    "rotate",
    "saturation",
    "webp",
]

RESIZE_METHODS = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos": cv2.INTER_LANCZOS4,
}
SUBSAMPLINGS = ("4:4:4", "4:2:2", "4:2:0")
ROUNDTRIP_FORMATS = ("PNG", "JPEG", "WEBP")

#: name -> function. Every function takes the image first, then keyword parameters, and
#: an ``rng`` parameter when it uses randomness (required when it always does).
#: ``PERTURBATIONS.create(name, **params)`` is a :class:`Perturbation`.
PERTURBATIONS: Registry[Callable[..., np.ndarray]] = Registry(
    "perturbation", factory=lambda fn, **params: Perturbation(fn.perturbation_name, params)
)


def register_perturbation(name: str | None = None):
    """Decorator adding a function to :data:`PERTURBATIONS` under ``name`` (default: its own)."""

    def deco(fn):
        key = name or fn.__name__
        PERTURBATIONS.register(key, fn)
        fn.perturbation_name = key
        return fn

    return deco


def list_perturbations() -> list[str]:
    """Names of the registered perturbation functions, sorted."""
    return list(PERTURBATIONS.list())


# --------------------------------------------------------------------------- functional core


def _check_image(img: np.ndarray) -> np.ndarray:
    if not isinstance(img, np.ndarray):
        raise TypeError(f"expected a numpy array image, got {type(img).__name__}")
    if img.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got {img.dtype}")
    if img.ndim != 3 or img.shape[2] != 3 or img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"expected an H x W x 3 image, got shape {img.shape}")
    return img


def _check_rng(rng: Any, what: str) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise ValueError(
            f"{what} is random and needs rng=np.random.Generator (got {type(rng).__name__}); "
            "use apply(img, p, seed=...) for a seeded call"
        )
    return rng


def _check_quality(quality: int, what: str) -> int:
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)):
        raise ValueError(f"{what}: quality must be an integer, got {quality!r}")
    if not 1 <= quality <= 100:
        raise ValueError(f"{what}: quality must be in 1..100, got {quality}")
    return int(quality)


def _check_method(method: str) -> int:
    if method not in RESIZE_METHODS:
        raise ValueError(f"unknown resize method {method!r}; choose from {sorted(RESIZE_METHODS)}")
    return RESIZE_METHODS[method]


def _check_fraction(fraction: float) -> float:
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"crop fraction must be in (0, 1], got {fraction}")
    return float(fraction)


def _resize_to(img: np.ndarray, height: int, width: int, method: str) -> np.ndarray:
    interpolation = _check_method(method)
    if (height, width) == img.shape[:2]:
        return img.copy()
    out = cv2.resize(img, (width, height), interpolation=interpolation)
    return np.ascontiguousarray(out.reshape(height, width, 3))


def _codec_roundtrip(img: np.ndarray, fmt: str, **kwargs: Any) -> np.ndarray:
    return load_image(encode_image(img, fmt, **kwargs)).array


@register_perturbation()
def identity(img: np.ndarray) -> np.ndarray:
    """Return a copy of ``img`` (the unattacked baseline of a robustness suite)."""
    return _check_image(img).copy()


@register_perturbation()
def jpeg(img: np.ndarray, quality: int = 75, subsampling: str = "4:2:0") -> np.ndarray:
    """JPEG encode and decode through Pillow at ``quality`` (1..100) and chroma ``subsampling``
    (``"4:4:4"``, ``"4:2:2"``, ``"4:2:0"``)."""
    _check_image(img)
    quality = _check_quality(quality, "jpeg")
    if subsampling not in SUBSAMPLINGS:
        raise ValueError(f"jpeg: subsampling must be one of {SUBSAMPLINGS}, got {subsampling!r}")
    return _codec_roundtrip(img, "JPEG", quality=quality, subsampling=subsampling)


@register_perturbation()
def webp(img: np.ndarray, quality: int = 80) -> np.ndarray:
    """Lossy WebP encode and decode through Pillow at ``quality`` (1..100)."""
    _check_image(img)
    return _codec_roundtrip(img, "WEBP", quality=_check_quality(quality, "webp"))


@register_perturbation()
def resize(img: np.ndarray, factor: float, method: str = "bilinear") -> np.ndarray:
    """Scale by ``factor`` to ``max(1, round(h * factor)) x max(1, round(w * factor))``.

    ``method``: one of :data:`RESIZE_METHODS` (nearest, bilinear, bicubic, area, lanczos).
    """
    _check_image(img)
    if not factor > 0:
        raise ValueError(f"resize: factor must be > 0, got {factor}")
    h, w = img.shape[:2]
    return _resize_to(img, max(1, round(h * factor)), max(1, round(w * factor)), method)


@register_perturbation()
def resize_back(img: np.ndarray, factor: float, method: str = "bilinear") -> np.ndarray:
    """Resize by ``factor`` and back to the original size with the same ``method``: the
    "rescale then restore" attack, which keeps the shape but loses detail."""
    small = resize(img, factor, method)
    return _resize_to(small, img.shape[0], img.shape[1], method)


def _crop_box(
    shape: tuple[int, ...], fraction: float, rng: np.random.Generator | None, center: bool
) -> tuple[int, int, int, int]:
    fraction = _check_fraction(fraction)
    h, w = shape[:2]
    ch, cw = max(1, round(h * fraction)), max(1, round(w * fraction))
    if center or rng is None:
        top, left = (h - ch) // 2, (w - cw) // 2
    else:
        rng = _check_rng(rng, "crop")
        top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return top, left, ch, cw


@register_perturbation()
def crop(
    img: np.ndarray,
    fraction: float = 0.9,
    rng: np.random.Generator | None = None,
    center: bool = False,
) -> np.ndarray:
    """Keep ``fraction`` of each side (``max(1, round(side * fraction))`` pixels).

    The window is placed at random when ``rng`` is given, centred when ``rng`` is ``None`` or
    ``center`` is true. The output is smaller than the input; see :func:`crop_resize`.
    """
    _check_image(img)
    top, left, ch, cw = _crop_box(img.shape, fraction, rng, center)
    return np.ascontiguousarray(img[top : top + ch, left : left + cw])


@register_perturbation()
def crop_resize(
    img: np.ndarray,
    fraction: float = 0.9,
    rng: np.random.Generator | None = None,
    center: bool = False,
    method: str = "bilinear",
) -> np.ndarray:
    """:func:`crop`, then resize back to the input size so fixed-input-size models still
    apply (a crop plus a ``1 / fraction`` zoom)."""
    out = crop(img, fraction, rng=rng, center=center)
    return _resize_to(out, img.shape[0], img.shape[1], method)


@register_perturbation()
def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with standard deviation ``sigma`` pixels (kernel ~6 sigma, reflected
    borders). ``sigma == 0`` returns an unchanged copy."""
    _check_image(img)
    if sigma < 0:
        raise ValueError(f"gaussian_blur: sigma must be >= 0, got {sigma}")
    if sigma == 0:
        return img.copy()
    return cv2.GaussianBlur(
        img, (0, 0), sigmaX=float(sigma), sigmaY=float(sigma), borderType=cv2.BORDER_REFLECT_101
    )


@register_perturbation()
def gaussian_noise(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Add i.i.d. Gaussian noise of standard deviation ``sigma`` (0..255 units) to every
    channel, round and clip to 0..255."""
    _check_image(img)
    if not 0 <= sigma <= 255:
        raise ValueError(f"gaussian_noise: sigma must be in 0..255, got {sigma}")
    rng = _check_rng(rng, "gaussian_noise")
    noise = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(sigma)
    return np.clip(np.rint(img + noise), 0, 255).astype(np.uint8)


@register_perturbation()
def brightness_contrast(
    img: np.ndarray, brightness: float = 0.0, contrast: float = 1.0
) -> np.ndarray:
    """``(img - 127.5) * contrast + 127.5 + brightness * 255``, rounded and clipped.

    ``brightness`` is a fraction of full scale in ``[-1, 1]``; ``contrast >= 0`` scales
    about mid-grey (``0`` gives flat grey, ``1`` leaves the image unchanged).
    """
    _check_image(img)
    if not -1.0 <= brightness <= 1.0:
        raise ValueError(f"brightness_contrast: brightness must be in [-1, 1], got {brightness}")
    if contrast < 0:
        raise ValueError(f"brightness_contrast: contrast must be >= 0, got {contrast}")
    out = (img.astype(np.float32) - 127.5) * np.float32(contrast) + np.float32(
        127.5 + brightness * 255.0
    )
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@register_perturbation()
def saturation(img: np.ndarray, factor: float = 1.0) -> np.ndarray:
    """Scale colourfulness: ``grey + (img - grey) * factor`` with ``grey`` the Rec. 601 luma,
    rounded and clipped (``0``: greyscale, ``1``: unchanged)."""
    _check_image(img)
    if factor < 0:
        raise ValueError(f"saturation: factor must be >= 0, got {factor}")
    x = img.astype(np.float32)
    grey = x @ np.array([0.299, 0.587, 0.114], np.float32)
    out = grey[..., None] + (x - grey[..., None]) * np.float32(factor)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@register_perturbation()
def rotate(img: np.ndarray, degrees: float = 2.0, method: str = "bilinear") -> np.ndarray:
    """Rotate about the centre by ``degrees`` (counter-clockwise), same size, reflected
    borders: a slightly tilted re-shoot or a straightening edit."""
    _check_image(img)
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), float(degrees), 1.0)
    return cv2.warpAffine(img, m, (w, h), flags=_check_method(method), borderMode=cv2.BORDER_REFLECT_101)


@register_perturbation()
def format_roundtrip(
    img: np.ndarray,
    fmt: str = "PNG",
    quality: int | None = None,
    subsampling: str | None = None,
) -> np.ndarray:
    """Save in ``fmt`` (``PNG``, ``JPEG``, ``WEBP``) and decode again, as when a platform
    re-encodes an upload. PNG is lossless (the result equals the input).

    ``quality`` (default 95) applies to JPEG and WEBP, ``subsampling`` (default ``"4:2:0"``)
    to JPEG only; passing either where it has no meaning is an error.
    """
    _check_image(img)
    fmt = fmt.upper()
    if fmt not in ROUNDTRIP_FORMATS:
        raise ValueError(f"format_roundtrip: fmt must be one of {ROUNDTRIP_FORMATS}, got {fmt!r}")
    if fmt == "PNG" and quality is not None:
        raise ValueError("format_roundtrip: quality has no meaning for lossless PNG")
    if fmt != "JPEG" and subsampling is not None:
        raise ValueError(f"format_roundtrip: subsampling applies to JPEG only, not {fmt}")
    if fmt == "PNG":
        return _codec_roundtrip(img, "PNG")
    quality = 95 if quality is None else quality
    if fmt == "JPEG":
        return jpeg(img, quality, "4:2:0" if subsampling is None else subsampling)
    return webp(img, quality)


# --------------------------------------------------------------------------- object layer


class PerturbationLike(Protocol):
    """What :func:`apply` accepts: a callable ``(img, rng=None) -> img`` with a ``spec``."""

    @property
    def spec(self) -> str: ...

    def __call__(self, img: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray: ...


@dataclass(frozen=True)
class Range:
    """A parameter drawn per call, uniformly from ``[low, high]`` (both inclusive).

    Integers are drawn for parameters typed ``int`` (JPEG quality), floats otherwise.
    Written ``low..high`` in specs: ``"jpeg:quality=30..100"``.
    """

    low: float
    high: float

    def __post_init__(self):
        for v in (self.low, self.high):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"Range bounds must be numbers, got {v!r}")
        if self.low > self.high:
            raise ValueError(f"Range low {self.low} is above high {self.high}")

    def sample(self, rng: np.random.Generator, integer: bool = False) -> float | int:
        if integer:
            return int(rng.integers(int(self.low), int(self.high), endpoint=True))
        return float(rng.uniform(self.low, self.high))

    def __str__(self) -> str:
        return f"{_format_value(self.low)}..{_format_value(self.high)}"


def _signature(name: str) -> tuple[dict[str, inspect.Parameter], dict[str, Any]]:
    return _signature_of(PERTURBATIONS[name])


@functools.cache
def _signature_of(fn: Callable) -> tuple[dict[str, inspect.Parameter], dict[str, Any]]:
    params = dict(list(inspect.signature(fn).parameters.items())[1:])  # drop the image
    return params, typing.get_type_hints(fn)


def _accepts(hint: Any, value: Any) -> bool:
    if typing.get_origin(hint) in (Union, types.UnionType):
        return any(_accepts(h, value) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
            value, bool
        )
    if hint is str:
        return isinstance(value, str)
    return True


def _is_numeric(hint: Any) -> bool:
    return _accepts(hint, 1) or _accepts(hint, 1.5)


def _is_integer(hint: Any) -> bool:
    return _accepts(hint, 1) and not _accepts(hint, 1.5)


@dataclass(frozen=True)
class Perturbation:
    """A registered perturbation function by ``name`` with fixed ``params``.

    A parameter may be a :class:`Range`, drawn from ``rng`` on each call. Parameters left
    out take the function's defaults. Names and types are checked here; values are checked
    by the function when it runs.
    """

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        PERTURBATIONS.get(self.name)  # an unknown name fails here, listing the known ones
        object.__setattr__(self, "params", dict(self.params))
        signature, hints = _signature(self.name)
        for key, value in self.params.items():
            if key not in signature or key == "rng":
                allowed = [k for k in signature if k != "rng"]
                raise ValueError(
                    f"{self.name}: unknown parameter {key!r}; allowed: {', '.join(allowed) or 'none'}"
                )
            hint = hints.get(key, Any)
            ok = _is_numeric(hint) if isinstance(value, Range) else _accepts(hint, value)
            if not ok:
                kind = getattr(hint, "__name__", str(hint))
                raise ValueError(f"{self.name}: parameter {key}={value!r} is not a valid {kind}")
        missing = [
            k
            for k, p in signature.items()
            if k != "rng" and p.default is inspect.Parameter.empty and k not in self.params
        ]
        if missing:
            raise ValueError(f"{self.name}: missing required parameter(s) {', '.join(missing)}")

    @property
    def spec(self) -> str:
        """``name`` or ``name:key=value,...``; :func:`parse_perturbation` reads it back."""
        if not self.params:
            return self.name
        args = ",".join(f"{k}={_format_value(v)}" for k, v in self.params.items())
        return f"{self.name}:{args}"

    def __str__(self) -> str:
        return self.spec

    def __hash__(self) -> int:  # params is a dict; hash its items (1 and 1.0 hash alike)
        return hash((self.name, tuple(sorted(self.params.items()))))

    def __call__(self, img: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        signature, hints = _signature(self.name)
        kwargs = dict(self.params)
        for key, value in kwargs.items():
            if isinstance(value, Range):
                rng = _check_rng(rng, f"{self.spec} (parameter {key} is a range)")
                kwargs[key] = value.sample(rng, integer=_is_integer(hints.get(key, Any)))
        if "rng" in signature:
            kwargs["rng"] = rng
        return PERTURBATIONS[self.name](img, **kwargs)


def create_perturbation(name: str, **params: Any) -> Perturbation:
    """``create_perturbation("jpeg", quality=50)`` == ``Perturbation("jpeg", {"quality": 50})``."""
    return Perturbation(name, params)


@dataclass(frozen=True)
class Compose:
    """Apply ``perturbations`` in order, sharing one ``rng``. Spec: specs joined by ``|``."""

    perturbations: Sequence[PerturbationLike]

    def __post_init__(self):
        object.__setattr__(self, "perturbations", tuple(self.perturbations))

    @property
    def spec(self) -> str:
        return "|".join(p.spec for p in self.perturbations) or "identity"

    def __str__(self) -> str:
        return self.spec

    def __call__(self, img: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        out = _check_image(img)
        for p in self.perturbations:
            out = p(out, rng)
        return out.copy() if out is img else out


@dataclass(frozen=True)
class RandomApply:
    """Apply ``perturbation`` with probability ``p`` (one draw from ``rng`` per call)."""

    p: float
    perturbation: PerturbationLike

    def __post_init__(self):
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"RandomApply: p must be in [0, 1], got {self.p}")

    @property
    def spec(self) -> str:
        return f"random_apply(p={_format_value(self.p)}, {self.perturbation.spec})"

    def __str__(self) -> str:
        return self.spec

    def __call__(self, img: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        rng = _check_rng(rng, self.spec)
        if rng.random() < self.p:
            return self.perturbation(img, rng)
        return _check_image(img).copy()


@dataclass(frozen=True)
class OneOf:
    """Apply one of ``perturbations``, chosen per call with ``weights`` (default uniform)."""

    perturbations: Sequence[PerturbationLike]
    weights: Sequence[float] | None = None

    def __post_init__(self):
        object.__setattr__(self, "perturbations", tuple(self.perturbations))
        if not self.perturbations:
            raise ValueError("OneOf needs at least one perturbation")
        if self.weights is not None:
            w = tuple(float(x) for x in self.weights)
            if len(w) != len(self.perturbations) or min(w) < 0 or sum(w) <= 0:
                raise ValueError(
                    f"OneOf: weights {w} must be non-negative, not all zero, one per perturbation"
                )
            object.__setattr__(self, "weights", w)

    @property
    def spec(self) -> str:
        inner = "; ".join(p.spec for p in self.perturbations)
        if self.weights is not None:
            inner += "; weights=" + ",".join(_format_value(w) for w in self.weights)
        return f"one_of({inner})"

    def __str__(self) -> str:
        return self.spec

    def __call__(self, img: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        rng = _check_rng(rng, self.spec)
        probs = None if self.weights is None else np.asarray(self.weights) / sum(self.weights)
        return self.perturbations[int(rng.choice(len(self.perturbations), p=probs))](img, rng)


# --------------------------------------------------------------------------- specs


def _format_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _parse_value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    if ".." in text:
        a, b = text.split("..", 1)
        return Range(_parse_number(a, text), _parse_number(b, text))
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _parse_number(text: str, token: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"bad range {token!r}: {text!r} is not a number") from None


def parse_perturbation(spec: str) -> Perturbation | Compose:
    """Build a perturbation from its spec.

    ``"identity"``, ``"jpeg:quality=50"``, ``"resize:factor=0.5,method=bilinear"``,
    ``"jpeg:quality=30..100"`` (a :class:`Range`); ``"a|b"`` gives ``Compose([a, b])``.
    Values are read as bool (``true``/``false``), ``none``, int, float, else string.
    Raises ``ValueError`` naming the bad token.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"empty perturbation spec {spec!r}")
    if "|" in spec:
        return Compose([_parse_one(part) for part in spec.split("|")])
    return _parse_one(spec)


def _parse_one(spec: str) -> Perturbation:
    name, _, args = spec.strip().partition(":")
    name = name.strip()
    if name not in PERTURBATIONS:
        raise ValueError(
            f"unknown perturbation {name!r} in spec {spec!r}; known: {', '.join(list_perturbations())}"
        )
    params: dict[str, Any] = {}
    for token in filter(None, (t.strip() for t in args.split(","))):
        key, eq, value = token.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key or not value:
            raise ValueError(f"bad parameter {token!r} in spec {spec!r}: expected key=value")
        if key in params:
            raise ValueError(f"parameter {key!r} repeated in spec {spec!r}")
        params[key] = _parse_value(value)
    return Perturbation(name, params)


# --------------------------------------------------------------------------- seeded application


def derive_rng(seed: int | Sequence[int], index: int) -> np.random.Generator:
    """The generator for image ``index`` under ``seed``: ``SeedSequence(seed).spawn(...)[index]``
    computed directly, so it depends only on ``(seed, index)``. ``seed`` may be a sequence of
    ints, e.g. ``(seed, epoch)`` for a fresh draw each training epoch."""
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
        raise ValueError(f"index must be a non-negative integer, got {index!r}")
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(int(index),)))


def apply(
    img: np.ndarray, perturbation: PerturbationLike, seed: int | Sequence[int] = 0, index: int = 0
) -> np.ndarray:
    """``perturbation(img, derive_rng(seed, index))``: equal to element ``index`` of
    :func:`apply_batch` under the same seed."""
    return perturbation(_check_image(img), derive_rng(seed, index))


def apply_batch(
    images: np.ndarray | Sequence[np.ndarray],
    perturbation: PerturbationLike,
    seed: int | Sequence[int] = 0,
    indices: Iterable[int] | None = None,
) -> np.ndarray | list[np.ndarray]:
    """Apply ``perturbation`` to each image with its own :func:`derive_rng` ``(seed, index)``.

    ``indices`` (default ``0..N-1``) are the images' stable ids, e.g. their positions in the
    dataset: with them a result does not depend on batch size, order or neighbours.
    An ``N x H x W x 3`` array gives an array (all outputs must share one shape), any other
    sequence gives a list.
    """
    is_array = isinstance(images, np.ndarray)
    if is_array and (images.ndim != 4 or images.shape[-1] != 3):
        raise ValueError(f"expected an N x H x W x 3 batch, got shape {images.shape}")
    n = len(images)
    idx = list(range(n)) if indices is None else [int(i) for i in indices]
    if len(idx) != n:
        raise ValueError(f"{len(idx)} indices for {n} images")
    out = [apply(img, perturbation, seed, i) for img, i in zip(images, idx, strict=True)]
    if not is_array:
        return out
    if n == 0:
        return images.copy()
    shapes = {o.shape for o in out}
    if len(shapes) > 1:
        raise ValueError(
            f"{perturbation.spec} gave images of different shapes {sorted(shapes)}; "
            "pass a list of images to get a list back"
        )
    return np.stack(out)


# --------------------------------------------------------------------------- robustness suite

_P = create_perturbation

#: The attacks robustness evaluations report, in order. Every entry keeps the image size:
#: crops are centred and resized back to the input size (``crop_resize``), so fixed-size
#: models apply unchanged. ``noise_5`` is random: run entries via :func:`apply` /
#: :func:`apply_batch` (or pass an ``rng``). Read-only; copy with ``dict(...)`` to extend.
STANDARD_ROBUSTNESS_SUITE: Mapping[str, Perturbation] = types.MappingProxyType(
    {
        "identity": _P("identity"),
        "jpeg_90": _P("jpeg", quality=90),
        "jpeg_75": _P("jpeg", quality=75),
        "jpeg_50": _P("jpeg", quality=50),
        "resize_back_0.75": _P("resize_back", factor=0.75, method="bilinear"),
        "resize_back_0.5": _P("resize_back", factor=0.5, method="bilinear"),
        "crop_0.9": _P("crop_resize", fraction=0.9, center=True),
        "crop_0.7": _P("crop_resize", fraction=0.7, center=True),
        "blur_1": _P("gaussian_blur", sigma=1.0),
        "noise_5": _P("gaussian_noise", sigma=5.0),
        "brightness_+0.1": _P("brightness_contrast", brightness=0.1),
        "contrast_1.2": _P("brightness_contrast", contrast=1.2),
        "png_to_jpeg_95": _P("format_roundtrip", fmt="JPEG", quality=95, subsampling="4:2:0"),
    }
)
del _P
