"""Aligned reconstructions: every real photograph of a corpus through an autoencoder's encode -> decode.

The output corpus pairs record for record with its input: same group and split (so a photograph
and its reconstruction never fall on both sides of a split), ``label: generated``, family
``<autoencoder>-recon``, and ``meta.aligned_to`` naming the source record (path + sha256).
A reconstruction is stored the way its original was: PNG for a lossless original; for a JPEG
original, JPEG with the original's own quantisation tables and chroma subsampling. Otherwise the
two classes would differ by "has JPEG traces or not", and a detector would learn the codec
instead of the decoder. Resumable: a rerun with ``resume=True`` continues after the last
written record.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from genvis_trust.datasets.corpus import CorpusWriter, read_corpus
from genvis_trust.io import ImageLoadError, load_image, read_bytes, sniff_format

from .tiny_autoencoder import load_autoencoder


def encode_like(image: np.ndarray, original: bytes) -> bytes | None:
    """``image`` as JPEG with ``original``'s quantisation tables and subsampling, when the
    original is a JPEG; ``None`` otherwise (the caller stores it losslessly)."""
    if sniff_format(original) != "JPEG":
        return None
    from PIL import Image, JpegImagePlugin

    with Image.open(io.BytesIO(original)) as src:
        qtables = src.quantization
        sampling = JpegImagePlugin.get_sampling(src)
    buf = io.BytesIO()
    kw = {"subsampling": sampling} if sampling in (0, 1, 2) else {}
    Image.fromarray(image).save(buf, "JPEG", qtables=qtables, **kw)
    return buf.getvalue()


def load_any_autoencoder(name_or_path: str, device: str = "auto"):
    """A bundled tiny autoencoder (``taef2``) or its artifact folder, or a generator artifact of
    the ``autoencoder`` family (e.g. ``klae-photos``): anything with ``reconstruct(image)``,
    ``sha256`` and ``card``."""
    import json

    from .artifact import load_generator, resolve_artifact
    from .base import GeneratorError, list_bundled
    from .tiny_autoencoder import FAMILY, list_autoencoders

    folder = Path(name_or_path)
    tiny = str(name_or_path) in list_autoencoders() or (
        (folder / "config.json").is_file()
        and json.loads((folder / "config.json").read_text(encoding="utf-8")).get("family") == FAMILY
    )
    if tiny or not (str(name_or_path) in list_bundled() or (folder / "config.json").is_file()):
        return load_autoencoder(name_or_path, device=device)  # names the bundled choices when unknown
    lg = load_generator(resolve_artifact(name_or_path), device, info=True)
    if lg.model.family != "autoencoder":
        raise GeneratorError(f"{name_or_path}: is a {lg.model.family} model, not an autoencoder")
    lg.model.sha256, lg.model.card = lg.sha256, lg.card
    return lg.model


def centre_crop(img: np.ndarray, side: int) -> tuple[np.ndarray, list[int]]:
    """At most ``side`` x ``side`` from the centre, top-left on the 8-pixel grid."""
    h, w = img.shape[:2]
    ch, cw = min(h, side), min(w, side)
    y, x = ((h - ch) // 2) // 8 * 8, ((w - cw) // 2) // 8 * 8
    return np.ascontiguousarray(img[y : y + ch, x : x + cw]), [x, y, cw, ch]


def reconstruct_corpus(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    autoencoder: str = "taef2",
    device: str = "auto",
    limit: int | None = None,
    max_side: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    command: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Write ``out``: one reconstruction per real record of the corpus at ``src``.

    ``max_side``: reconstruct only a centre crop of at most this side (offsets on the 8-pixel
    JPEG grid, so a JPEG crop keeps its block alignment); the crop box is recorded in
    ``meta.aligned_to.crop`` as ``[x, y, w, h]``. Returns ``{"written": n, "errors": [...]}``;
    a record that fails to load is an error entry, the rest go on.
    """
    corpus = read_corpus(src)
    ae = load_any_autoencoder(autoencoder, device=device)
    name = Path(str(autoencoder)).name
    records = [r for r in corpus.records if r.get("label") == "real"][:limit]
    card = {
        "about": f"aligned reconstructions: each real photograph of {Path(src).name} through {name}'s encode -> decode",
        "source_corpus": str(src),
        "autoencoder": {"name": name, "weights_sha256": ae.sha256,
                        "origin": ae.card.get("origin") or ae.card.get("command")},
        "command": command,
    }
    errors: list[dict] = []
    with CorpusWriter(out, card=card, resume=resume, overwrite=overwrite) as w:
        for i, rec in enumerate(records):
            if i < w.count:  # resumed: already written
                continue
            path = corpus.file(rec)
            try:
                raw = read_bytes(path)
                img = load_image(raw, name=str(path)).array
            except ImageLoadError as e:
                errors.append({"path": rec["path"], "error": str(e)})
                continue
            meta = dict(rec.get("meta") or {})
            meta["aligned_to"] = {"path": rec["path"], "sha256": rec["sha256"]}
            if max_side is not None and max(img.shape[:2]) > max_side:
                img, meta["aligned_to"]["crop"] = centre_crop(img, max_side)
            rec_img = ae.reconstruct(img)
            w.add(
                rec_img,
                data=encode_like(rec_img, raw),
                label="generated",
                source=f"{name}-recon",
                key=rec.get("key"),
                group=rec.get("group"),
                family=f"{name}-recon",
                checkpoint_sha256=ae.sha256,
                meta=meta,
            )
            if progress:
                progress(i + 1, len(records))
        written = w.count
    return {"written": written, "errors": errors}


__all__ = ["reconstruct_corpus"]
