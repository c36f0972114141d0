"""Fitting a calibrated stack of member detectors: the core that ``scripts/stack_realworld.py``
(the bundled default) and ``genvis-trust detectors stack`` (a user's own refit) share.

**What is fitted.** A logistic regression (balanced classes) on the members' *image-level*
logits, one column per member, then a threshold on the combined logit that keeps the
false-positive rate on the validation photographs at the budget (``fpr``): class 0 is every
validation photograph as stored *and re-shipped* (:data:`REAL_FORMS`: JPEG 90 and 40, long side
512, up-scaled 2x, a 60% crop, a 16:9 letterbox, a PNG re-save), so the budget covers the forms
in which photographs reach a user; class 1 is every generated sample as stored, as JPEG 90 and
at long side 512 (:data:`GENERATED_FORMS`), except those the stack's domain voids (scan reports
no detector evidence for them). The calibration puts p = 0.5 at that threshold.

**Why image level.** Members read images differently: the toolkit's families score
``patch``-sided tiles and average their logits, a published family reads the whole image its
authors' way. One logit per member per image is the only quantity all of them have, and the
stack the user gets must compute exactly the features it was fitted on. For tiled members
both hold at once in the ``stack`` family (:class:`~.stack.StackNet`): it runs every member on
the stack's tiles and combines them per tile, and because the image's logit is the mean of its
tile logits, that is the same linear combination of the members' image-level logits; the
features here are computed through the built stack itself, so the fit sees what ``scan`` will
compute. A member that reads whole images cannot share tiles: when any member does,
:func:`refit_stack` fits a :class:`~.fusion.FusionDetector` instead, which scores each member its
own way (tile members: the mean of their tile logits; whole-image members: their reference
preprocessing) and combines the image logits; its features are computed through the built
fusion itself, as a stack's are.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x0, x1 = rng.normal(0, 1, (200, 2)), rng.normal(2, 1, (200, 2))
>>> w, b, z_t = fit_logistic(x0, x1, fpr=0.05)
>>> round(float(np.mean(x0 @ w + b >= z_t)), 2)
0.05
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .detector import Detector, list_bundled, load_detector

__all__ = [
    "GENERATED_FORMS",
    "HEAD",
    "HEAD_FORMS",
    "REAL_FORMS",
    "StackFit",
    "StackMember",
    "build_fusion",
    "build_stack",
    "fit_logistic",
    "held_out_sensitivity",
    "jpeg",
    "letterbox",
    "long_side",
    "png_resave",
    "refit_stack",
    "resolve_members",
    "threshold_only",
]

HEAD = "upscaled"  # the domain head a stack may carry: inputs voided only as up-scaled


# -- the forms photographs and generated images reach a user in

def long_side(img: np.ndarray, side: int) -> np.ndarray:
    h, w = img.shape[:2]
    if max(h, w) <= side:
        return img
    f = side / max(h, w)
    return cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)


def jpeg(img: np.ndarray, q: int) -> np.ndarray:
    from genvis_trust.datasets.perturbations import create_perturbation

    return create_perturbation("jpeg", quality=q)(img)


def letterbox(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    H = max(h, round(w * 9 / 16))
    W = max(w, round(H * 16 / 9))
    out = np.zeros((H, W, 3), np.uint8)
    y, x = (H - h) // 2, (W - w) // 2
    out[y : y + h, x : x + w] = img
    return out


def png_resave(img: np.ndarray) -> np.ndarray:
    from genvis_trust.io import encode_image, load_image

    return load_image(encode_image(img, "PNG")).array


GENERATED_FORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "orig": lambda im: im, "jpeg90": lambda im: jpeg(im, 90), "resize512": lambda im: long_side(im, 512)}
REAL_FORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    **GENERATED_FORMS,
    "jpeg40": lambda im: jpeg(im, 40),
    "upscale2x": lambda im: cv2.resize(im, (im.shape[1] * 2, im.shape[0] * 2), interpolation=cv2.INTER_CUBIC),
    "crop60": lambda im: im[: max(1, int(im.shape[0] * 0.6)), : max(1, int(im.shape[1] * 0.6))],
    "letterbox16x9": letterbox,
    "png_resave": png_resave,
}
# more up-scaled forms of the validation photographs, only for fitting the up-scaled head
HEAD_FORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "head_upscale1.5x": lambda im: cv2.resize(im, (round(im.shape[1] * 1.5), round(im.shape[0] * 1.5)), interpolation=cv2.INTER_CUBIC),
    "head_upscale2x_linear": lambda im: cv2.resize(im, (im.shape[1] * 2, im.shape[0] * 2), interpolation=cv2.INTER_LINEAR),
    "head_upscale3x_lanczos": lambda im: cv2.resize(im, (im.shape[1] * 3, im.shape[0] * 3), interpolation=cv2.INTER_LANCZOS4),
}


# -- the fit

def fit_logistic(x0: np.ndarray, x1: np.ndarray, fpr: float) -> tuple[np.ndarray, float, float]:
    """Logistic regression (balanced classes) + threshold at ``fpr`` on ``x0``: ``(w, b, z_t)``."""
    from sklearn.linear_model import LogisticRegression

    if not 0.0 < fpr < 1.0:
        raise ValueError(f"the false-positive budget must be between 0 and 1, got {fpr}")
    lr = LogisticRegression(class_weight="balanced", C=1.0, max_iter=1000)
    lr.fit(np.r_[x0, x1], np.r_[np.zeros(len(x0)), np.ones(len(x1))])
    w, b = lr.coef_[0], float(lr.intercept_[0])
    z_t = float(np.quantile(x0 @ w + b, 1.0 - fpr))
    return w, b, z_t


def threshold_only(x0: np.ndarray, col: int, fpr: float) -> tuple[np.ndarray, float, float]:
    """One member alone, only its threshold fitted (no generated image used)."""
    w = np.zeros(x0.shape[1])
    w[col] = 1.0
    return w, 0.0, float(np.quantile(x0[:, col], 1.0 - fpr))


# -- members and the artifact

@dataclass
class StackMember:
    """One network in a stack: where it came from and what it may be used for."""

    name: str
    family: str
    config: dict[str, Any]
    patch: int
    state: dict[str, Any]  # the network's weights
    sha256: str | None  # of the artifact it came from
    licence: str
    commercial_use: bool | None
    source: Any = None  # the published file it was installed from, when it was

    def describe(self) -> dict[str, Any]:
        """The member's entry in a stack's card (``weights_sha256`` as in the bundled default's card)."""
        return {"family": self.family, "weights_sha256": self.sha256, "licence": self.licence,
                "commercial_use": self.commercial_use, **({"source": self.source} if self.source else {})}


def _whole_image(det: Detector) -> bool:
    if hasattr(det, "whole_image"):
        return bool(det.whole_image)
    return getattr(type(det.net), "published", None) is not None or bool(getattr(det.net, "whole_image", False))


def resolve_members(names: Iterable[str], device: str = "cpu", loaded: list[Detector] | None = None
                    ) -> tuple[list[StackMember], list[Detector]]:
    """Members of a tile stack by name (bundled, installed) or folder (``loaded``: those
    detectors, already loaded). A stack named as a member (e.g. the bundled ``default``) brings
    its own members, each with its weights. Returns (members, the detectors)."""
    members: list[StackMember] = []
    dets: list[Detector] = []
    names = list(names)
    for k, spec in enumerate(names):
        det = loaded[k] if loaded is not None else load_detector(spec, device=device)
        if _whole_image(det):
            raise ValueError(
                f"{spec} ({det.family}) reads whole images the way its publication does; the stack family combines members "
                "on shared tiles, so it cannot hold it without changing how that member reads an image: fit a fusion "
                "(detectors stack does when any member reads whole images)")
        dets.append(det)
        licence = det.card.get("licence") or "the toolkit's (Apache-2.0)"
        commercial = det.card.get("commercial_use", True) if "licence" in det.card else True
        if hasattr(det.net, "member_specs"):  # a stack: its members, each a member here
            sub = det.card.get("stacking", {}).get("members") or [f"{m['family']}{i}" for i, m in enumerate(det.net.member_specs)]
            for i, (ms, net) in enumerate(zip(det.net.member_specs, det.net.members, strict=True)):
                members.append(StackMember(f"{spec}/{sub[i] if i < len(sub) else i}", ms["family"], dict(ms["config"]), ms["patch"],
                                           net.state_dict(), det.sha256, licence, commercial))
            continue
        members.append(StackMember(str(spec), det.family, dict(det.net_config), det.patch, det.net.state_dict(), det.sha256,
                                   licence, commercial, det.card.get("source")))
    names_seen = [m.name for m in members]
    if len(set(names_seen)) != len(names_seen):
        raise ValueError(f"a member is named twice: {names_seen}")
    return members, dets


def member_ref(spec: str) -> str:
    """How a fusion records a member: its name when bundled or installed, else its folder's
    absolute path (so that the fusion loads from any working directory)."""
    from .installed import list_installed

    if spec in list_bundled() or spec in list_installed():
        return spec
    return str(Path(spec).resolve())


def fusion_members(names: list[str], dets: list[Detector]) -> list[StackMember]:
    """Members of an image-level fusion: each detector as it is (a stack stays one member)."""
    from .fusion import FusionDetector, member_licence

    out = []
    for spec, det in zip(names, dets, strict=True):
        if isinstance(det, FusionDetector):
            raise ValueError(f"{spec} is itself a fusion: name its members instead")
        licence, commercial = member_licence(det)
        out.append(StackMember(spec, det.family, dict(det.net_config), det.patch, {}, det.sha256, licence, commercial,
                               det.card.get("source")))
    if len({m.name for m in out}) != len(out):
        raise ValueError(f"a member is named twice: {[m.name for m in out]}")
    return out


def build_fusion(members: list[StackMember], dets: list[Detector], weights, bias: float, z_t: float, fpr: float, *,
                 domain: dict | None = None) -> Detector:
    """The image-level fusion of ``dets`` (see :mod:`.fusion`): the fitted combination, p = 0.5
    at the threshold ``z_t`` that keeps ``fpr`` on the validation photographs."""
    from .fusion import FusionDetector

    cal = {"method": "platt", "a": 1.0, "b": -float(z_t), "fpr_budget": fpr, "threshold_logit": float(z_t)}
    return FusionDetector(dets, [m.name for m in members], weights=[float(v) for v in weights], bias=float(bias), calibration=cal,
                          card={"domain": domain} if domain else {})


def build_stack(members: list[StackMember], weights, bias: float, z_t: float, fpr: float, *, domain: dict | None = None,
                max_tiles: int = 64, preprocess: str | None = None, head: tuple | None = None,
                head_fitted_on: str = "validation photographs that look up-scaled (2x bicubic and other re-shipped forms)",
                device: str = "cpu") -> Detector:
    """The ``stack`` detector: the members' networks with their weights, the fitted combination,
    p = 0.5 at the threshold ``z_t`` that keeps ``fpr`` on the validation photographs, and (with
    ``head = (w, b, z)``) the up-scaled head."""
    specs = [{"family": m.family, "config": m.config, "patch": m.patch} for m in members]
    patch = max(m.patch for m in members)
    det = Detector.create("stack", patch=patch, device=device, members=specs, weights=[float(v) for v in weights], bias=float(bias))
    for net, m in zip(det.net.members, members, strict=True):
        net.load_state_dict(m.state)
    det.max_tiles = max_tiles
    det.preprocess = preprocess
    det.card = {"domain": domain} if domain else {}
    det.calibration = {"method": "platt", "a": 1.0, "b": -float(z_t), "fpr_budget": fpr, "threshold_logit": float(z_t)}
    if head is not None:
        hw, hb, hz = head
        det.calibration["heads"] = {HEAD: {"weights": [float(v) for v in hw], "bias": float(hb), "a": 1.0, "b": -float(hz),
                                           "threshold_logit": float(hz), "fpr_budget": fpr, "fitted_on": head_fitted_on}}
    return det


# -- a refit on the user's images

@dataclass
class StackFit:
    detector: Detector
    members: list[StackMember]
    weights: list[float]
    bias: float
    threshold_logit: float
    fpr_budget: float
    counts: dict[str, Any]  # images and inputs per class and form
    in_sample: dict[str, Any]  # FPR / TPR on the images it was fitted on (not held out)
    skipped: list[str] = field(default_factory=list)  # unreadable files, each with why
    head: dict[str, Any] | None = None  # the up-scaled head, when fitted
    sensitivity: dict[str, Any] | None = None  # held-out rates (two or more generated folders), as scan quotes them


def inherited_domain(domain: dict | None) -> dict | None:
    """A member's domain as a new stack declares it: everything but what was measured on the
    member's own calibrated p (``small_threshold`` and the notes quoting its rates), so the new
    detector's small images of the named sizes count at p >= 0.5 until one is fitted for it.

    >>> inherited_domain({"min_side": 128, "small_sizes": [[32, 32]], "small_threshold": 0.56})
    {'min_side': 128, 'small_sizes': [[32, 32]]}
    """
    if not domain:
        return domain
    return {k: v for k, v in domain.items() if k not in ("small_threshold", "small_threshold_note", "small_threshold_command", "small_sizes_note")}


def _void(codes: list[str]) -> bool:
    # as scan treats it: any reason but "small" voids the detector's evidence (scan also voids a
    # small image at a size the card does not name, or below its small-size threshold:
    # detector.score_counts; stacks are fitted on folders of photographs and generated images)
    return any(c != "small" for c in codes)


def _features(det: Detector, image: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """The image-level member logits the stack will compute for ``image`` (its tiles, its
    members), and the image's domain codes."""
    codes = sorted({o["code"] for o in det.domain_check(image)})
    if hasattr(det, "image_member_logits"):  # a fusion: each member its own way
        return det.image_member_logits([image])[0], codes
    tiles = det.tiles(image)[0]
    _, m = det.logits(tiles, members=True)
    return m.mean(0), codes


def _images(folder: Path, max_images: int | None, skipped: list[str], max_pixels: int | None) -> Iterable[tuple[Path, np.ndarray]]:
    from genvis_trust.datasets.folders import iter_image_files
    from genvis_trust.io import ImageLoadError, load_image

    files = iter_image_files(folder)
    if not files:
        raise ValueError(f"{folder}: no image files")
    n = 0
    for f in files:
        if max_images is not None and n >= max_images:
            break
        try:
            img = load_image(f, **({"max_pixels": max_pixels} if max_pixels else {})).array
        except ImageLoadError as e:
            skipped.append(f"{f}: {e}")
            continue
        n += 1
        yield f, img


def refit_stack(
    member_names: list[str],
    real: list[str | os.PathLike],
    generated: list[str | os.PathLike],
    *,
    fpr: float = 0.05,
    free_voided: bool = False,
    upscaled_head: bool = False,
    domain_from: str | None = None,
    max_images: int | None = None,
    max_pixels: int | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> StackFit:
    """Fit a stack of ``member_names`` on the user's validation photographs (``real`` folders,
    class 0, every re-shipped form) and generated samples (``generated`` folders, class 1),
    keeping ``fpr`` false positives on the photographs. ``free_voided``: photographs the domain
    voids do not constrain the threshold (by default they do, the conservative choice).
    ``upscaled_head``: also fit the up-scaled head (inputs the domain voids only as up-scaled:
    photographs in that state, :data:`HEAD_FORMS` included, vs generated samples in that state,
    with its own ``fpr`` budget), as the bundled default has."""
    if domain_from is not None and domain_from not in member_names:
        raise ValueError(f"--domain-from {domain_from!r} is not one of the members {member_names}")
    loaded = [load_detector(spec, device="cpu") for spec in member_names]
    fused = any(_whole_image(d) for d in loaded)  # a member reads whole images: an image-level fusion
    if fused:
        if upscaled_head:
            raise ValueError("--upscaled-head needs a stack of tile members; a member here reads whole images (a fusion has no head)")
        refs = [member_ref(str(spec)) for spec in member_names]
        members, dets = fusion_members(refs, loaded), loaded
    else:
        members, dets = resolve_members(member_names, loaded=loaded)
    dom = dets[member_names.index(domain_from)] if domain_from else dets[0]
    pre = {d.preprocess for d in dets}
    if len(pre) > 1 and not fused:  # a fusion's members each read through their own codec
        raise ValueError(f"the members read images through different codecs ({sorted(map(str, pre))}); a stack has one")

    domain = inherited_domain(dom.card.get("domain"))

    def build(w, b, z_t, head=None, **kw):
        if fused:
            return build_fusion(members, dets, w, b, z_t, fpr, domain=domain)
        return build_stack(members, w, b, z_t, fpr, domain=domain, max_tiles=dom.max_tiles,
                           preprocess=next(iter(pre)), head=head, **kw)

    # built first with placeholder weights: the features are computed by the stack itself
    det = build([1.0] * len(members), 0.0, 0.0)
    skipped: list[str] = []
    x0: list[np.ndarray] = []
    forms0: list[str] = []
    codes0: list[list[str]] = []
    image0: list[int] = []  # which photograph each input is a form of
    real_images = 0
    real_forms = {**REAL_FORMS, **(HEAD_FORMS if upscaled_head else {})}
    for folder in real:
        for _, img in _images(Path(folder), max_images, skipped, max_pixels):
            real_images += 1
            for form, fn in real_forms.items():
                f, codes = _features(det, fn(img))
                x0.append(f)
                forms0.append(form)
                codes0.append(codes)
                image0.append(real_images)
            if progress:
                progress("real", real_images)
    x1: list[np.ndarray] = []
    forms1: list[str] = []
    codes1: list[list[str]] = []
    group1: list[int] = []  # which --generated folder (one generator each) an input comes from
    gen_images = 0
    for gi, folder in enumerate(generated):
        for _, img in _images(Path(folder), max_images, skipped, max_pixels):
            gen_images += 1
            for form, fn in GENERATED_FORMS.items():
                f, codes = _features(det, fn(img))
                x1.append(f)
                forms1.append(form)
                codes1.append(codes)
                group1.append(gi)
            if progress:
                progress("generated", gen_images)
    if real_images < 10 or gen_images < 10:
        raise ValueError(f"too few images to fit a stack: {real_images} photographs and {gen_images} generated (at least 10 each)")
    X0, X1 = np.stack(x0), np.stack(x1)
    V0, V1 = np.array([_void(c) for c in codes0]), np.array([_void(c) for c in codes1])
    H0, H1 = np.array([c == [HEAD] for c in codes0]), np.array([c == [HEAD] for c in codes1])
    F0, F1 = np.array(forms0), np.array(forms1)
    main0 = np.isin(F0, list(REAL_FORMS))  # the head's extra forms feed only the head
    keep0 = main0 & (~V0 if free_voided else True)
    if (~V1).sum() < 10:
        raise ValueError(f"only {(~V1).sum()} generated inputs are inside the members' domain (at least 10 needed)")
    w, b, z_t = fit_logistic(X0[keep0], X1[~V1], fpr)
    head = None
    if upscaled_head:
        if H0.sum() < 10 or H1.sum() < 10:
            raise ValueError(f"too few inputs that look up-scaled for a head: {int(H0.sum())} photographs, {int(H1.sum())} generated "
                             "(at least 10 each; the domain member must declare min_hf_share)")
        head = fit_logistic(X0[H0], X1[H1], fpr)
    final = build(w, b, z_t, head, head_fitted_on="the user's validation photographs that look up-scaled (re-shipped forms)")
    flagged0 = (X0 @ w + b >= z_t) & ~V0
    flagged1 = (X1 @ w + b >= z_t) & ~V1
    if head is not None:
        hw, hb, hz = head
        flagged0 |= H0 & (X0 @ hw + hb >= hz)
        flagged1 |= H1 & (X1 @ hw + hb >= hz)
    in_sample = {
        "what": "on the images the stack was fitted on (in-sample: not an estimate for unseen generators or photographs)",
        "real_fpr": {f: round(float(flagged0[F0 == f].mean()), 4) for f in REAL_FORMS},
        "generated_tpr": {f: round(float(flagged1[F1 == f].mean()), 4) for f in GENERATED_FORMS},
        "real_voided": {f: round(float(V0[F0 == f].mean()), 4) for f in REAL_FORMS},
        "generated_voided": {f: round(float(V1[F1 == f].mean()), 4) for f in GENERATED_FORMS},
    }
    if head is not None:
        in_sample["head"] = {"real_fpr": round(float(flagged0[H0].mean()), 4), "generated_tpr": round(float(flagged1[H1].mean()), 4),
                             "real_inputs": int(H0.sum()), "generated_inputs": int(H1.sum())}
    counts = {"real": {"folders": [str(p) for p in real], "images": real_images, "inputs": len(X0), "forms": list(real_forms),
                       "constraining_threshold": int(keep0.sum())},
              "generated": {"folders": [str(p) for p in generated], "images": gen_images, "inputs": len(X1),
                            "forms": list(GENERATED_FORMS), "fitted": int((~V1).sum())}}
    sens = held_out_sensitivity(X0, F0, V0, H0, np.array(image0), keep0, X1, F1, V1, H1, np.array(group1), fpr, upscaled_head)
    return StackFit(final, members, [float(v) for v in w], float(b), float(z_t), fpr, counts, in_sample, skipped,
                    None if head is None else {"name": HEAD, "weights": [float(v) for v in head[0]], "bias": float(head[1]),
                                               "threshold": float(head[2])}, sens)


def held_out_sensitivity(X0, F0, V0, H0, I0, keep0, X1, F1, V1, H1, G1, fpr: float, upscaled_head: bool) -> dict[str, Any] | None:
    """What a below-threshold score of the refitted stack is worth, measured on data each fit
    did not see, in the shape of the bundled default's card ``sensitivity`` (which ``scan``
    quotes): every ``--generated`` folder (one generator each) held out in turn, and half of the
    photographs (by image, all its forms) held out by a two-fold split; per form, the held-out
    generators' samples flagged (pooled, median and best generator) and the held-out
    photographs flagged. None with fewer than two generated folders."""
    gens = sorted(set(G1.tolist()))
    if len(gens) < 2:
        return None
    half = I0 % 2
    tp: dict[int, dict[str, list[float]]] = {g: {e: [] for e in GENERATED_FORMS} for g in gens}
    fp: dict[str, list[float]] = {e: [] for e in GENERATED_FORMS}
    for g in gens:
        for h in (0, 1):
            tr0, tr1 = keep0 & (half != h), ~V1 & (G1 != g)
            w, b, z_t = fit_logistic(X0[tr0], X1[tr1], fpr)
            head = None
            h0, h1 = H0 & (half != h), H1 & (G1 != g)
            if upscaled_head and h0.sum() >= 10 and h1.sum() >= 10:
                head = fit_logistic(X0[h0], X1[h1], fpr)

            def flagged(X, V, H, head=head, w=w, b=b, z_t=z_t):
                out = (X @ w + b >= z_t) & ~V
                if head is not None:
                    out |= H & (X @ head[0] + head[1] >= head[2])
                return out

            f0, f1 = flagged(X0, V0, H0), flagged(X1, V1, H1)
            for e in GENERATED_FORMS:
                tp[g][e].append(float(f1[(G1 == g) & (F1 == e)].mean()))
                fp[e].append(float(f0[(half == h) & (F0 == e)].mean()))
    out: dict[str, Any] = {
        "what": "share of each held-out --generated folder's samples flagged at the threshold of a stack fitted without it and "
                "without half of the photographs (two-fold by image); real_fpr: the held-out photographs flagged",
        "generators": len(gens), "fpr_budget": fpr}
    for e in GENERATED_FORMS:
        rates = [(float(np.mean(tp[g][e])), int(((G1 == g) & (F1 == e)).sum())) for g in gens]
        n = sum(k for _, k in rates)
        out[e] = {"tpr_pooled": round(sum(v * k for v, k in rates) / max(n, 1), 3),
                  "tpr_median_generator": round(float(np.median([v for v, _ in rates])), 3),
                  "tpr_best_generator": round(max(v for v, _ in rates), 3), "samples": n,
                  "real_fpr": round(float(np.mean(fp[e])), 3)}
    return out
