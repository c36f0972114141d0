"""Generated video corpora: clips from a bundled or trained generator, with a manifest.

- Families with a latent decoder (GAN, VAE): a **latent walk**, clip ``i`` walking from
  the latent of ``image_seed(S, 2i)`` to that of ``image_seed(S, 2i + 1)``
  (:func:`~genvis_trust.generators.interpolate.interpolate`: spherical for seeds), a
  smooth clip.
- The others (diffusion, flow, autoregressive): a **frame sequence**, frame ``j`` of clip
  ``i`` being the sample of ``image_seed(S, i * frames + j)``: every frame is generated, but
  consecutive frames are unrelated (the samplers expose no latent to walk).

Clips are H.264 MP4 (libx264 ``crf``, 4:2:0) written into a corpus (``manifest.jsonl``:
label ``generated``, family, checkpoint sha256, the clip's seeds; ``meta.media`` =
``video/mp4``), so a run resumes and ``datasets verify`` checks it like an image corpus.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from genvis_trust.media.frames import encode_mp4

__all__ = ["clip_frames", "generate_clips_to_corpus"]


def clip_frames(model, i: int, *, seed: int, frames: int, class_id: int | None = None,
                **sampler: Any) -> tuple[list[np.ndarray], str, list[int]]:
    """Frames of clip ``i``: (frames, kind, seeds used)."""
    from genvis_trust.generators.base import image_seed
    from genvis_trust.generators.interpolate import interpolate
    from genvis_trust.generators.sampling import class_for_index, sampler_settings

    if hasattr(model, "decode_latents") and hasattr(model, "latents"):
        seeds = [image_seed(seed, 2 * i), image_seed(seed, 2 * i + 1)]
        cls = class_for_index(model, i, class_id)
        return interpolate(model, seeds=(seeds[0], seeds[1]), frames=frames, class_id=cls), "latent_walk", seeds
    seeds = [image_seed(seed, i * frames + j) for j in range(frames)]
    classes = [class_for_index(model, i, class_id)] * frames if model.num_classes else None
    imgs = model.sample(seeds, classes, **sampler_settings(model, **sampler)).numpy()
    return list(imgs), "frame_sequence", seeds


def generate_clips_to_corpus(
    lg,
    out: str | Path,
    *,
    n: int,
    frames: int = 16,
    fps: float = 8.0,
    crf: int = 18,
    seed: int = 0,
    class_id: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    command: str | None = None,
    on_clip: Callable[[int], None] | None = None,
    **sampler: Any,
) -> dict[str, Any]:
    """Write ``n`` clips of ``frames`` frames from the loaded generator ``lg`` to corpus ``out``."""
    from genvis_trust.datasets import CorpusWriter
    from genvis_trust.generators.base import GeneratorError
    from genvis_trust.generators.sampling import class_for_index, sampler_settings

    if frames < 2:
        raise GeneratorError(f"a clip needs at least 2 frames, got {frames}")
    g = lg.model
    settings = sampler_settings(g, **sampler)
    card = {
        "generator": {"name": lg.name, "path": str(lg.path), "family": g.family, "checkpoint_sha256": lg.sha256,
                      "config": g.config, "trained_by": lg.card.get("command")},
        "media": "video/mp4",
        "video": {"frames": frames, "fps": fps, "codec": "libx264", "crf": crf, "pix_fmt": "yuv420p"},
        "sampler": settings,
        "base_seed": seed,
        "seed_rule": "latent walk: clip i from image_seed(S, 2i) to image_seed(S, 2i+1); "
                     "frame sequence: frame j of clip i is image_seed(S, i*frames + j)",
        "requested": n,
        "class_id": class_id,
        "device": str(g.device),
        "command": command,
    }
    kind = None
    with CorpusWriter(out, card=card, resume=resume, overwrite=overwrite) as w:
        start = w.count
        for i in range(start, n):
            imgs, kind, seeds = clip_frames(g, i, seed=seed, frames=frames, class_id=class_id, **settings)
            data = encode_mp4(imgs, fps=fps, crf=crf)
            w.add(imgs[0], data=data, label="generated", source=f"genvis-trust:{lg.name}",
                  key=f"{lg.name}/{seed}/clip{i}", group=f"{lg.name}/{seed}/clip{i}", family=g.family, seed=seeds[0],
                  class_id=class_for_index(g, i, class_id),
                  checkpoint_sha256=lg.sha256,
                  meta={"media": "video/mp4", "generator": lg.name, "index": i, "base_seed": seed, "kind": kind,
                        "frames": frames, "fps": fps, "crf": crf, "seeds": seeds, "sampler": settings})
            if on_clip is not None:
                on_clip(i)
        written = w.count
    return {"out": str(out), "clips": written, "resumed_from": start, "family": g.family, "kind": kind,
            "frames": frames, "checkpoint_sha256": lg.sha256}
