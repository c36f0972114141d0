"""A learned watermark trained by the toolkit (HiDDeN/StegaStamp-like), 64 bits.

The whole family in one file: the two networks, the artifact format, and the backend
``learnedWm`` registered with the other watermark backends, so ``stamp --watermark
learnedWm``, ``verify``, ``scan``, video stamping and the store use it unchanged. Training
lives in :mod:`.learned_wm_train` (``genvis-trust watermark train``).

**Embedding** (any size, any aspect ratio): the image is resized (area) to a fixed working
size ``work`` x ``work`` (default 64), the encoder sees it with the 64 payload bits and
returns a 3-channel residual there; the residual is resized (bilinear) to the image's own
size, scaled so that its root-mean-square is ``strength * target_rms`` (of the 0..1 range:
``target_rms`` 0.0112 is about 39 dB PSNR before rounding), added, rounded to ``uint8``.
The residual therefore lives at low spatial frequencies of the image (a cell of ``H/work``
pixels), where JPEG, resizing, blur and noise do little. Before that, the encoder's residual
is refined for the image at hand (:attr:`LearnedWatermark.refine_steps` gradient steps, 30 by
default, about a second on a CPU core): kept at its RMS, it is optimised so that the decoder
reads every bit with a margin through random attack stand-ins (informed embedding, as in
"Watermarking Images in Self-Supervised Latent Spaces", Fernandez et al. 2022). The result
is deterministic (fixed seed, global random state untouched).

``verify`` reads this backend when asked (``backends=("learnedWm",)`` or ``"all"``) or when
a file's C2PA soft binding names it; its default set is unchanged.

**Reading**: the image resized (area) to ``work`` x ``work``, standardised per image (mean
per channel, one standard deviation: brightness and contrast changes cancel), the decoder
gives one logit per bit; the calibrated logit is ``logit - bias`` (``bias``: the median
logit per bit on unmarked training photographs, measured after training, so each bit of an
unmarked photograph is about a fair coin), the soft score its sigmoid, a bit is 1 above
0.5. Bits are XORed with a fixed key (``key_seed``) on both sides, so a decoder that reads
a fixed word on unmarked content reads a key-scrambled word, not an all-zero one.

The payload is the p64 codec's (BCH, issuer bits), so the false-accept arithmetic of
:mod:`.payload` holds as far as the calibrated bits of unmarked images behave like fair,
independent coins; ``benchmarks/watermark_robustness.py`` measures both (per-bit
frequencies, pairwise agreement and false accepts on unmarked images).

The bundled weights live in ``genvis_trust/assets/watermarks/learned64`` (config.json,
model.safetensors, card.json with the recipe and the measured robustness); without them the
backend raises :class:`~.watermarks.WatermarkError` with the command that trains a model.
torch is imported only when the backend is used, not when the registry is listed.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np

from .watermarks import BitReading, WatermarkBackend, WatermarkError, register_watermark

__all__ = ["FAMILY", "FAMILY_VERSION", "DEFAULT_CONFIG", "LearnedWatermark", "bundled_dir", "build_model",
           "load_model", "save_model", "key_bits"]

FAMILY = "learned-wm"
FAMILY_VERSION = 1
KIND = "watermark"
DEFAULT_CONFIG = {
    "n_bits": 64,
    "work": 64,  # working size of encoder and decoder
    "channels": 24,
    "msg_grid": 16,  # the payload is spread over a msg_grid x msg_grid map before the encoder's convs
    "target_rms": 0.0112,  # residual RMS in 0..1 units at strength 1 (about 39 dB PSNR)
    "key_seed": 20261207,
}
_ENV = "GENVIS_LEARNED_WM"  # a folder with a trained model, read instead of the bundled one


def bundled_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "assets" / "watermarks" / "learned64"


def key_bits(cfg: dict) -> np.ndarray:
    """The fixed XOR key of a model (``cfg['key_seed']``), ``n_bits`` of 0/1."""
    return np.random.default_rng(int(cfg["key_seed"])).integers(0, 2, int(cfg["n_bits"])).astype(np.uint8)


@cache
def _modules():
    """The two network classes, built on first use so that listing backends needs no torch."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    def block(cin, cout, stride=1):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.ReLU(inplace=True))

    class Encoder(nn.Module):
        """(image in [-1, 1] at work x work, bits in {-1, 1}) -> residual at work x work.

        The convolutions run at half the working size (cheap on a CPU); the residual is
        resized to the working size."""

        def __init__(self, n_bits: int, work: int, channels: int, msg_grid: int):
            super().__init__()
            self.work, self.msg_grid, self.msg_ch = work, msg_grid, 8
            self.msg = nn.Linear(n_bits, self.msg_ch * msg_grid * msg_grid)
            c = channels
            self.body = nn.Sequential(block(3 + self.msg_ch, c), block(c, c), block(c, c))
            self.out = nn.Conv2d(c + self.msg_ch, 3, 1)

        def forward(self, x, m):
            b, half = x.shape[0], self.work // 2
            mm = self.msg(m).view(b, self.msg_ch, self.msg_grid, self.msg_grid)
            mm = F.interpolate(mm, size=(half, half), mode="bilinear", align_corners=False)
            xs = F.avg_pool2d(x, 2)
            r = self.out(torch.cat([self.body(torch.cat([xs, mm], 1)), mm], 1))
            return F.interpolate(r, size=(self.work, self.work), mode="bilinear", align_corners=False)

    class Decoder(nn.Module):
        """(standardised image at work x work) -> one logit per bit."""

        def __init__(self, n_bits: int, work: int, channels: int):
            super().__init__()
            c = channels
            self.body = nn.Sequential(block(3, c, 2), block(c, c), block(c, 2 * c, 2), block(2 * c, 2 * c, 2))
            side = work // 8
            self.head = nn.Linear(2 * c * side * side, n_bits)

        def forward(self, y):
            return self.head(self.body(y).flatten(1))

    class Model(nn.Module):
        def __init__(self, n_bits, work, channels, msg_grid, **_ignored):
            super().__init__()
            self.encoder = Encoder(n_bits, work, channels, msg_grid)
            self.decoder = Decoder(n_bits, work, channels)
            self.register_buffer("bias", torch.zeros(n_bits))

    return Model


def build_model(cfg: dict | None = None):
    """A fresh model for ``cfg`` (defaults: :data:`DEFAULT_CONFIG`)."""
    cfg = {**DEFAULT_CONFIG, **(cfg or {})}
    return _modules()(**cfg)


def save_model(path, model, cfg: dict, card: dict | None = None) -> str:
    from genvis_trust.artifacts import save_artifact

    return save_artifact(path, kind=KIND, family=FAMILY, config=cfg, version=FAMILY_VERSION,
                         tensors=dict(model.state_dict()), card=card)


def load_model(path, device: str = "cpu"):
    """(model in eval mode, config, card) from an artifact folder."""
    from genvis_trust.artifacts import ArtifactError, load_artifact

    try:
        art = load_artifact(path, kind=KIND, family=FAMILY, max_version=FAMILY_VERSION, device=device)
    except ArtifactError as e:
        raise WatermarkError(str(e)) from None
    cfg = {**DEFAULT_CONFIG, **art.config}
    model = build_model(cfg)
    model.load_state_dict(art.tensors)
    return model.eval().to(device), cfg, art.card


# --------------------------------------------------------------------------- shared transforms


def standardise(y):
    """Per image: minus the mean of each channel, over one standard deviation of all."""
    y = y - y.mean(dim=(2, 3), keepdim=True)
    return y / (y.flatten(1).std(dim=1).view(-1, 1, 1, 1) + 1e-3)


def to_work(images: Sequence[np.ndarray], work: int) -> np.ndarray:
    """(N, 3, work, work) float32 in 0..1: each image resized with area averaging."""
    import cv2

    out = np.empty((len(images), 3, work, work), np.float32)
    for i, im in enumerate(images):
        out[i] = cv2.resize(im, (work, work), interpolation=cv2.INTER_AREA).transpose(2, 0, 1) / np.float32(255)
    return out


@register_watermark("learnedWm")
class LearnedWatermark(WatermarkBackend):
    """Learned watermark trained by the toolkit (conv encoder/decoder, 64-px working size), 64-bit payload."""

    name = "learnedWm"
    n_bits = 64
    min_side = 128
    library_order = "RGB"
    soft_threshold = 0.5

    def __init__(self, path: str | os.PathLike | None = None, strength: float = 1.0, device: str = "cpu",
                 refine_steps: int | None = None):
        if refine_steps is not None:
            self.refine_steps = int(refine_steps)
        self.path = Path(path or os.environ.get(_ENV) or bundled_dir())
        self.strength = float(strength)
        self.device = device
        self._model = self._cfg = None
        self._lock = threading.Lock()

    def model(self):
        with self._lock:
            if self._model is None:
                if not (self.path / "config.json").is_file():
                    raise WatermarkError(
                        f"learnedWm: no trained model at {self.path}; train one with "
                        "`genvis-trust watermark train --out DIR` and set GENVIS_LEARNED_WM=DIR")
                self._model, self._cfg, self.card = load_model(self.path, self.device)
                self._key = key_bits(self._cfg)
        return self._model, self._cfg

    def embed(self, rgb: np.ndarray, bits) -> np.ndarray:
        return self.embed_batch([rgb], [bits])[0]

    def embed_batch(self, images: Sequence[np.ndarray], bits: Sequence) -> list[np.ndarray]:
        import torch

        model, cfg = self.model()
        for im in images:
            self.check_image(im)
        msgs = np.stack([self.check_bits(b) ^ self._key for b in bits]).astype(np.float32)
        x = torch.from_numpy(to_work(images, cfg["work"])).to(self.device)
        m = torch.from_numpy(msgs).to(self.device)
        with torch.inference_mode():
            res = model.encoder(x * 2 - 1, m * 2 - 1)
        res = res.clone()  # an ordinary tensor: refined rows are written back into it
        out = self._apply(images, res)
        if not self.refine_steps:
            return out
        # refine; an image that still misreads a bit at full size gets more rounds
        todo = list(range(len(images)))
        for k in range(self.refine_rounds):
            sub = self._refine([images[i] for i in todo], res[todo].clone(), m[todo], steps=self.refine_steps * (1 + 2 * k))
            res[todo] = sub
            for i, o in zip(todo, self._apply([images[i] for i in todo], sub), strict=True):
                out[i] = o
            read = self.read_bits_batch([out[i] for i in todo])
            todo = [i for i, r in zip(todo, read, strict=True) if not np.array_equal(r.bits ^ self._key, msgs[i].astype(np.uint8))]
            if not todo:
                break
        return out

    def _apply(self, images: Sequence[np.ndarray], res) -> list[np.ndarray]:
        """Each working-size residual resized to its image, scaled to the target RMS, added."""
        import torch
        from torch.nn import functional as F

        _, cfg = self.model()
        out = []
        for i, im in enumerate(images):
            h, w = im.shape[:2]
            with torch.inference_mode():
                r = F.interpolate(res[i : i + 1], size=(h, w), mode="bilinear", align_corners=False)[0]
                r = r * (self.strength * cfg["target_rms"] / (r.pow(2).mean().sqrt() + 1e-12))
            r = r.permute(1, 2, 0).cpu().numpy() * 255.0
            out.append(np.clip(np.rint(im.astype(np.float32) + r), 0, 255).astype(np.uint8))
        return out

    #: gradient steps that refine the encoder's residual for the image at hand (informed
    #: embedding): the residual is optimised, at its fixed RMS, so that the decoder reads the
    #: payload with a margin through random attack stand-ins; 0 keeps the encoder's residual.
    refine_steps = 30
    refine_margin = 3.0
    #: rounds of refinement at most: the images whose full-size stamp still misreads a bit
    #: get another round, each longer than the last (refine_steps times 1, 3, 5)
    refine_rounds = 3

    def _refine(self, images: Sequence[np.ndarray], res, m, steps: int):
        """Optimise the working-size residuals ``res`` (N, 3, work, work) for their payloads
        ``m`` (0/1) through the training's attack stand-ins at twice the working size.
        Deterministic: a fixed seed, the global random state left untouched."""
        import torch
        from torch.nn import functional as F

        from .learned_wm_attacks import apply_attacks

        model, cfg = self.model()
        side = 2 * cfg["work"]
        x = torch.from_numpy(to_work(images, side)).to(self.device)
        sign = m * 2 - 1
        rng = np.random.default_rng(0)
        with torch.random.fork_rng(devices=[]), torch.enable_grad():
            torch.manual_seed(0)
            delta = res.detach().requires_grad_(True)
            opt = torch.optim.Adam([delta], lr=0.05)
            for p in model.parameters():
                p.requires_grad_(False)
            try:
                for _ in range(steps):
                    r = F.interpolate(delta, size=(side, side), mode="bilinear", align_corners=False)
                    r = r * (self.strength * cfg["target_rms"] / (r.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt() + 1e-8))
                    y = (x + r).clamp(0, 1)
                    ya, _ = apply_attacks(y, 1.0, rng)
                    big = min(ya.shape[-2:]) >= cfg["work"]
                    yw = F.interpolate(ya, size=(cfg["work"], cfg["work"]), mode="area" if big else "bilinear",
                                       **({} if big else {"align_corners": False}))
                    lg = model.decoder(standardise(yw)) - model.bias
                    loss = F.relu(self.refine_margin - sign * lg).mean()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
            finally:
                for p in model.parameters():
                    p.requires_grad_(True)
        return delta.detach()

    def logits_batch(self, images: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """(N, n_bits) calibrated logits (positive: the key-scrambled bit reads 1)."""
        import torch

        model, cfg = self.model()
        outs = []
        for s in range(0, len(images), batch_size):
            y = torch.from_numpy(to_work(images[s : s + batch_size], cfg["work"])).to(self.device)
            with torch.inference_mode():
                outs.append((model.decoder(standardise(y)) - model.bias).cpu().numpy().astype(np.float64))
        return np.concatenate(outs) if outs else np.zeros((0, self.n_bits))

    def read_bits_batch(self, images: Sequence[np.ndarray]) -> list[BitReading]:
        for im in images:
            self.check_image(im)
        if not len(images):
            return []
        self.model()
        logits = self.logits_batch(images)
        out = []
        for lg in logits:
            p = 1.0 / (1.0 + np.exp(-lg))
            # undo the key: where the key bit is 1 the soft score flips around 0.5
            soft = np.where(self._key == 1, 1.0 - p, p)
            bits = (soft > self.soft_threshold).astype(np.uint8)
            out.append(BitReading(bits, soft, float(np.abs(2 * soft - 1).mean())))
        return out

    def read_bits_reference(self, rgb: np.ndarray) -> np.ndarray:
        return self.read_bits(rgb).bits  # our own model: the reader is the reference
