"""DDPM (Ho et al. 2020) with a small U-Net, EMA weights, ancestral and DDIM sampling.

- Noise schedule: cosine (Nichol & Dhariwal 2021) or linear, ``timesteps`` steps (1000).
- Training: predict v = sqrt(a) eps - sqrt(1-a) x0 (Salimans & Ho 2022; default) or the
  noise eps itself, uniform t, MSE. v stays well-conditioned where the signal-to-noise
  ratio is tiny: with eps-prediction our small models' x0 estimates at the first few DDIM
  steps were amplified noise that the deterministic sampler then kept. Class-conditional models
  drop the label 10% of the time so classifier-free guidance (Ho & Salimans 2022) works.
- Sampling, steps chosen at sampling time: ``ancestral`` (the full Markov chain, one
  network call per training timestep) or ``ddim`` (Song et al. 2021; deterministic with
  ``eta=0``, any number of steps). Predicted x0 is clipped to [-1, 1] at every step
  (DDIM keeps the network's epsilon for the direction term).
- EMA of the weights (decay ``ema_decay``) is what the artifact stores and samples with;
  the raw weights live in ``train_state.safetensors`` for resuming.
- ``patch=2`` folds 2x2 pixel blocks into channels (pixel-unshuffle) before the U-Net, a
  4x cut in compute that keeps CPU training in minutes; ``patch=1`` is the classic layout.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import Generator, GeneratorError, SeedNoise, from_unit, register_generator, to_unit


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, device=t.device).float() / half)
    a = t.float()[:, None] * freqs[None]
    return torch.cat([a.sin(), a.cos()], 1)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, tdim: int, groups: int = 8):
        super().__init__()
        self.n1 = nn.GroupNorm(math.gcd(groups, cin), cin)
        self.c1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.t = nn.Linear(tdim, cout)
        self.n2 = nn.GroupNorm(math.gcd(groups, cout), cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, temb):
        h = self.c1(F.silu(self.n1(x))) + self.t(temb)[:, :, None, None]
        return self.c2(F.silu(self.n2(h))) + self.skip(x)


class UNet(nn.Module):
    def __init__(self, cin: int, width: int, mults: tuple[int, ...], num_classes: int):
        super().__init__()
        tdim = width * 4
        self.width = width
        self.temb = nn.Sequential(nn.Linear(width, tdim), nn.SiLU(), nn.Linear(tdim, tdim))
        # index num_classes is the "no label" token used for classifier-free guidance
        self.cemb = nn.Embedding(num_classes + 1, tdim) if num_classes else None
        self.inc = nn.Conv2d(cin, width, 3, 1, 1)
        chans = [width * m for m in mults]
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skips, c = [], width
        for i, co in enumerate(chans):
            self.down.append(ResBlock(c, co, tdim))
            c = co
            skips.append(c)
            self.downsample.append(nn.Conv2d(c, c, 3, 2, 1) if i < len(chans) - 1 else nn.Identity())
        self.mid = nn.ModuleList([ResBlock(c, c, tdim), ResBlock(c, c, tdim)])
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(len(chans))):
            self.up.append(ResBlock(c + skips[i], chans[i], tdim))
            c = chans[i]
            self.upsample.append(nn.Conv2d(c, c, 3, 1, 1) if i > 0 else nn.Identity())
        self.out_norm = nn.GroupNorm(math.gcd(8, c), c)
        self.out = nn.Conv2d(c, cin, 3, 1, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x, t, y=None):
        emb = self.temb(timestep_embedding(t, self.width))
        if self.cemb is not None:
            emb = emb + self.cemb(y)
        h = self.inc(x)
        hs = []
        for block, down in zip(self.down, self.downsample, strict=True):
            h = block(h, emb)
            hs.append(h)
            h = down(h)
        for block in self.mid:
            h = block(h, emb)
        for block, up in zip(self.up, self.upsample, strict=True):
            h = block(torch.cat([h, hs.pop()], 1), emb)
            if not isinstance(up, nn.Identity):
                h = up(F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.out(F.silu(self.out_norm(h)))


def make_schedule(kind: str, timesteps: int) -> torch.Tensor:
    """Cumulative products alpha-bar_t, t = 0..T-1."""
    if kind == "linear":
        betas = torch.linspace(1e-4, 0.02, timesteps, dtype=torch.float64)
    elif kind == "cosine":
        s = 0.008
        f = torch.cos((torch.arange(timesteps + 1, dtype=torch.float64) / timesteps + s) / (1 + s) * math.pi / 2) ** 2
        betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    else:
        raise GeneratorError(f"schedule must be 'cosine' or 'linear', got {kind!r}")
    return torch.cumprod(1 - betas, 0)


@register_generator("diffusion", "DDPM with a small U-Net, EMA; ancestral or DDIM few-step sampling; optional class-conditional")
class DDPM(Generator):
    version = 1
    sampler_defaults = {"sampler": "ddim", "steps": 50, "eta": 0.0, "guidance": 2.0}

    def __init__(self, *, image_size: int = 32, num_classes: int = 0, width: int = 64, mults: tuple = (1, 2),
                 patch: int = 2, timesteps: int = 1000, schedule: str = "cosine", ema_decay: float = 0.999,
                 cond_drop: float = 0.1, prediction: str = "v", lr: float = 2e-4,
                 _channels: int = 3, _sample_size: int | None = None):
        # _channels/_sample_size: what the denoiser works on when it is not RGB pixels of
        # image_size (latent diffusion); private, so not part of this family's config
        mults = tuple(int(m) for m in mults)
        super().__init__(image_size=image_size, num_classes=num_classes, width=width, mults=list(mults),
                         patch=patch, timesteps=timesteps, schedule=schedule, ema_decay=ema_decay,
                         cond_drop=cond_drop, prediction=prediction, lr=lr)
        if patch not in (1, 2, 4):
            raise GeneratorError(f"patch must be 1, 2 or 4, got {patch}")
        if prediction not in ("v", "eps"):
            raise GeneratorError(f"prediction must be 'v' or 'eps', got {prediction!r}")
        self.prediction = prediction
        self.channels, self.sample_size = _channels, _sample_size or image_size
        self.x0_clip: float | None = 1.0  # pixels live in [-1, 1]
        if width < self.channels * patch * patch:
            # the first conv would squeeze C*patch^2 input values into fewer channels: the
            # network could no longer even copy the noise through (the loss stalls at ~1/3)
            raise GeneratorError(f"width must be >= channels * patch^2 = {self.channels * patch * patch}, got {width}")
        self.patch, self.timesteps, self.ema_decay, self.cond_drop = patch, timesteps, ema_decay, cond_drop
        self.net = UNet(self.channels * patch * patch, width, mults, num_classes)
        self.ema = copy.deepcopy(self.net).requires_grad_(False)
        self.register_buffer("alpha_bar", make_schedule(schedule, timesteps).float(), persistent=False)

    # -- the denoiser: outputs v or eps according to `prediction`
    def predict(self, net: nn.Module, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        if self.patch > 1:
            return F.pixel_shuffle(net(F.pixel_unshuffle(x, self.patch), t, y), self.patch)
        return net(x, t, y)

    def forward(self, x, t, y=None):
        return self.predict(self.net, x, t, y)

    # -- training
    def configure_optimizers(self, lr=None):
        return {"net": self._adam(self.net.parameters(), lr or self.config["lr"])}

    def training_step(self, x, y, optimizers, step):
        return self.denoising_step(to_unit(x), y, optimizers)

    def denoising_step(self, x0, y, optimizers):
        """One optimizer step of the denoising loss on clean signals ``x0`` (pixels or latents)."""
        b = x0.shape[0]
        t = torch.randint(0, self.timesteps, (b,), device=x0.device)
        noise = torch.randn_like(x0)
        ab = self.alpha_bar[t].view(b, 1, 1, 1)
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
        if y is not None:
            drop = torch.rand(b, device=x0.device) < self.cond_drop
            y = torch.where(drop, torch.full_like(y, self.num_classes), y)
        target = noise if self.prediction == "eps" else ab.sqrt() * noise - (1 - ab).sqrt() * x0
        loss = F.mse_loss(self.predict(self.net, xt, t, y), target)
        opt = optimizers["net"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.item()}

    @torch.no_grad()
    def after_step(self, step):
        d = min(self.ema_decay, (1 + step) / (10 + step))
        for pe, p in zip(self.ema.parameters(), self.net.parameters(), strict=True):
            pe.lerp_(p, 1 - d)

    # -- artifact: the EMA weights are the model
    def artifact_state_dict(self):
        return {f"net.{k}": v for k, v in self.ema.state_dict().items()}

    def load_artifact_state_dict(self, state):
        inner = {k[4:]: v for k, v in state.items() if k.startswith("net.")}
        if len(inner) != len(state):
            raise RuntimeError("unexpected keys outside 'net.'")
        self.net.load_state_dict(inner, strict=True)
        self.ema.load_state_dict(inner, strict=True)

    # -- sampling
    def _guided(self, x, t_int: int, y, guidance: float):
        t = torch.full((x.shape[0],), t_int, device=x.device, dtype=torch.long)
        if y is None or guidance == 1.0:
            return self.predict(self.ema, x, t, y)
        null = torch.full_like(y, self.num_classes)
        e = self.predict(self.ema, torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]))
        ec, eu = e.chunk(2)
        return eu + guidance * (ec - eu)

    @torch.no_grad()
    def sample(self, seeds, class_ids=None, *, sampler: str = "ddim", steps: int | None = 50, eta: float = 0.0,
               guidance: float = 2.0, progress=None):
        """``sampler``: "ancestral" (``steps`` ignored: all T) or "ddim" (``steps`` network calls)."""
        return from_unit(self.denoise(seeds, class_ids, sampler=sampler, steps=steps, eta=eta,
                                      guidance=guidance, progress=progress))

    @torch.no_grad()
    def denoise(self, seeds, class_ids=None, *, sampler: str = "ddim", steps: int | None = 50, eta: float = 0.0,
                guidance: float = 2.0, progress=None) -> torch.Tensor:
        """The reverse process from each seed's noise: float ``(n, channels, sample_size, sample_size)``."""
        y = self._check_classes(len(seeds), class_ids)
        noise = SeedNoise(seeds, self.device)
        s, c = self.sample_size, self.channels
        x = noise.randn(c, s, s)
        ab = self.alpha_bar
        if sampler == "ancestral":
            ts = list(range(self.timesteps - 1, -1, -1))
        elif sampler == "ddim":
            if not steps or not (1 <= steps <= self.timesteps):
                raise GeneratorError(f"ddim steps must be in 1..{self.timesteps}, got {steps}")
            ts = sorted({int(round(v)) for v in torch.linspace(0, self.timesteps - 1, steps).tolist()}, reverse=True)
        else:
            raise GeneratorError(f"sampler must be 'ancestral' or 'ddim', got {sampler!r}")
        for i, t in enumerate(ts):
            out = self._guided(x, t, y, guidance)
            a_t = ab[t]
            if self.prediction == "v":
                x0 = a_t.sqrt() * x - (1 - a_t).sqrt() * out
                e = (1 - a_t).sqrt() * x + a_t.sqrt() * out
            else:
                e = out
                x0 = (x - (1 - a_t).sqrt() * e) / a_t.sqrt()
            if self.x0_clip is not None:
                x0 = x0.clamp(-self.x0_clip, self.x0_clip)
            if sampler == "ancestral":
                a_prev = ab[t - 1] if t > 0 else torch.ones_like(a_t)
                beta = 1 - a_t / a_prev
                mean = (a_prev.sqrt() * beta / (1 - a_t)) * x0 + ((1 - beta).sqrt() * (1 - a_prev) / (1 - a_t)) * x
                if t > 0:
                    var = beta * (1 - a_prev) / (1 - a_t)
                    x = mean + var.sqrt() * noise.randn(c, s, s)
                else:
                    x = mean
            else:
                # The network's epsilon is kept (not re-derived from the clipped x0): re-deriving
                # moves whatever clipping removed into epsilon and re-injects it at the next
                # step, which turned an under-trained model's samples into noise in our runs.
                a_prev = ab[ts[i + 1]] if i + 1 < len(ts) else torch.ones_like(a_t)
                sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).clamp(min=0).sqrt()
                x = a_prev.sqrt() * x0 + (1 - a_prev - sigma**2).clamp(min=0).sqrt() * e
                if eta > 0 and i + 1 < len(ts):
                    x = x + sigma * noise.randn(c, s, s)
            if progress:
                progress(i + 1, len(ts))
        return x
