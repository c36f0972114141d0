"""Draw the README's figures of the real-resolution generators (from the bundled models).

    python scripts/generator_figures.py --out docs/img

- ``ldm-photos-256.png``: 8 samples of the latent diffusion model (256 px, DDIM 50 steps);
- ``inpaint-photos.png``: source crop | mask | inpainted, for 3 seeds;
- ``sr4-photos.png``: a 64 px window of the 256 px input enlarged 4x by bicubic | by the model;
- ``klae-photos.png``: photograph crops | their reconstructions through the KL autoencoder.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

from genvis_trust.generators import load_generator
from genvis_trust.generators.image_to_image import draw_input
from genvis_trust.report.grid import save_grid


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("docs/img"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    s0 = args.seed

    ldm = load_generator("ldm-photos-256", "cpu")
    imgs = ldm.sample(list(range(s0, s0 + 8)), steps=50).numpy()
    save_grid(args.out / "ldm-photos-256.png", list(imgs), ncols=4)

    inp = load_generator("inpaint-photos", "cpu")
    rows = []
    for s in range(s0, s0 + 3):
        out, extra = inp.sample_with_info([s])
        src, _ = draw_input("builtin-photos", s, 256)
        mask = extra[0]["mask"]
        shown = src.copy()
        shown[mask] = (0.5 * shown[mask] + 0.5 * np.array([255, 0, 255])).astype(np.uint8)
        rows += [src, shown, out[0].numpy()]
    save_grid(args.out / "inpaint-photos.png", rows, ncols=3)

    sr = load_generator("sr4-photos", "cpu")
    x, _ = draw_input("builtin-photos", s0 + 1, 256)
    y = sr.transform(torch.from_numpy(x).permute(2, 0, 1)[None].contiguous())[0].numpy()
    win = slice(96, 160)
    bic = cv2.resize(x[win, win], (256, 256), interpolation=cv2.INTER_CUBIC)
    save_grid(args.out / "sr4-photos.png", [bic, y[win.start * 4 : win.stop * 4, win.start * 4 : win.stop * 4]],
              ncols=2)

    ae = load_generator("klae-photos", "cpu")
    crops = [draw_input("builtin-photos", s, 256)[0] for s in range(s0, s0 + 3)]
    recs = [ae.reconstruct(c) for c in crops]
    save_grid(args.out / "klae-photos.png", crops + recs, ncols=3)
    print("\n".join(str(p) for p in sorted(args.out.glob("*-photos*.png"))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
