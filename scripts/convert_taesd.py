#!/usr/bin/env python3
"""Convert a published TAESD encoder/decoder pair (madebyollin/taesd, MIT) to a bundled artifact.

    python scripts/convert_taesd.py --repo-dir DIR --name taef2 \
        --out genvis_trust/assets/autoencoders/taef2

DIR is a checkout (or a bare git dir: ``--git-dir``) of https://github.com/madebyollin/taesd.
The .pth files are read with ``torch.load(weights_only=True)`` (tensors only, no code), checked
against the toolkit's own TinyAutoencoder, then written as safetensors with a card naming the
repository, commit, paths, sha256 of the originals and the licence. The licence text is copied
beside the weights.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
import sys
from pathlib import Path

import torch

from genvis_trust.generators.tiny_autoencoder import TinyAutoencoder, save_autoencoder

VARIANTS = {  # file prefix -> (latent channels, global branch, what it imitates)
    "taesd": (4, False, "Stable Diffusion 1.x/2.x VAE"),
    "taesdxl": (4, False, "SDXL VAE"),
    "taesd3": (16, False, "SD3 VAE"),
    "taef1": (16, False, "FLUX.1 VAE"),
    "taef2": (32, True, "FLUX.2 VAE"),
}


def read_blob(args, rel: str) -> bytes:
    if args.git_dir:
        return subprocess.run(["git", "--git-dir", args.git_dir, "show", f"{args.commit}:{rel}"], check=True, capture_output=True).stdout
    return (Path(args.repo_dir) / rel).read_bytes()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--repo-dir", help="a work tree of madebyollin/taesd")
    src.add_argument("--git-dir", help="a bare git dir of madebyollin/taesd")
    ap.add_argument("--commit", default="HEAD")
    ap.add_argument("--name", default="taef2", choices=sorted(VARIANTS))
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    latent, gb, imitates = VARIANTS[args.name]
    commit = args.commit
    if args.git_dir:
        commit = subprocess.run(["git", "--git-dir", args.git_dir, "rev-parse", args.commit], check=True, capture_output=True, text=True).stdout.strip()
    ae = TinyAutoencoder(latent_channels=latent, global_branch=gb)
    origins = {}
    for part in ("encoder", "decoder"):
        rel = f"{args.name}_{part}.pth"
        raw = read_blob(args, rel)
        state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
        getattr(ae, part).load_state_dict(state, strict=True)
        origins[part] = {"path": rel, "sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw)}
    licence = read_blob(args, "LICENSE").decode("utf-8")
    out = Path(args.out)
    card = {
        "name": args.name,
        "description": f"Tiny autoencoder (TAESD layout) distilled from the {imitates}; 8x down-sampling, {latent} latent channels",
        "origin": {"repository": "madebyollin/taesd", "commit": commit, "files": origins},
        "licence": "MIT (Copyright (c) 2023 Ollin Boer Bohan); full text in LICENSE beside this card",
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "use": "aligned reconstructions of real photographs: the 'generated' class differs from the real one only by this decoder's traces",
    }
    save_autoencoder(ae, out, card=card)
    (out / "LICENSE").write_text(licence, encoding="utf-8")
    print(f"wrote {out} ({sum(p.numel() for p in ae.parameters()):,} parameters) from madebyollin/taesd@{commit[:12]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
