"""Fidelity of the CLIP/ViT-based published families against their reference code.

For each family: the reference repository's own code (checked out at a recorded commit, in a
scratch folder outside this project, imported from there, never copied) builds the reference
model, whose weights are then replaced by random ones from a fixed seed (:func:`seeded_state`,
scaled so that different images get different logits, which the reference's own initialisation
of the untrained heads barely does); its state is saved in the published key layout
(the files a user downloads); the toolkit loads those files through the family's
``checkpoint_filter_fn``; both score the same image files, the reference through its own test
transform and forward, ours through ``prepare_input`` and ``forward``. Recorded: the largest
|logit difference| over the images (target <= 1e-4 in fp32).

One adapter per family (``reference_<family>``): build the reference model, write the published
files, return a function scoring image paths the reference way. Run:

    PYTHONPATH=$PWD python benchmarks/published_fidelity_clip.py --refs /tmp/pubclip-scratch \
        --families univfd rine commfor bfree --out benchmarks/results/published-fidelity-clip

The scratch environment (a venv with this project's interpreter's packages visible) needs what
the reference code imports: ``open-clip-torch``, ``timm`` (ours too), ``clip-anytorch`` (the PyPI
build of openai/CLIP, which RINE imports as ``clip``), ``setuptools<81`` (UnivFD's ``clip.py``
imports ``pkg_resources``), pandas and opencv; Community Forensics' top-level imports of
``wandb``, ``datasets`` and ``torchmetrics`` are stood in for (:func:`_stub_modules`). The
references were checked out at their newest commits (recorded in the results) with
``git clone <fetched mirror> /tmp/pubclip-scratch/<repo>``.

``--tiny`` builds each family at a reduced size of the same architecture and writes the test
fixtures (``tests/fixtures/published/<family>.json``: reference logits on generated images, with
the weights drawn by :func:`seeded_state`, which the tests draw again).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from genvis_trust.detectors.registry import get_family

REPOS = {
    "univfd": "UniversalFakeDetect",
    "rine": "rine",
    "commfor": "Community-Forensics",
    "commfor-224": "Community-Forensics",
    "bfree": "B-Free",
}
FAMILY = {"commfor-224": "commfor"}  # a measured variant -> the registered family that scores it

# reduced configurations of the same architectures, for the test fixtures
TINY = {
    "univfd": {"image_size": 224, "patch_size": 32, "width": 64, "layers": 2, "heads": 1, "output_dim": 16},
    "rine": {"image_size": 224, "patch_size": 32, "width": 64, "layers": 2, "heads": 1, "output_dim": 16, "nproj": 2, "proj_dim": 16},
    "commfor": {"img_size": 384, "patch_size": 16, "embed_dim": 64, "depth": 2, "num_heads": 1},
    "commfor-224": {"img_size": 224, "patch_size": 16, "embed_dim": 64, "depth": 2, "num_heads": 1},
    "bfree": {"img_size": 504, "patch_size": 28, "embed_dim": 64, "depth": 2, "num_heads": 1},
}


def seeded_state(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """Weights drawn in sorted key order from one CPU generator: 1-D ``*weight`` (norms) near 1,
    other 1-D tensors near 0, the rest scaled by 1/sqrt(fan-in). Reproducible from the shapes."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k in sorted(shapes):
        shape = tuple(shapes[k])
        x = torch.randn(shape, generator=g, dtype=torch.float32)
        if len(shape) == 1:
            x = 1 + 0.1 * x if k.endswith("weight") else 0.1 * x
        else:
            x = x / max(1, int(np.prod(shape[1:]))) ** 0.5
        out[k] = x
    return out


def state_sha256(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].contiguous().numpy().tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------ test images


def make_images(folder: Path, *, large: bool = True, jpeg: bool = True) -> list[Path]:
    """Odd sizes, smaller than 224, around the crop sizes, ~1500 px, grayscale, RGBA, JPEG and PNG."""
    rng = np.random.default_rng(20)
    specs = [("odd_333x251.png", 251, 333, "RGB"), ("small_100x80.png", 80, 100, "RGB"),
             ("tiny_37x45.jpg", 45, 37, "RGB"), ("exact_224.png", 224, 224, "RGB"),
             ("odd_225x227.jpg", 227, 225, "RGB"), ("gray_400x300.jpg", 300, 400, "L"),
             ("rgba_390x500.png", 500, 390, "RGBA"), ("mid_640x480.jpg", 480, 640, "RGB"),
             ("wide_1000x300.png", 300, 1000, "RGB")]
    if large:
        specs.append(("large_1500x1100.jpg", 1100, 1500, "RGB"))
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, h, w, mode in specs:
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([(xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)), ((xx + yy) * 3) % 256], -1)
        img = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        pil = Image.fromarray(img)
        if mode == "L":
            pil = pil.convert("L")
        elif mode == "RGBA":
            pil = pil.convert("RGBA")
        if not jpeg:  # lossless only: the test fixtures must not depend on the JPEG codec's build
            name = name.replace(".jpg", ".png")
        p = folder / name
        pil.save(p, quality=90) if name.endswith(".jpg") else pil.save(p)
        paths.append(p)
    return paths


def decoded(path: Path) -> np.ndarray:
    """What the reference code decodes (``Image.open(p).convert('RGB')``), for our side."""
    return np.asarray(Image.open(path).convert("RGB"))


@contextlib.contextmanager
def reference_on_path(root: Path, *modules_to_forget: str):
    """Import a reference repository's modules from its checkout, then forget them."""
    sys.path.insert(0, str(root))
    try:
        yield
    finally:
        sys.path.remove(str(root))
        for m in list(sys.modules):
            if m.split(".")[0] in modules_to_forget:
                del sys.modules[m]


# ------------------------------------------------------------------ published files


def published_files(family: str, state: dict[str, torch.Tensor], work: Path) -> dict:
    """Write the files a user of ``family`` downloads, from the reference model's whole state (its
    own key names): the checkpoint, and the CLIP tower as open_clip's safetensors where the
    published checkpoint holds only heads. Returns ``{"checkpoint": path, "env": {...}}``."""
    from safetensors.torch import save_file

    work.mkdir(parents=True, exist_ok=True)
    if family in ("univfd", "rine"):
        tower = "model." if family == "univfd" else "clip."
        clip = {k[len(tower):]: v.contiguous() for k, v in state.items() if k.startswith(tower)}
        save_file(clip, str(work / "clip.safetensors"))
        if family == "univfd":  # fc_weights.pth: the head's own state dict
            ckpt, name = {"weight": state["fc.weight"], "bias": state["fc.bias"]}, "fc_weights.pth"
        else:  # model_2class_trainable.pth: everything but CLIP
            ckpt, name = {k: v for k, v in state.items() if not k.startswith(tower)}, "model_2class_trainable.pth"
        torch.save(ckpt, work / name)
        return {"checkpoint": work / name, "env": {"GENVIS_TRUST_CLIP_WEIGHTS": str(work / "clip.safetensors")}}
    if family in ("commfor", "commfor-224"):  # the Dropbox checkpoints: torch.save({'model': state_dict, ...})
        torch.save({"model": state, "epoch": 0}, work / "commfor.pt")
        return {"checkpoint": work / "commfor.pt"}
    if family == "bfree":  # model_epoch_best.pth: {'model': <timm ViT state dict>}
        torch.save({"model": state}, work / "model_epoch_best.pth")
        return {"checkpoint": work / "model_epoch_best.pth"}
    raise KeyError(family)


# ------------------------------------------------------------------ adapters


def _random_openai_clip(clip_model_module, cfg: dict | None, seed: int):
    """OpenAI CLIP (the reference's ``model.CLIP``) with a random image tower; a 1-layer text
    tower (unused by the detectors) keeps the build small."""
    cfg = cfg or {"image_size": 224, "patch_size": 14, "width": 1024, "layers": 24, "output_dim": 768}
    torch.manual_seed(seed)
    model = clip_model_module.CLIP(
        embed_dim=cfg["output_dim"], image_resolution=cfg["image_size"], vision_layers=cfg["layers"],
        vision_width=cfg["width"], vision_patch_size=cfg["patch_size"], context_length=77, vocab_size=49408,
        transformer_width=64, transformer_heads=1, transformer_layers=1)
    return model.float().eval()


def reference_univfd(repo: Path, work: Path, tiny: bool, seed: int):
    """UnivFD: ``models.get_model('CLIP:ViT-L/14')`` with ``clip.load`` giving a random CLIP;
    the head saved as ``fc_weights.pth`` (the published file), the CLIP state as open_clip's
    safetensors; scored by ``validate.RealFakeDataset``'s transform and ``model(x)``."""
    with reference_on_path(repo, "models", "validate", "dataset_paths"):
        import models.clip.clip as ref_clip
        import models.clip.model as ref_model
        import validate

        cfg = TINY["univfd"] if tiny else None
        ref_clip.load = lambda name, device="cpu", **kw: (_random_openai_clip(ref_model, cfg, seed), None)
        if tiny:  # the head's input width follows the reduced tower
            import models.clip_models as cm

            cm.CHANNELS = {**cm.CHANNELS, "ViT-L/14": cfg["output_dim"]}
        model = validate.get_model("CLIP:ViT-L/14").eval()
        model.load_state_dict(seeded_state({k: v.shape for k, v in model.state_dict().items()}, seed))
        state = model.state_dict()
        files = published_files("univfd", state, work)

        def score(paths: list[Path]) -> list[float]:
            data = work / "data"
            for sub in ("0_real", "1_fake"):
                (data / sub).mkdir(parents=True, exist_ok=True)
                for p in paths:
                    target = data / sub / p.name
                    if not target.exists():
                        target.symlink_to(p.resolve())
            ds = validate.RealFakeDataset(str(data / "0_real"), str(data / "1_fake"), "ours", None, "CLIP:ViT-L/14")
            by_name = {Path(f).name: i for i, f in enumerate(ds.total_list[: len(paths)])}
            with torch.no_grad():
                return [float(model(ds[by_name[p.name]][0][None])[0, 0]) for p in paths]

    return files, state, score


def reference_rine(repo: Path, work: Path, tiny: bool, seed: int):
    """RINE: ``src.models.Model`` (hooks on every block's ``ln_2``) on OpenAI's ``clip`` package
    (``clip-anytorch``, the PyPI build of openai/CLIP) with ``clip.load`` giving a random CLIP;
    the trainable part saved as ``get_our_trained_model`` reads it (``model_*_trainable.pth``);
    scored by ``get_transforms()[1]`` (the evaluation transform) and ``model(x)[0]``."""
    import clip
    import clip.model as ref_model

    cfg = TINY["rine"] if tiny else None
    clip.load = lambda name, device="cpu", **kw: (_random_openai_clip(ref_model, cfg, seed), None)
    with reference_on_path(repo, "src"):
        from src.models import Model
        from src.utils import get_transforms

        width = cfg["width"] if tiny else 1024
        nproj, proj_dim = (cfg["nproj"], cfg["proj_dim"]) if tiny else (4, 128)  # the published 2-class setting
        torch.manual_seed(seed)
        model = Model(backbone=("ViT-L/14", width), nproj=nproj, proj_dim=proj_dim, device="cpu").eval()
        model.load_state_dict(seeded_state({k: v.shape for k, v in model.state_dict().items()}, seed))
        state = model.state_dict()
        files = published_files("rine", state, work)
        transform = get_transforms()[1]

        def score(paths: list[Path]) -> list[float]:
            with torch.no_grad():
                return [float(model(transform(Image.open(p).convert("RGB"))[None])[0][0, 0]) for p in paths]

    return files, state, score


def _stub_modules(*names: str) -> None:
    """Modules a reference file imports at the top but its test transform and model never use
    (experiment logging, metrics, dataset streaming), stood in for so the scratch environment
    need not install them."""
    import types

    for n in names:
        sys.modules.setdefault(n, types.ModuleType(n))


def _patched_timm_create(tiny_cfg: dict | None):
    """``timm.create_model`` without the hub download (``pretrained=False``); at the reduced size, a
    timm ``VisionTransformer`` of that size in place of the named one."""
    import timm
    from timm.models.vision_transformer import VisionTransformer

    real = timm.create_model

    def create(name, pretrained=False, **kw):
        if tiny_cfg is None:
            return real(name, pretrained=False, **kw)
        arch = {k: v for k, v in tiny_cfg.items() if k in ("img_size", "patch_size", "embed_dim", "depth", "num_heads")}
        if "reg4_dinov2" in name:  # the DINOv2-with-registers flavour of timm's ViT
            arch.update(reg_tokens=4, no_embed_class=True, init_values=1e-5, img_size=518)
        return VisionTransformer(**arch, **kw)

    return create


def reference_commfor(repo: Path, work: Path, tiny: bool, seed: int, size: int = 384):
    """Community Forensics: ``models.ViTClassifier(input_size=384)`` (or 224; timm built without
    the hub download); saved as the Dropbox checkpoints are (``torch.save({'model': state_dict})``);
    scored by ``dataloader.get_transform(mode='test')`` and ``model(x)``."""
    import timm

    cfg = TINY["commfor" if size == 384 else f"commfor-{size}"] if tiny else None
    real_create = timm.create_model
    timm.create_model = _patched_timm_create(cfg)
    _stub_modules("wandb", "datasets", "torchmetrics", "torchmetrics.classification")
    try:
        with reference_on_path(repo, "models", "dataloader", "custom_transforms", "utils", "custom_sampler"):
            import dataloader
            import models

            torch.manual_seed(seed)
            model = models.ViTClassifier(model_size="small", input_size=size, patch_size=16, device="cpu")
            if tiny:  # the reference's head is 384 wide (ViT-S); at the reduced width, that width
                model.vit.head = torch.nn.Linear(cfg["embed_dim"], 1)
            model.load_state_dict(seeded_state({k: v.shape for k, v in model.state_dict().items()}, seed))
            model.eval()
            state = model.state_dict()
            files = published_files("commfor", state, work)
            transform = dataloader.get_transform(argparse.Namespace(input_size=size), mode="test")
    finally:
        timm.create_model = real_create

    def score(paths: list[Path]) -> list[float]:
        with torch.no_grad():
            return [float(model(transform(Image.open(p).convert("RGB"))[None])[0, 0]) for p in paths]

    return files, state, score


def reference_bfree(repo: Path, work: Path, tiny: bool, seed: int):
    """B-Free: ``networks.get_network('timm_c5i504_vit_base_patch14_reg4_dinov2.lvd142m')`` (the
    published ``config.yaml``'s arch; timm built without the hub download), saved as published
    (``{'model': <timm state dict>}``, which ``networks.load_weights`` reads back into the
    reference); scored by ``Compose(get_list_norm('resnet'))`` and ``model(x)`` as ``main_bfree.py``."""
    import timm

    cfg = TINY["bfree"] if tiny else None
    real_create = timm.create_model
    timm.create_model = _patched_timm_create(cfg)
    code = repo / "code"
    try:
        with reference_on_path(code, "networks", "utils"):
            from networks import get_network, load_weights
            from torchvision.transforms import Compose
            from utils.normalization import get_list_norm

            torch.manual_seed(seed)
            model = get_network("timm_c5i504_vit_base_patch14_reg4_dinov2.lvd142m")
            published = {**{f"patch_embed.{k}": v for k, v in model.patch_embed.state_dict().items()},
                         **model.model.state_dict()}  # the layout Wrapper5crops.load_state_dict reads
            published = seeded_state({k: v.shape for k, v in published.items()}, seed)
            files = published_files("bfree", published, work)
            model = load_weights(model, str(files["checkpoint"])).eval()
            with contextlib.redirect_stdout(sys.stderr):
                transform = Compose(get_list_norm("resnet"))
    finally:
        timm.create_model = real_create

    def score(paths: list[Path]) -> list[float]:
        with torch.no_grad():
            return [float(model(transform(Image.open(p).convert("RGB"))[None])[0, 0]) for p in paths]

    return files, published, score


ADAPTERS: dict[str, Callable] = {
    "univfd": reference_univfd, "rine": reference_rine, "commfor": reference_commfor,
    "commfor-224": lambda *a: reference_commfor(*a, size=224), "bfree": reference_bfree}


# ------------------------------------------------------------------ ours


def ours(family: str, files: dict) -> Callable[[list[Path]], list[float]]:
    """The toolkit's side: the published file through ``checkpoint_filter_fn``, our network."""
    import os

    from genvis_trust.detectors.importing import read_state_dict

    old = {k: os.environ.get(k) for k in files.get("env", {})}
    os.environ.update(files.get("env", {}))
    try:
        state, config = get_family(family).checkpoint_filter_fn(read_state_dict(files["checkpoint"]))
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    config = {k: v for k, v in config.items() if k != "patch"}
    net = get_family(family).cls(**config).eval()
    net.load_state_dict(state)

    def score(paths: list[Path]) -> list[float]:
        with torch.no_grad():
            return [float(net(net.prepare_input(decoded(p))[None])[0]) for p in paths]

    score.config = config
    return score


def measure(family: str, refs: Path, tiny: bool, seed: int, images: list[Path], work: Path) -> dict:
    repo = refs / REPOS[family]
    fam_work = work / family
    fam_work.mkdir(parents=True, exist_ok=True)
    files, state, ref_score = ADAPTERS[family](repo, fam_work, tiny, seed)
    ref = np.array(ref_score(images))
    mine = np.array(ours(FAMILY.get(family, family), files)(images))
    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    return {"reference": ref, "ours": mine, "commit": commit,
            "max_abs_logit_diff": float(np.max(np.abs(ref - mine))),
            "state_shapes": {k: list(v.shape) for k, v in state.items()}, "state_sha256": state_sha256(state)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--refs", type=Path, required=True, help="folder holding the reference checkouts")
    ap.add_argument("--families", nargs="+", default=list(ADAPTERS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tiny", action="store_true", help="reduced-size architectures; write the test fixtures")
    ap.add_argument("--out", type=Path, help="write <out>.json and <out>.md (full-size runs)")
    ap.add_argument("--fixtures", type=Path, default=Path("tests/fixtures/published"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    results = {}
    with tempfile.TemporaryDirectory(prefix="pubclip-") as tmp:
        tmp = Path(tmp)
        images = make_images(tmp / "images", large=not args.tiny, jpeg=not args.tiny)
        for fam in args.families:
            r = measure(fam, args.refs, args.tiny, args.seed, images, tmp / "work")
            print(f"{fam}: max |logit diff| {r['max_abs_logit_diff']:.3g} over {len(images)} images "
                  f"(reference {np.round(r['reference'], 4).tolist()})", flush=True)
            results[fam] = r
            if args.tiny:
                write_fixture(fam, r, images, args)
    if args.out:
        write_results(results, len(images), args, argv)


def write_fixture(fam: str, r: dict, images: list[Path], args) -> None:
    args.fixtures.mkdir(parents=True, exist_ok=True)
    fixture = {
        "family": fam, "reference_repository": REPOS[fam], "reference_commit": r["commit"],
        "config": TINY[fam], "seed": args.seed,
        "state_shapes": r["state_shapes"], "state_sha256": r["state_sha256"],
        "images": {p.name: hashlib.sha256(decoded(p).tobytes()).hexdigest() for p in images},
        "reference_logits": [round(float(v), 7) for v in r["reference"]],
        "note": "made by benchmarks/published_fidelity_clip.py --tiny: the reference code at the reduced "
                "configuration, weights from seeded_state(state_shapes, seed) (the reference model's own keys), "
                "written by published_files; images from make_images(jpeg=False) (sha256 of the decoded RGB)",
    }
    (args.fixtures / f"{fam}.json").write_text(json.dumps(fixture, indent=1) + "\n")


def write_results(results: dict, n_images: int, args, argv) -> None:
    cmd = "python benchmarks/published_fidelity_clip.py " + " ".join(argv or sys.argv[1:])
    machine = f"{platform.machine()} {platform.processor() or ''} CPU, torch {torch.__version__}, 1 thread".replace("  ", " ")
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    out = {"families": {f: {"max_abs_logit_diff": r["max_abs_logit_diff"],
                            "reference_repository": f"https://github.com/{REFS_GH[f]}",
                            "reference_commit": r["commit"], "images": n_images, "command": cmd,
                            "date": date, "machine": machine,
                            "reference_logit_spread": float(np.ptp(r["reference"]))} for f, r in results.items()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    path = args.out.with_suffix(".json")
    if path.exists():  # one family at a time keeps the others' rows
        old = json.loads(path.read_text())["families"]
        out["families"] = {**old, **out["families"]}
    path.write_text(json.dumps(out, indent=1) + "\n")
    # ... and into the joined file of every published family (with the package's copy of it)
    from benchmarks.published_fidelity import RESULTS
    from benchmarks.published_fidelity import write_results as write_joined

    md = f"benchmarks/results/{path.with_suffix('.md').name}"  # where each family's details are
    write_joined(RESULTS, {f: {**r, "results": md} for f, r in out["families"].items()})
    lines = ["# Published families (CLIP / ViT): fidelity against the reference code", "",
             "Largest |logit difference| between the reference repository's own code (its test transform and "
             "forward) and the toolkit's family (`prepare_input` + `forward`, loaded through "
             "`checkpoint_filter_fn` from files in the published layout), fp32 on CPU, random weights from "
             "a fixed seed (the published weights are out of reach here), on the same image files: odd "
             "sizes, smaller than the crop, ~1500 px, grayscale, RGBA, JPEG and PNG. Target <= 1e-4.", "",
             "The spread (max - min) of the reference logits over the images shows the comparison is not "
             "between constants.", "",
             "| family | max abs logit diff | reference logit spread | images | reference | commit | date | command |",
             "|---|---|---|---|---|---|---|---|"]
    commands = list(dict.fromkeys(r["command"] for r in out["families"].values()))
    for f, r in out["families"].items():
        spread = f"{r['reference_logit_spread']:.3g}" if "reference_logit_spread" in r else "-"
        lines.append(f"| {f} | {r['max_abs_logit_diff']:.2e} | {spread} | {r['images']} | {r['reference_repository']} | "
                     f"`{r['reference_commit'][:12]}` | {r['date']} | {commands.index(r['command']) + 1} |")
    lines += ["", "Commands (run from the repository root with `PYTHONPATH=$PWD`, the reference checkouts under "
              "`--refs`, in a scratch environment with the reference code's own dependencies):", ""]
    lines += [f"{i}. `{c}`" for i, c in enumerate(commands, 1)]
    lines += ["", f"Machine: {machine}.", ""]
    args.out.with_suffix(".md").write_text("\n".join(lines))


REFS_GH = {"univfd": "WisconsinAIVision/UniversalFakeDetect", "rine": "mever-team/rine",
           "commfor": "JeongsooP/Community-Forensics", "commfor-224": "JeongsooP/Community-Forensics",
           "bfree": "grip-unina/B-Free"}

if __name__ == "__main__":
    main()
