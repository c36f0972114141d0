"""Watermark robustness: stamp, attack with the shared perturbations, read back.

Per attack (``genvis_trust.datasets.perturbations.STANDARD_ROBUSTNESS_SUITE`` by default:
JPEG 90/75/50, resize 0.75/0.5 and back, centre crop 90%/70% resized back, blur, noise,
brightness, contrast, PNG -> JPEG 4:2:0):

- ``bit_acc``: mean fraction of payload bits read correctly;
- ``payload_ok``: fraction of images whose payload decodes to the right record id (what
  ``verify`` relies on; false-accept rate as stated by the codec);
- ``false_payload``: clean (never stamped) images, attacked the same way, that decode to
  *any* valid payload;
- ``tpr@fpr``: detection rate when the score is the number of bits matching the expected
  payload and the threshold is set on **unwatermarked** images so that at most ``fpr`` of
  them pass. The null scores are the clean images' bits compared with 200 random valid
  payloads each (so 12 clean images give 2,400 null scores); the threshold ``k`` used and
  the null rate measured at it are reported.

Stamp quality: PSNR and SSIM (scikit-image) of the stamped image against the original.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from genvis_trust.atomic import atomic_path, atomic_write_text

from .payload import get_codec
from .watermarks import get_watermark

NULL_PER_IMAGE = 200


def load_eval_images(data: str, n: int = 12, size: int = 512, seed: int = 0) -> list[np.ndarray]:
    from genvis_trust.datasets import get_source

    src = get_source(data, patch=size, n=n, seed=seed)
    imgs = [s.image for s in src]
    imgs = [im for im in imgs if min(im.shape[:2]) >= size]
    if not imgs:
        raise ValueError(f"{data}: no image of at least {size}x{size}")
    return imgs[:n]


def _attacks(spec: str):
    from genvis_trust.datasets.perturbations import STANDARD_ROBUSTNESS_SUITE, parse_perturbation

    if spec == "standard":
        return dict(STANDARD_ROBUSTNESS_SUITE)
    return {s.strip(): parse_perturbation(s.strip()) for s in spec.split(",") if s.strip()}


def evaluate_backend(
    backend: str,
    images: list[np.ndarray],
    *,
    attacks: str = "standard",
    target_fpr: float = 0.01,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from genvis_trust.datasets.perturbations import apply

    be = get_watermark(backend)
    codec = get_codec(be.n_bits)
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, codec.short_id_modulus, size=len(images))
    payloads = np.stack([codec.encode(int(i)) for i in ids])
    t0 = time.perf_counter()
    marked = [be.embed(im, b) for im, b in zip(images, payloads, strict=True)]
    t_embed = (time.perf_counter() - t0) / len(images)
    psnr = [peak_signal_noise_ratio(a, b, data_range=255) for a, b in zip(images, marked, strict=True)]
    ssim = [structural_similarity(a, b, channel_axis=2, data_range=255) for a, b in zip(images, marked, strict=True)]
    null_ids = rng.integers(0, codec.short_id_modulus, size=NULL_PER_IMAGE)
    null_codes = np.stack([codec.encode(int(i)) for i in null_ids])  # (M, n)

    rows = []
    t_read = 0.0
    for name, p in _attacks(attacks).items():
        att_m = [apply(im, p, seed=seed, index=i) for i, im in enumerate(marked)]
        att_c = [apply(im, p, seed=seed, index=i) for i, im in enumerate(images)]
        ok = [i for i, im in enumerate(att_m) if min(im.shape[:2]) >= be.min_side]
        if len(ok) < len(att_m):
            rows.append({"attack": name, "error": f"output below {be.min_side}px for {len(att_m) - len(ok)} images"})
            continue
        t0 = time.perf_counter()
        rm = be.read_bits_batch(att_m)
        rc = be.read_bits_batch(att_c)
        t_read += time.perf_counter() - t0
        bits_m = np.stack([r.bits for r in rm])
        bits_c = np.stack([r.bits for r in rc])
        match = (bits_m == payloads).sum(1)
        dec = [codec.decode(b) for b in bits_m]
        payload_ok = np.mean([d.valid and d.record_id == int(i) for d, i in zip(dec, ids, strict=True)])
        false_payload = int(sum(codec.decode(b).valid for b in bits_c))
        null = (bits_c[:, None, :] == null_codes[None, :, :]).sum(-1).ravel()
        # smallest k with P_null(score >= k) <= target_fpr
        k = next(k for k in range(codec.n_bits + 2) if np.mean(null >= k) <= target_fpr)
        rows.append({
            "attack": name,
            "spec": str(p),
            "bit_acc": round(float(match.mean() / codec.n_bits), 4),
            "payload_ok": round(float(payload_ok), 4),
            "false_payload": false_payload,
            "threshold_bits": int(k),
            "null_fpr_at_threshold": round(float(np.mean(null >= k)), 5),
            "tpr_at_fpr": round(float(np.mean(match >= k)), 4),
        })
        if log:
            r = rows[-1]
            log(f"{backend} {name:18s} bit_acc {r['bit_acc']:.3f} payload_ok {r['payload_ok']:.2f} tpr {r['tpr_at_fpr']:.2f}")
    n_reads = 2 * len(images) * max(1, len([r for r in rows if "error" not in r]))
    return {
        "backend": backend,
        "n_images": len(images),
        "image_shape": list(images[0].shape),
        "payload_bits": codec.n_bits,
        "target_fpr": target_fpr,
        "null_scores_per_attack": len(images) * NULL_PER_IMAGE,
        "psnr_db_mean": round(float(np.mean(psnr)), 2),
        "psnr_db_min": round(float(np.min(psnr)), 2),
        "ssim_mean": round(float(np.mean(ssim)), 4),
        "embed_s_per_image": round(t_embed, 4),
        "read_s_per_image": round(t_read / n_reads, 4),
        "attacks": rows,
    }


def markdown_table(result: dict) -> str:
    head = (f"backend `{result['backend']}`, {result['n_images']} images {result['image_shape'][1]}x{result['image_shape'][0]}, "
            f"{result['payload_bits']}-bit payload, PSNR {result['psnr_db_mean']} dB (min {result['psnr_db_min']}), "
            f"SSIM {result['ssim_mean']}; TPR at FPR {result['target_fpr']} on "
            f"{result['null_scores_per_attack']} null scores per attack\n\n")
    lines = ["| attack | bit acc | payload ok | false payload (clean) | threshold k | null FPR at k | TPR@FPR |",
             "|---|---|---|---|---|---|---|"]
    for r in result["attacks"]:
        if "error" in r:
            lines.append(f"| {r['attack']} | {r['error']} | | | | | |")
            continue
        lines.append(f"| {r['attack']} | {r['bit_acc']:.3f} | {r['payload_ok']:.2f} | {r['false_payload']} | "
                     f"{r['threshold_bits']} | {r['null_fpr_at_threshold']:.4f} | {r['tpr_at_fpr']:.2f} |")
    return head + "\n".join(lines) + "\n"


def write_outputs(result: dict, out_dir: str | Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    stem = f"robustness_{result['backend']}"
    pj, pm, pp = d / f"{stem}.json", d / f"{stem}.md", d / f"{stem}.png"
    atomic_write_text(pj, json.dumps(result, indent=2) + "\n")
    atomic_write_text(pm, markdown_table(result))
    rows = [r for r in result["attacks"] if "error" not in r]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6, len(rows) * 0.7), 3.5))
    ax.bar(x - 0.27, [r["bit_acc"] for r in rows], 0.27, label="bit accuracy")
    ax.bar(x, [r["payload_ok"] for r in rows], 0.27, label="payload recovered")
    ax.bar(x + 0.27, [r["tpr_at_fpr"] for r in rows], 0.27, label=f"TPR @ FPR {result['target_fpr']}")
    ax.set_xticks(x, [r["attack"] for r in rows], rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_title(f"{result['backend']}: robustness ({result['n_images']} images, PSNR {result['psnr_db_mean']} dB)")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    with atomic_path(pp) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return [pj, pm, pp]
