"""Faces: found offline, each scored by the detector on its own, denser tiles.

**Finding**: OpenCV's LBP frontal-face cascade (``lbpcascade_frontalface_opencv.xml``, the copy
scikit-image ships as ``skimage.data.lbp_frontal_face_cascade_filename()``), run by
scikit-image's cascade (OpenCV 5 wheels no longer carry ``CascadeClassifier`` or the cascade
files). It runs on a grey copy whose long side is at most ``DETECT_SIDE``, windows 1.5 window
steps apart, and keeps detections with at least ``MIN_NEIGHBOURS`` overlapping hits (fewer gave
false faces on the astronaut's flag and badge). About 0.17 CPU-seconds for a 512 px image
(a step of 1 found the same faces at 2.6x the cost). Frontal, upright faces only.

**Scoring**: the face box widened by ``CONTEXT`` is cut into the detector's tiles every half tile
(overlapping; whole images use a non-overlapping grid) and the tile logits are averaged and
calibrated like a whole image. A face whose widened box is smaller than one tile is reported
``too_small`` and not scored: the detector reads native-resolution tiles, and an enlarged face
is outside what it knows. A face *stands out* (``fires``) when its p is at least the threshold
and its logit exceeds the median tile logit of the whole image by ``REGION_MARGIN`` (the
strongest-region rule of :mod:`genvis_trust.regions`, so a swapped face in a real photograph is
not averaged away).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from .regions import MIN_TILES, REGION_MARGIN, THRESHOLD, Region, dense_positions, region_evidence

DETECT_SIDE = 512
MIN_NEIGHBOURS = 5
MIN_FACE = 24  # px at the detection scale (the cascade's window)
CONTEXT = 1.25
MAX_FACES = 16
MAX_TILES_PER_FACE = 64

_CASCADE = None


def _cascade():
    global _CASCADE
    if _CASCADE is None:
        from skimage.data import lbp_frontal_face_cascade_filename

        _CASCADE = _cascade_class()(lbp_frontal_face_cascade_filename())
    return _CASCADE


def _cascade_class():
    """``skimage.feature.Cascade``, imported without ``scipy.linalg`` (~0.13 s of every scan).

    scikit-image's compiled cascade module binds ``skimage.color.rgb2gray`` when it is imported
    (it calls it only for colour input; :func:`find_faces` passes grey), and the module defining
    it imports ``scipy.linalg`` at its top. While the cascade module is imported, the name is
    bound to a stand-in that imports and calls the real function, so the cascade behaves the
    same for any input; ``skimage.color`` is left as it was.
    """
    import sys

    import skimage.color

    if "skimage.feature._cascade" in sys.modules or "skimage.color.colorconv" in sys.modules:
        from skimage.feature import Cascade

        return Cascade

    def rgb2gray(*args, **kwargs):
        from skimage.color.colorconv import rgb2gray as real

        return real(*args, **kwargs)

    skimage.color.rgb2gray = rgb2gray  # skimage.color is a lazy module: a set attribute wins
    try:
        from skimage.feature import Cascade
    finally:
        del skimage.color.rgb2gray  # back to the lazy attribute (the real function)
    return Cascade


def find_faces(image: np.ndarray) -> list[list[int]]:
    """Frontal faces in an RGB image as ``[x, y, w, h]`` boxes in its pixels, largest first."""
    h, w = image.shape[:2]
    f = min(1.0, DETECT_SIDE / max(h, w))
    if min(h, w) * f < MIN_FACE:
        return []
    grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    if f < 1.0:
        grey = cv2.resize(grey, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    found = _cascade().detect_multi_scale(img=grey, scale_factor=1.2, step_ratio=1.5, min_size=(MIN_FACE, MIN_FACE),
                                          max_size=grey.shape[:2], min_neighbor_number=MIN_NEIGHBOURS)
    boxes = [[round(d["c"] / f), round(d["r"] / f), round(d["width"] / f), round(d["height"] / f)] for d in found]
    return sorted(boxes, key=lambda b: -b[2] * b[3])


@dataclass
class Face:
    box: list[int]  # x, y, w, h of the face as found
    crop: list[int]  # x, y, w, h of the area scored (the box widened by CONTEXT, inside the image)
    status: str  # "scored" | "too_small"
    probability: float | None = None
    logit: float | None = None
    tiles: int = 0
    stride: int | None = None
    margin: float | None = None  # logit - the image's median tile logit
    fires: bool = False

    def to_dict(self) -> dict[str, Any]:
        r = lambda v: None if v is None else round(v, 4)  # noqa: E731
        return {"box": self.box, "crop": self.crop, "status": self.status, "probability": r(self.probability),
                "logit": r(self.logit), "tiles": self.tiles, "stride": self.stride, "margin": r(self.margin), "fires": self.fires}


def _widen(box: list[int], h: int, w: int) -> list[int]:
    x, y, bw, bh = box
    cx, cy = x + bw / 2, y + bh / 2
    nw, nh = min(w, round(bw * CONTEXT)), min(h, round(bh * CONTEXT))
    x0 = int(min(max(0, round(cx - nw / 2)), w - nw))
    y0 = int(min(max(0, round(cy - nh / 2)), h - nh))
    return [x0, y0, int(nw), int(nh)]


def score_faces(det, image: np.ndarray, score=None, boxes: list[list[int]] | None = None,
                batch_size: int = 256) -> list[Face]:
    """Find (unless ``boxes`` are given) and score the faces of ``image``; ``score`` is the
    image's own :class:`DetectionScore`, whose tiles give the median a face is compared with.
    ``batch_size``: tiles per forward pass (a scan passes its engine's)."""
    boxes = find_faces(image) if boxes is None else boxes
    if not boxes:
        return []
    h, w = image.shape[:2]
    p = det.patch
    img = det.prepare(image)
    faces, tiles, owner = [], [], []
    for box in boxes[:MAX_FACES]:
        crop = _widen(box, h, w)
        if min(crop[2], crop[3]) < p:
            faces.append(Face(box, crop, "too_small"))
            continue
        stride = max(1, p // 2)
        pos = dense_positions(crop[3], crop[2], p, stride)
        while len(pos) > MAX_TILES_PER_FACE:
            stride = int(stride * 1.25) + 1
            pos = dense_positions(crop[3], crop[2], p, stride)
        x0, y0 = crop[0], crop[1]
        tiles += [img[y0 + y : y0 + y + p, x0 + x : x0 + x + p] for y, x in pos]
        owner += [len(faces)] * len(pos)
        faces.append(Face(box, crop, "scored", tiles=len(pos), stride=stride))
    if tiles:
        z = det.logits(np.stack(tiles), batch_size)
        owner_a = np.array(owner)
        med = None
        if score is not None and score.tile_logits is not None and len(score.tile_logits) >= MIN_TILES:
            med = float(np.median(score.tile_logits))
        for i, face in enumerate(faces):
            if face.status != "scored":
                continue
            zf = float(z[owner_a == i].mean())
            face.logit = zf
            face.probability = float(det.probabilities(np.array([zf]))[0])
            if med is not None:
                face.margin = zf - med
                face.fires = face.probability >= THRESHOLD and face.margin >= REGION_MARGIN
    return faces


def face_evidence(face: Face, n_found: int, index: int) -> dict[str, Any]:
    """One ``face`` evidence entry (one per face found)."""
    x, y, w, h = face.box
    where = f"face {index + 1} of {n_found}, {w}x{h} at ({x}, {y})"
    if face.status == "too_small":
        text = f"{where}: too small to score (the detector reads {face.crop[2]}x{face.crop[3]} < its native tile; not scored)"
    elif face.fires:
        text = (f"{where}: p(generated)={face.probability:.2f} on {face.tiles} overlapping tiles, "
                f"{face.margin:.1f} logits above the image's median tile: the face stands out")
    else:
        extra = f", {face.margin:.1f} logits above the image's median tile" if face.margin is not None else ""
        text = f"{where}: p(generated)={face.probability:.2f} on {face.tiles} overlapping tiles{extra}"
    return {"kind": "face", "strength": "learned", "summary": text,
            "indicates": "edited" if face.fires else "none", "details": face.to_dict()}


def local_evidence(region: Region | None, faces: list, image_p: float, out_of_domain: bool) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """What scan reads of the strongest region and the faces (here, above :mod:`.regions`, so
    that regions need not import faces): evidence entries (``region``, then one ``face`` per face) and the JSON the scan record's
    ``detector`` gains (``region``, ``faces``). Outside the detector's domain nothing fires:
    the tiles are reported but not read as evidence."""
    evidence, extra = [], {}
    if region is not None:
        if out_of_domain:
            region.fires = False
        e = region_evidence(region, image_p)
        if out_of_domain:
            e["summary"] += " (outside the detector's domain: not assessed)"
        evidence.append(e)
        extra["region"] = region.to_dict()
    if faces:
        for i, f in enumerate(faces):
            if out_of_domain:
                f.fires = False
            evidence.append(face_evidence(f, len(faces), i))
        extra["faces"] = [f.to_dict() for f in faces]
    return evidence, extra


__all__ = ["Face", "face_evidence", "find_faces", "local_evidence", "score_faces"]
