"""A detector: a registered network + its input size + calibration, scoring images of any size.

Whole images are scored by tiling: the image is cut into non-overlapping ``patch x patch``
tiles on a grid (plus edge-aligned tiles so every pixel is covered); when there are more
than ``max_tiles`` tiles, an evenly spaced subset is kept. Images smaller than a patch are
enlarged (bicubic) to one patch and the result says so. **Aggregation**: the mean of the
tile logits, then calibration; the per-tile logits are kept as a patch-score map.

A family that reproduces a published detector (see :mod:`.registry`) is scored instead the
way its authors score: :meth:`Detector.inputs` gives the network's own ``prepare_input`` of the
whole image (one ``1 x 3 x H' x W'`` float tensor), one logit per image (``tiles=1``, grid
``(1, 1)``), in float32 on every device (no autocast, no TF32, no folded or traced graph:
fidelity to the reference code first). ``Detector.whole_image`` says which way a detector scores.
"""

from __future__ import annotations

import copy
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from genvis_trust.artifacts import ArtifactError, load_artifact, read_config, save_artifact
from genvis_trust.devices import resolve_device

from .calibration import apply_calibration
from .registry import build_net, get_family

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "assets" / "detectors"
AGGREGATION = "mean_logit"
# detector artifacts whose family is not a network family, by family: loader(path, device=...)
# (a fusion of other detectors registers itself here: .fusion, imported by the package)
ARTIFACT_LOADERS: dict[str, Callable[..., Detector]] = {}


@dataclass
class DetectionScore:
    """A learned-detector verdict for one image."""

    probability: float  # calibrated p(generated)
    logit: float  # aggregated raw logit
    calibrated: bool
    detector: str
    tiles: int
    grid: tuple[int, int]  # rows x cols of the tile grid (before any sub-sampling)
    aggregation: str = AGGREGATION
    notes: list[str] = field(default_factory=list)
    tile_logits: np.ndarray | None = None  # per tile, in ``tile_positions`` order
    tile_positions: list[tuple[int, int]] | None = None  # (y, x) of each tile
    # why this input is outside what the detector was trained on: [{"code", "message"}] (empty: inside;
    # a "small" one may say above which p its score still counts: "counts_above")
    out_of_domain: list[dict[str, Any]] = field(default_factory=list)
    # the domain head that scored an input the main head would void (e.g. ``upscaled``), else None
    head: str | None = None
    # a fusion's members, each with its own image logit, p and licence (see .fusion), else None
    members: list[dict[str, Any]] | None = None

    def to_dict(self, with_tiles: bool = False) -> dict[str, Any]:
        d = {
            "probability": round(self.probability, 6),
            "logit": round(self.logit, 6),
            "calibrated": self.calibrated,
            "detector": self.detector,
            "tiles": self.tiles,
            "grid": list(self.grid),
            "aggregation": self.aggregation,
            "notes": self.notes,
            "out_of_domain": self.out_of_domain,
        }
        if self.head:
            d["head"] = self.head
        if self.members is not None:
            d["members"] = self.members
        if with_tiles and self.tile_logits is not None:
            d["tile_logits"] = [round(float(v), 4) for v in self.tile_logits]
            d["tile_positions"] = [list(p) for p in self.tile_positions or []]
        return d


def looks_photographic(image: np.ndarray) -> bool:
    """False for graphics, screenshots and renders with large exactly-flat areas.

    Cameras never record an exactly constant area (sensor noise, demosaicking), so the share
    of pixels whose 3x3 neighbourhood is one exact value is near zero in photographs, even
    after JPEG, and large in drawn content. Read on a central crop of at most 512x512 at
    native resolution (resizing would create flatness).
    """
    h, w = image.shape[:2]
    if h < 8 or w < 8:
        return True  # too small to tell; the size check speaks for it
    y, x = max(0, (h - 512) // 2), max(0, (w - 512) // 2)
    g = image[y : y + 512, x : x + 512].astype(np.int16)
    flat = (g[1:-1, 1:-1] == g[:-2, 1:-1]) & (g[1:-1, 1:-1] == g[2:, 1:-1]) & (g[1:-1, 1:-1] == g[1:-1, :-2]) & (g[1:-1, 1:-1] == g[1:-1, 2:])
    # 0.7: defocused macro photographs reach ~0.6 (8-bit bokeh), screenshots ~0.97
    return float(flat.all(axis=2).mean()) < 0.7


def high_frequency_share(image: np.ndarray) -> float:
    """Spectral energy above 0.6 of Nyquist relative to the band 0.15-0.6, on a central crop of
    at most 512x512 (grey, Hann-windowed). Interpolation removes the top of the spectrum, so an
    up-scaled image scores near zero; camera photographs keep sensor noise up there.

    >>> rng = np.random.default_rng(0)
    >>> noisy = rng.integers(0, 256, (64, 64, 3)).astype(np.uint8)
    >>> big = cv2.resize(noisy, (256, 256), interpolation=cv2.INTER_CUBIC)
    >>> high_frequency_share(noisy) > 10 * high_frequency_share(big)
    True
    """
    h, w = image.shape[:2]
    s = min(512, h, w)
    y, x = (h - s) // 2, (w - s) // 2
    g = cv2.cvtColor(np.ascontiguousarray(image[y : y + s, x : x + s]), cv2.COLOR_RGB2GRAY).astype(np.float64)
    g = (g - g.mean()) * np.outer(np.hanning(s), np.hanning(s))
    power = np.abs(np.fft.fft2(g)) ** 2
    f = np.abs(np.fft.fftfreq(s)) * 2
    r = np.maximum(f[:, None], f[None, :])
    return float(power[r > 0.6].sum() / max(power[(r > 0.15) & (r <= 0.6)].sum(), 1e-12))


def counting_threshold(out_of_domain: list[dict[str, Any]], threshold: float = 0.5) -> float | None:
    """The p from which a detector score counts as evidence for an input with these
    out-of-domain reasons: ``threshold`` inside the domain; for an input outside it only for
    being ``small``, the highest ``counts_above`` of those entries (a card without
    ``small_sizes``: ``threshold``); ``None`` (never) for any other reason or a small size the
    card does not name. Out of domain, a low score means nothing; a high one counts only for
    small images of a kind the detector was evaluated on.

    >>> counting_threshold([]), counting_threshold([{"code": "small"}]), counting_threshold([{"code": "upscaled"}])
    (0.5, 0.5, None)
    >>> counting_threshold([{"code": "small", "counts_above": 0.56}]), counting_threshold([{"code": "small", "counts_above": None}])
    (0.56, None)
    """
    t = threshold
    for o in out_of_domain:
        above = o.get("counts_above", threshold) if o["code"] == "small" else None
        if above is None:
            return None
        t = max(t, above)
    return t


def score_counts(out_of_domain: list[dict[str, Any]], p: float, threshold: float = 0.5) -> bool:
    """Whether a detector score ``p`` counts as evidence (:func:`counting_threshold`).

    >>> score_counts([{"code": "small", "counts_above": 0.56}], 0.55), score_counts([{"code": "small"}], 0.6)
    (False, True)
    """
    t = counting_threshold(out_of_domain, threshold)
    return t is not None and p >= t


def domain_check(domain: dict[str, Any] | None, image: np.ndarray, fmt: str | None = None, n_bytes: int | None = None) -> list[dict[str, Any]]:
    """Why ``image`` is outside a detector's declared ``domain`` (its card's ``domain``:
    ``min_side``, ``photographic``, ``min_jpeg_bpp``, ``min_hf_share``, ``small_images``), as
    ``{"code", "message"}`` with codes ``small``, ``non_photographic``, ``compressed``,
    ``upscaled``. Empty when inside or when the detector declares no domain. Where the domain
    names ``small_sizes`` (``[[w, h], ...]``), a ``small`` entry also says above which p its
    score still counts (``counts_above``: the domain's ``small_threshold`` at those sizes,
    ``None`` at any other: never; see :func:`score_counts`).

    >>> domain_check({"min_side": 128}, np.zeros((32, 40, 3), np.uint8))[0]["code"]
    'small'
    >>> domain_check({"photographic": True}, np.full((64, 64, 3), 200, np.uint8))[0]["code"]
    'non_photographic'
    >>> domain_check(None, np.zeros((8, 8, 3), np.uint8))
    []
    """
    if not domain:
        return []
    out = []
    h, w = image.shape[:2]
    ms = domain.get("min_side")
    if ms and min(h, w) < ms:
        known = domain.get("small_images")
        entry = {"code": "small", "message": f"image is {w}x{h}, smaller than the {ms}px native-resolution crops the detector reads"
                 + (f" (small images it knows only from {known})" if known else "")}
        sizes = domain.get("small_sizes")
        if sizes is not None:  # the card says at which sizes a small image's score may count, and above what p
            if [w, h] in [list(x) for x in sizes]:
                entry["counts_above"] = float(domain.get("small_threshold", 0.5))
                if domain.get("small_threshold_note"):
                    entry["message"] += f"; at this size its score counts only at p >= {entry['counts_above']:.2f} ({domain['small_threshold_note']})"
            else:
                entry["counts_above"] = None
                entry["message"] += "; at this size its score is not used" + (
                    f" ({domain['small_sizes_note']})" if domain.get("small_sizes_note") else "")
        out.append(entry)
    if domain.get("photographic") and not looks_photographic(image):
        out.append({"code": "non_photographic", "message": "large exactly-flat areas: graphics, a screenshot or a render, not a photograph (trained on photographs only)"})
    hf_min = domain.get("min_hf_share")
    if hf_min and min(h, w) >= 64 and not (ms and min(h, w) < ms):
        share = high_frequency_share(image)
        if share < hf_min:
            out.append({"code": "upscaled", "message": f"almost no detail above half the pixel frequency (share {share:.3f}): "
                        "looks up-scaled or heavily smoothed, and up-scaled photographs score like generated ones"})
    bpp_min = domain.get("min_jpeg_bpp")
    if bpp_min and fmt == "JPEG" and n_bytes and h * w:
        bpp = 8.0 * n_bytes / (h * w)
        if bpp < bpp_min:
            out.append({"code": "compressed", "message": f"heavily compressed JPEG ({bpp:.2f} bits per pixel): generator traces do not survive that"})
    return out


def tile_image(img: np.ndarray, patch: int, max_tiles: int = 64) -> tuple[np.ndarray, list[tuple[int, int]], tuple[int, int], list[str]]:
    """Cut ``img`` into ``patch``-sided tiles: (tiles N x P x P x 3, positions, grid, notes)."""
    notes: list[str] = []
    h, w = img.shape[:2]
    if h < patch or w < patch:
        f = patch / min(h, w)
        img = cv2.resize(img, (max(patch, round(w * f)), max(patch, round(h * f))), interpolation=cv2.INTER_CUBIC)
        notes.append(f"image {w}x{h} is smaller than the detector's {patch}px input: enlarged")
        h, w = img.shape[:2]
    ys = list(range(0, h - patch + 1, patch))
    xs = list(range(0, w - patch + 1, patch))
    if ys[-1] != h - patch:
        ys.append(h - patch)
    if xs[-1] != w - patch:
        xs.append(w - patch)
    positions = [(y, x) for y in ys for x in xs]
    if len(positions) > max_tiles:
        keep = np.unique(np.linspace(0, len(positions) - 1, max_tiles).round().astype(int))
        positions = [positions[i] for i in keep]
        notes.append(f"{len(ys) * len(xs)} tiles, {len(positions)} evenly spaced ones scored")
    tiles = np.stack([img[y : y + patch, x : x + patch] for y, x in positions])
    return tiles, positions, (len(ys), len(xs)), notes


class Detector:
    """A network with everything needed to score images: input side, calibration, device."""

    def __init__(
        self,
        family: str,
        net: torch.nn.Module,
        *,
        net_config: dict[str, Any],
        patch: int,
        calibration: dict[str, Any] | None = None,
        max_tiles: int = 64,
        name: str | None = None,
        card: dict[str, Any] | None = None,
        device: str | torch.device = "auto",
        sha256: str | None = None,
        preprocess: str | None = None,
    ):
        self.family = family
        self.net = net
        self.net_config = net_config
        self.patch = int(patch)
        self.calibration = calibration or {"method": "none"}
        self.max_tiles = max_tiles
        self.name = name or family
        self.card = card or {}
        self.sha256 = sha256
        self.preprocess = preprocess  # perturbation spec every input goes through (the training codec)
        self._pre = None
        self._infer: Callable[[torch.Tensor], torch.Tensor] | None = None  # see optimize_for_inference
        self.inference_backend = "eager"  # on CPU after optimize_for_inference: "torchscript" / "onnxruntime"
        self.device = resolve_device(device)
        self.net.to(self.device).eval()
        if self.device.type == "cuda" and not self.whole_image:
            self.net.to(memory_format=torch.channels_last)

    # -- construction
    @classmethod
    def create(cls, family: str, *, patch: int | None = None, device="auto", **net_config) -> Detector:
        fam = get_family(family)
        patch = patch or fam.patch
        params = inspect.signature(fam.cls.__init__).parameters
        if "patch" in params:
            net_config["patch"] = patch
        full = {**fam.defaults, **net_config}
        full = {k: list(v) if isinstance(v, tuple) else v for k, v in full.items()}
        return cls(family, build_net(family, **full), net_config=full, patch=patch, device=device)

    @property
    def calibrated(self) -> bool:
        return self.calibration.get("method", "none") != "none"

    @property
    def whole_image(self) -> bool:
        """Whether this detector scores whole images through its network's ``prepare_input``
        (a published family, reproducing its reference code) rather than the toolkit's tiles.
        A network says so itself (``whole_image``, for a class that serves both ways, e.g.
        NPR), else a class carrying a ``published`` card does."""
        return whole_image_net(self.net)

    @property
    def published(self) -> dict[str, Any] | None:
        """The family's :class:`~genvis_trust.detectors.published.PublishedCard` as a dict, when
        this detector reproduces a publication."""
        card = getattr(type(self.net), "published", None)
        return card.to_dict() if card is not None and self.whole_image else None

    # -- scoring
    @torch.no_grad()
    def logits(self, tiles: np.ndarray, batch_size: int = 256, *, members: bool = False):
        """Raw logits for a stack of ``N x P x P x 3`` uint8 tiles, in batches. ``members=True``:
        ``(logits, N x M member logits)`` of the same pass (``None`` for a net that is not a
        stack), which a domain head combines (:meth:`aggregate`)."""
        self.net.eval()
        if self.whole_image:  # each entry a whole image: the reference preprocessing, then the net
            z = self.logits_prepared([self.net.prepare_input(self.prepare(np.asarray(im))) for im in tiles], batch_size)
            return (z, None) if members else z
        zs, ms = [], []
        for i in range(0, len(tiles), batch_size):
            z, m = self._forward(torch.from_numpy(np.ascontiguousarray(tiles[i : i + batch_size])))
            zs.append(z)
            ms.append(m)
        z = np.concatenate(zs) if zs else np.zeros(0, np.float32)
        if not members:
            return z
        return z, (np.concatenate(ms) if ms and ms[0] is not None else None)

    @torch.no_grad()
    def logits_prepared(self, inputs: list[torch.Tensor], batch_size: int = 8, *, members: bool = False):
        """Logits of a whole-image detector for inputs already through ``prepare_input``
        (each ``3 x H x W`` float32, or ``1 x 3 x H x W``), in input order. Inputs of one shape
        share a forward pass (up to ``batch_size``); the others run one by one, unpadded.
        ``members=True``: ``(logits, None)`` (a fusion gives its members' logits there)."""
        xs = [x[0] if x.dim() == 4 else x for x in inputs]
        out = np.zeros(len(xs), np.float32)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, x in enumerate(xs):
            groups.setdefault(tuple(x.shape), []).append(i)
        for idx in groups.values():
            for j in range(0, len(idx), batch_size):
                part = idx[j : j + batch_size]
                out[part] = self._forward_float(torch.stack([xs[i] for i in part]))
        return (out, None) if members else out

    def _forward_float(self, x: torch.Tensor) -> np.ndarray:
        """One float32 batch through the network, in float32 on any device: a published
        detector's logits must be its reference code's (TF32 convolutions and matmuls differ
        from them in the third decimal, so they are off here)."""
        x = x.to(self.device, dtype=torch.float32)
        if self.device.type == "cuda":
            with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=False, allow_tf32=False):
                prec = torch.backends.cuda.matmul.allow_tf32
                torch.backends.cuda.matmul.allow_tf32 = False
                try:
                    z = self.net(x)
                finally:
                    torch.backends.cuda.matmul.allow_tf32 = prec
        else:
            z = self.net(x)
        return z.reshape(-1).float().cpu().numpy()

    def forward_uint8(self, batch: torch.Tensor) -> np.ndarray:
        """``N x H x W x 3`` uint8 tensor (any device) -> logits as float32 numpy."""
        return self._forward(batch)[0]

    def _forward(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        """(logits, member logits or None) of a uint8 batch, as float32 numpy."""
        if self.device.type == "cuda":
            batch = batch.pin_memory() if not batch.is_pinned() else batch
        x = batch.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.float16):
                out = _outputs(self.net)(x)
        elif self._infer is not None:
            with torch.inference_mode():
                out = self._infer(x)
        else:
            out = _outputs(self.net)(x)
        z, m = out if isinstance(out, tuple) else (out, None)
        return z.float().cpu().numpy(), (None if m is None else m.float().cpu().numpy())

    def optimize_for_inference(self, backend: str = "auto") -> bool:
        """On CPU, score through a faster form of the same weights (``self.net`` stays the
        eager network, usable for gradients: Grad-CAM, training). Backends:

        - ``folded``: a copy of the network with every batch norm folded into the convolution
          before it, run eagerly in channels-last layout (oneDNN kernels). For the bundled
          default its logits are the TorchScript graph's bit for bit at the graph's speed, and
          it is built in ~10 ms instead of the graph's ~0.3-0.6 s of tracing, freezing and
          probe passes (start-up time of every scan). Only for networks whose modules say how
          to fold every batch norm they hold (``fold_batch_norm()``, e.g. NPR's);
        - ``torchscript``: traced in channels-last layout and frozen (batch-norm folded into
          the convolutions, oneDNN kernels), about 3x the eager network for the small families
          here;
        - ``onnxruntime``: exported and run by ONNX Runtime (:mod:`.onnx_graph`; needs the
          optional ``onnx`` package). 1.28x the TorchScript graph for the bundled default, but
          not the default: its logits differ in the sixth decimal, so records would depend on
          an optional package (``benchmarks/results/forward_cpu.md``);
        - ``auto`` (the default): ``folded`` where the network folds, else ``torchscript``.

        A graph is used only if its logits agree with the eager network's to 1e-4 on a probe
        of two tiles and of one (any batch size must work); the folded network runs the
        network's own code, so it needs no probe. ``inference_backend`` says which runs.
        Returns whether an optimised form is in use."""
        if backend not in ("auto", "folded", "onnxruntime", "torchscript"):
            raise ValueError(f"unknown inference backend {backend!r} (auto, folded, torchscript, onnxruntime)")
        if self.device.type != "cpu" or self._infer is not None:
            return self._infer is not None
        if self.whole_image:  # fidelity first: folding or tracing moves the logits off the reference code's
            return False
        self.net.eval()
        if backend in ("auto", "folded"):
            folded = _folded(self.net)
            if folded is not None:
                run = _outputs(folded)
                self._infer = lambda x: run(x.contiguous(memory_format=torch.channels_last))
                self.inference_backend = "folded"
                return True
            if backend == "folded":
                return False
            backend = "torchscript"
        if backend == "onnxruntime":
            from .onnx_graph import ONNX_MISSING, onnx_available

            if not onnx_available():
                raise ImportError(ONNX_MISSING)
        # two tiles: every probe forward pass is start-up time of every scan
        probe = torch.rand(2, 3, self.patch, self.patch)
        with torch.no_grad():
            ref = _outputs(self.net)(probe)
        build = self._onnx_graph if backend == "onnxruntime" else self._torchscript_graph
        graph = self._checked(build, probe, ref)
        if graph is None:  # any family the backend cannot handle keeps the eager path
            return False
        self._infer, self.inference_backend = graph, backend
        return True

    @staticmethod
    def _checked(build, probe: torch.Tensor, ref):
        """``build(probe)`` if it gives ``ref`` (a tensor, or a tuple of them) to 1e-4 for
        batches of 2 and 1, else None."""
        import warnings

        refs = ref if isinstance(ref, tuple) else (ref,)
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # torch.jit's and torch.onnx's deprecation notices: they still work
                graph = build(probe)
                for n in (2, 1):
                    got = graph(probe[:n])
                    got = got if isinstance(got, tuple) else (got,)
                    if len(got) != len(refs) or not all(
                        torch.allclose(g, r[:n], atol=1e-4, rtol=1e-4) for g, r in zip(got, refs, strict=True)
                    ):
                        return None
        except Exception:
            return None
        return graph

    def _onnx_graph(self, probe: torch.Tensor):
        from .onnx_graph import OnnxGraph

        return OnnxGraph(_outputs(self.net), self.patch, threads=torch.get_num_threads())

    def _torchscript_graph(self, probe: torch.Tensor):
        net_cl = _outputs(copy.deepcopy(self.net).to(memory_format=torch.channels_last))
        # check_trace=False: _checked compares (the tracer's own re-run imports torch.distributed,
        # about a second of start-up)
        frozen = torch.jit.freeze(torch.jit.trace(net_cl, probe.contiguous(memory_format=torch.channels_last), check_trace=False))
        return lambda x: frozen(x.contiguous(memory_format=torch.channels_last))

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        return apply_calibration(self.calibration, logits)

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """Send an input through the codec the detector was trained behind (if any)."""
        if not self.preprocess:
            return image
        if self._pre is None:
            from genvis_trust.datasets.perturbations import parse_perturbation

            self._pre = parse_perturbation(self.preprocess)
        return self._pre(image)

    def tiles(self, image: np.ndarray, max_tiles: int | None = None):
        """``tile_image`` of the prepared image: (tiles, positions, grid, notes)."""
        if self.whole_image:
            raise ValueError(f"detector {self.name!r} ({self.family}) reads whole images with its "
                             "publication's preprocessing: it has no tiles to map")
        return tile_image(self.prepare(image), self.patch, max_tiles or self.max_tiles)

    def inputs(self, image: np.ndarray, max_tiles: int | None = None):
        """What the network reads for ``image``, as ``(inputs, positions, grid, notes)``: the
        uint8 tiles (``N x P x P x 3``) of a tile detector, or for a whole-image detector its
        ``prepare_input`` of the whole image, a ``1 x 3 x H' x W'`` float32 tensor, at position
        ``(0, 0)`` of a ``(1, 1)`` grid. Run in the scoring engine's decode workers."""
        if not self.whole_image:
            return self.tiles(image, max_tiles)
        x = self.net.prepare_input(self.prepare(image))
        h, w = image.shape[:2]
        notes = [f"whole image {w}x{h} read as the publication's code reads it "
                 f"(network input {x.shape[-1]}x{x.shape[-2]}): {self.family} preprocessing, no tiles"]
        return x[None], [(0, 0)], (1, 1), notes

    def domain_check(self, image: np.ndarray, fmt: str | None = None, n_bytes: int | None = None) -> list[dict[str, Any]]:
        """Why ``image`` is outside what this detector was trained on (see :func:`domain_check`)."""
        return domain_check(self.card.get("domain"), image, fmt, n_bytes)

    def predict_proba(self, patches: np.ndarray) -> np.ndarray:
        """Calibrated p(generated) for patches already at the detector's input size."""
        if self.preprocess:
            patches = np.stack([self.prepare(p) for p in patches])
        return self.probabilities(self.logits(patches))

    def score(self, image: np.ndarray) -> DetectionScore:
        return self.score_many([image])[0]

    def score_many(self, images: list[np.ndarray], batch_size: int = 256) -> list[DetectionScore]:
        """Tile every image, score all tiles in shared batches, aggregate per image (a
        whole-image detector: one prepared input per image, equal shapes batched)."""
        tiled = [self.inputs(im) for im in images]
        if not tiled:
            return []
        if self.whole_image:
            all_logits, all_members = self.logits_prepared([t[0] for t in tiled], min(batch_size, 8), members=True)
        else:
            all_logits, all_members = self.logits(np.concatenate([t[0] for t in tiled]), batch_size, members=True)
        out, pos = [], 0
        for im, (tiles, positions, grid, notes) in zip(images, tiled, strict=True):
            z = all_logits[pos : pos + len(tiles)]
            m = None if all_members is None else all_members[pos : pos + len(tiles)]
            pos += len(tiles)
            out.append(self.aggregate(z, tiles, positions, grid, notes, self.domain_check(im), members=m))
        return out

    # -- domain heads: a second decision for inputs the main head would void
    def domain_head(self, out_of_domain: list[dict[str, Any]]) -> str | None:
        """The head that scores an input outside the main domain for exactly one reason that the
        detector has a head for (the bundled default: ``upscaled``), else None."""
        heads = self.calibration.get("heads") or {}
        codes = {o["code"] for o in out_of_domain}
        if len(codes) == 1 and (code := next(iter(codes))) in heads and hasattr(self.net, "member_logits"):
            return code
        return None

    @torch.no_grad()
    def head_logits(self, tiles: np.ndarray, head: str, batch_size: int = 256, members: np.ndarray | None = None) -> np.ndarray:
        """Per-tile logits of a domain head: its own linear combination of the members' logits.
        ``members``: the ``N x M`` member logits of the pass that scored ``tiles``
        (``logits(..., members=True)``); without them the tiles go through the network again."""
        if members is None:
            members = self.logits(tiles, batch_size, members=True)[1]
        spec = self.calibration["heads"][head]
        w = torch.tensor(spec["weights"], dtype=torch.float32)
        return (torch.from_numpy(members).float() @ w + float(spec["bias"])).numpy()

    def calibration_for(self, head: str | None) -> dict[str, Any] | None:
        """The calibration that turns an image logit into p: the detector's own, or a domain
        head's (its Platt parameters) for inputs that head decides."""
        if head is None:
            return self.calibration
        spec = self.calibration["heads"][head]
        return {"method": "platt", "a": float(spec["a"]), "b": float(spec["b"])}

    def aggregate(self, z: np.ndarray, tiles: np.ndarray, positions, grid, notes: list[str],
                  out_of_domain: list[dict[str, Any]], members: np.ndarray | None = None) -> DetectionScore:
        """One image's verdict from its tile logits (the single aggregation every scoring path
        uses): mean logit, then calibration. An input outside the main domain for a reason the
        detector has a head for is re-scored by that head from the member logits of the same
        pass (``members``; recomputed when not given), with the head's own calibration, and is
        then inside what the detector knows (the note says which head and why)."""
        head = self.domain_head(out_of_domain)
        calibration = self.calibration_for(head)
        if head is not None:
            spec = self.calibration["heads"][head]
            z = self.head_logits(tiles, head, members=members)
            why = out_of_domain[0]["message"].split(":")[0]
            notes = [*notes, f"decided by the detector's {head!r} head ({why}), whose threshold keeps "
                     f"{spec.get('fpr_budget', 0.05):.0%} false positives on {spec.get('fitted_on', 'such photographs')}"]
            out_of_domain = []
        agg = float(np.mean(z))
        return DetectionScore(
            probability=float(apply_calibration(calibration, np.array([agg]))[0]),
            logit=agg,
            calibrated=self.calibrated,
            detector=self.name,
            tiles=len(z),
            grid=grid,
            notes=notes,
            tile_logits=z,
            tile_positions=positions,
            out_of_domain=out_of_domain,
            head=head,
            members=self.stack_members(members) if members is not None and hasattr(self.net, "member_specs") else None,
        )

    def stack_members(self, members: np.ndarray) -> list[dict[str, Any]]:
        """A stack's members on one image, from its ``tiles x M`` member logits: each member's
        name (its card's), family, image logit (the mean over the tiles), p (the sigmoid: a stack's
        members carry no calibration of their own) and licence (the card's, else the toolkit's)."""
        card = self.card or {}
        names = (card.get("stacking") or {}).get("members") or []
        described = card.get("members") or {}
        out = []
        for i, (spec, z) in enumerate(zip(self.net.member_specs, np.asarray(members, np.float64).mean(0), strict=True)):
            name = names[i] if i < len(names) else f"{spec['family']}{i}"
            d = described.get(name) if isinstance(described.get(name), dict) else {}
            out.append({"name": name, "family": spec["family"], "logit": round(float(z), 6),
                        "probability": round(float(1.0 / (1.0 + np.exp(-z))), 6), "calibrated": False,
                        "licence": d.get("licence") or "the toolkit's (Apache-2.0)",
                        "commercial_use": d.get("commercial_use", True) if d.get("licence") else True})
        return out

    # -- persistence
    def save(self, path: str | os.PathLike, card: dict[str, Any] | None = None) -> str:
        fam = get_family(self.family)
        self.card = {**self.card, **(card or {})}
        config = {
            "net": self.net_config,
            "patch": self.patch,
            "calibration": self.calibration,
            "aggregation": AGGREGATION,
            "max_tiles": self.max_tiles,
            "preprocess": self.preprocess,
        }
        state = {k: v for k, v in self.net.state_dict().items()}
        self.sha256 = save_artifact(
            path, kind="detector", family=self.family, config=config, tensors=state, card=self.card, version=fam.version
        )
        return self.sha256

    @classmethod
    def load(cls, path: str | os.PathLike, device="auto") -> Detector:
        path = Path(path)
        family = read_config(path).get("family")
        if cls is Detector and family in ARTIFACT_LOADERS:  # e.g. a fusion of other detectors (.fusion)
            return ARTIFACT_LOADERS[family](path, device=device)
        fam = get_family(family)
        art = load_artifact(path, kind="detector", family=family, max_version=fam.version)
        cfg = art.config
        net = build_net(family, **cfg["net"])
        missing, unexpected = net.load_state_dict(art.tensors, strict=False)
        if missing or unexpected:
            raise ArtifactError(f"{path}: weights do not fit {family}: missing {missing[:3]}, unexpected {unexpected[:3]}")
        return cls(
            family,
            net,
            net_config=cfg["net"],
            patch=cfg["patch"],
            calibration=cfg.get("calibration"),
            max_tiles=cfg.get("max_tiles", 64),
            preprocess=cfg.get("preprocess"),
            name=art.card.get("name", path.name),
            card=art.card,
            device=device,
            sha256=art.sha256,
        )


class _WithMembers(torch.nn.Module):
    """A stack returning ``(logits, member logits)`` from one pass (``StackNet.forward_with_members``)."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net.forward_with_members(x)


def _outputs(net: torch.nn.Module) -> torch.nn.Module:
    """What scoring runs: a stack with its member logits beside its logits, any other net as it is."""
    return _WithMembers(net).train(net.training) if hasattr(net, "forward_with_members") else net


def whole_image_net(net: torch.nn.Module) -> bool:
    """Whether ``net`` scores whole images (see :attr:`Detector.whole_image`)."""
    own = getattr(net, "whole_image", None)
    if own is not None:
        return bool(own)
    return getattr(type(net), "published", None) is not None


def _folded(net: torch.nn.Module) -> torch.nn.Module | None:
    """An inference copy of ``net`` with every batch norm folded into its convolution (each
    module holding one says how: ``fold_batch_norm()``), channels-last; None when any would remain."""
    net = copy.deepcopy(net).eval()
    for m in list(net.modules()):
        if hasattr(m, "fold_batch_norm"):
            m.fold_batch_norm()
    if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules()):
        return None
    return net.to(memory_format=torch.channels_last)


def list_bundled() -> dict[str, Path]:
    if not BUNDLED_DIR.is_dir():
        return {}
    return {p.name: p for p in sorted(BUNDLED_DIR.iterdir()) if (p / "config.json").is_file()}


def load_detector(name_or_path: str | os.PathLike = "default", device="auto") -> Detector:
    """A detector by name or path: a bundled one (``default``) first, then one the user
    installed (``detectors fetch`` / ``detectors stack``, see :mod:`.installed`), then an
    artifact folder at that path."""
    from .installed import list_installed

    bundled = list_bundled()
    if str(name_or_path) in bundled:
        det = Detector.load(bundled[str(name_or_path)], device=device)
        det.name = str(name_or_path)
        return det
    installed = list_installed()
    if str(name_or_path) in installed:
        det = Detector.load(installed[str(name_or_path)], device=device)
        det.name = str(name_or_path)
        return det
    p = Path(name_or_path)
    if p.is_dir():
        return Detector.load(p, device=device)
    known = ", ".join(bundled) or "none bundled"
    inst = ", ".join(installed) or "none (genvis-trust detectors fetch NAME)"
    raise ArtifactError(f"no detector named {str(name_or_path)!r} (bundled: {known}; installed: {inst}) and no folder at that path")
