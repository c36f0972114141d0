"""Fidelity of the published detector families to their reference code: the largest |logit
difference| between the reference repository's own model and preprocessing code and the
toolkit's path (``detectors import`` + the scoring engine, from the image file's bytes), on the
same checkpoint and the same images.

Nothing is fetched here. Each family needs a checkout of its reference repository at a recorded
commit (``--reference-dir FAMILY=PATH``; any packages its code imports on ``--reference-path``).
The reference code runs in a subprocess per family (``sys.path`` starting with the checkout, so
its ``networks``/``models``/``data`` packages are the ones imported), which builds the model with
the repository's own constructor, fills it with seeded random weights in its own key layout
(:func:`genvis_trust.detectors.published.seeded_state_dict`: the published weights are out of
reach here), saves that checkpoint the way the publisher's files are laid out, and scores every
image through the repository's own dataset and transform code. The toolkit then imports the
same file with ``--arch FAMILY`` and scores the same files.

Images are made from the bundled scikit-image photographs: odd and even sizes, small (smaller
than any crop), large (about 1500 px), grayscale, PNG and JPEG.

A family is one small adapter (:class:`Adapter` subclass in ``ADAPTERS``): how to build the
reference model, how its checkpoint is laid out, and how its own code turns a folder of images
into network inputs and logits. Another helper adds a family by adding an adapter and running::

    python benchmarks/published_fidelity.py --reference-dir npr=/tmp/ref/NPR-DeepfakeDetection \\
        --reference-dir safe=/tmp/ref/SAFE --reference-path /tmp/ref/site

Results merge into benchmarks/results/published-fidelity.{json,md} (other families' entries are
kept). ``--fixtures DIR`` also writes the small images and the reference logits the test suite
checks against (tests/fixtures/published).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SEED = 0


# ------------------------------------------------------------------ images


def make_images(out: Path) -> list[dict]:
    """The test images, written to ``out``: ``[{"file", "what", "fixture"}]``. ``fixture``: small
    enough to keep in the test suite."""
    from PIL import Image
    from skimage import data as photos  # the photographs scikit-image ships (builtin-photos)

    astro, chelsea, coffee = (Image.fromarray(f()) for f in (photos.astronaut, photos.chelsea, photos.coffee))
    out.mkdir(parents=True, exist_ok=True)
    specs = [
        # the issue's three photographs' sizes
        ("astronaut_256x256.png", astro.resize((256, 256), Image.BICUBIC), "PNG", "even, 256x256", False),
        ("coffee_512x384.png", coffee.resize((512, 384), Image.BICUBIC), "PNG", "even, 512x384", False),
        ("chelsea_320x240.png", chelsea.resize((320, 240), Image.BICUBIC), "PNG", "even, 320x240", False),
        ("chelsea_451x300.png", chelsea, "PNG", "odd width, native 451x300", False),
        ("coffee_257x193_q90.jpg", coffee.crop((100, 80, 357, 273)), "JPEG", "odd both sides, JPEG q90", False),
        ("coffee_1501x1001_q95.jpg", coffee.resize((1501, 1001), Image.BICUBIC), "JPEG", "large, odd, JPEG q95", False),
        ("astronaut_gray_300x301.png", astro.convert("L").resize((300, 301), Image.BICUBIC), "PNG", "grayscale, odd height", False),
        # small ones: also the test suite's fixtures
        ("coffee_67x45.png", coffee.resize((67, 45), Image.BICUBIC), "PNG", "small, odd both sides", True),
        ("chelsea_gray_48x40.png", chelsea.convert("L").resize((48, 40), Image.BICUBIC), "PNG", "small grayscale", True),
        ("astronaut_80x64_q85.jpg", astro.resize((80, 64), Image.BICUBIC), "JPEG", "small JPEG q85", True),
    ]
    rows = []
    for name, im, fmt, what, fixture in specs:
        kw = {"quality": int(name.split("_q")[1].split(".")[0])} if fmt == "JPEG" else {}
        im.save(out / name, fmt, **kw)
        rows.append({"file": name, "what": what, "fixture": fixture})
    return rows


# ------------------------------------------------------------------ adapters (reference side)


class Adapter:
    """One published family's reference code. Runs only inside the reference subprocess."""

    family: str
    repository: str
    checkpoint_key: str | None = None  # where save_checkpoint puts the state dict

    def build(self):
        """The reference model, built by the reference code (eval mode)."""
        raise NotImplementedError

    def save_checkpoint(self, state: dict, path: Path) -> None:
        """``state`` saved the way the publisher's files are laid out."""
        import torch

        torch.save(state, path)

    def logits(self, model, folder: Path) -> dict[str, float]:
        """{file name: logit} for every image in ``folder/0_real`` through the reference code's
        own dataset/transform and model (one image per forward pass, as its single-image setting)."""
        raise NotImplementedError


@contextlib.contextmanager
def _argv(args: list[str]):
    old = sys.argv
    sys.argv = ["reference", *args]
    try:
        yield
    finally:
        sys.argv = old


class NPRAdapter(Adapter):
    family = "npr"
    repository = "https://github.com/chuangchuangtan/NPR-DeepfakeDetection"

    def build(self):
        from networks.resnet import resnet50

        return resnet50(num_classes=1).eval()  # test.py's model

    def logits(self, model, folder):
        import torch
        from data.datasets import dataset_folder
        from options.test_options import TestOptions

        # test.py's single-image setting (README: no_resize and no_crop, batch size 1)
        with _argv(["--gpu_ids", "-1", "--no_resize", "--no_crop", "--batch_size", "1"]):
            opt = TestOptions().parse(print_options=False)
        opt.no_resize, opt.no_crop = True, True
        dset = dataset_folder(opt, str(folder))
        out = {}
        with torch.no_grad():
            for i, (path, label) in enumerate(dset.samples):
                if label != 0:
                    continue
                x = dset[i][0][None]
                # the README's snippet for odd sizes, which it says to add at the top of forward
                n, c, w, h = x.shape
                if w % 2 == 1:
                    x = x[:, :, :-1, :]
                if h % 2 == 1:
                    x = x[:, :, :, :-1]
                out[Path(path).name] = float(model(x).flatten()[0])
        return out


class CNNDetectionAdapter(Adapter):
    family = "cnndetection"
    repository = "https://github.com/PeterWang512/CNNDetection"
    checkpoint_key = "model"

    def build(self):
        from networks.resnet import resnet50

        return resnet50(num_classes=1).eval()  # demo.py's / eval.py's model

    def save_checkpoint(self, state, path):
        import torch

        torch.save({"model": state, "total_steps": 0}, path)  # the layout demo.py reads: state_dict['model']

    def logits(self, model, folder):
        import torch
        from data.datasets import dataset_folder
        from options.test_options import TestOptions

        # eval.py: no_resize; the README's eval command: --no_crop --batch_size 1
        with _argv(["--gpu_ids", "-1", "--no_crop", "--batch_size", "1"]):
            opt = TestOptions().parse(print_options=False)
        opt.no_resize = True
        dset = dataset_folder(opt, str(folder))
        out = {}
        with torch.no_grad():
            for i, (path, label) in enumerate(dset.samples):
                if label == 0:
                    out[Path(path).name] = float(model(dset[i][0][None]).flatten()[0])
        return out


class SAFEAdapter(Adapter):
    family = "safe"
    repository = "https://github.com/Ouxiang-Li/SAFE"
    checkpoint_key = "model"

    def build(self):
        from models.resnet import resnet50

        return resnet50(num_classes=2).eval()  # main_finetune.py's model for --model SAFE

    def save_checkpoint(self, state, path):
        import torch

        # utils.save_model's layout (optimizer, scaler and args left out: random weights here)
        torch.save({"model": state, "epoch": 0}, path)

    def logits(self, model, folder):
        import torch
        from data.datasets import TrainDataset

        # scripts/eval.sh: --input_size 256 --transform_mode crop, no test-time perturbation
        args = argparse.Namespace(input_size=256, transform_mode="crop", eval_data_path=str(folder), data_path=None,
                                  num_train=None, jpeg_factor=None, blur_sigma=None, mask_ratio=None, mask_patch_size=None)
        dset = TrainDataset(False, args)
        out = {}
        with torch.no_grad():
            for i, item in enumerate(dset.data_list):
                if item["label"] != 0:
                    continue
                z = model(dset[i][0][None])[0]
                out[Path(item["image_path"]).name] = float(z[1] - z[0])  # engine_finetune: softmax(z)[:, 1]
        return out


ADAPTERS: dict[str, type[Adapter]] = {a.family: a for a in (NPRAdapter, CNNDetectionAdapter, SAFEAdapter)}


def run_reference(family: str, ref_dir: Path, work: Path, seed: int) -> None:
    """Inside the subprocess: build, seed, save and score with the reference code."""
    import torch

    from genvis_trust.detectors.published import seeded_state_dict

    torch.set_num_threads(1)
    adapter = ADAPTERS[family]()
    model = adapter.build()
    state = seeded_state_dict(model.state_dict(), seed)
    model.load_state_dict(state)
    model.eval()
    ckpt = work / f"{family}-seed{seed}.pth"
    adapter.save_checkpoint(state, ckpt)
    logits = adapter.logits(model, work / "imagefolder")
    git = subprocess.run(["git", "-C", str(ref_dir), "rev-parse", "HEAD"], capture_output=True, text=True)
    commit = git.stdout.strip() if git.returncode == 0 else ""
    layout = [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in state.items()]
    (work / f"{family}-reference.json").write_text(json.dumps(
        {"checkpoint": str(ckpt), "logits": logits, "commit": commit or _recorded_commit(ref_dir), "torch": torch.__version__,
         "layout": layout, "checkpoint_key": adapter.checkpoint_key}))


def _recorded_commit(ref_dir: Path) -> str:
    f = ref_dir / "COMMIT"  # a checkout made without .git records its commit here
    return f.read_text().strip() if f.is_file() else "unknown"


# ------------------------------------------------------------------ ours


def our_logits(family: str, ckpt: Path, folder: Path, device: str = "cpu") -> dict[str, float]:
    """``detectors import --arch FAMILY`` of the checkpoint, then the scoring engine on the files
    (decoded from their bytes, the worker's ``prepare_input``, float32)."""
    from genvis_trust.detectors import load_detector
    from genvis_trust.detectors.importing import import_checkpoint
    from genvis_trust.scoring.engine import ScoringEngine

    art = ckpt.with_suffix(".artifact")
    shutil.rmtree(art, ignore_errors=True)
    import_checkpoint(ckpt, family).save(art)
    det = load_detector(art, device=device)
    assert det.whole_image, f"{family}: the imported detector does not score whole images"
    files = sorted(folder.iterdir())
    eng = ScoringEngine(det, workers=1)
    out = {}
    for rec in eng.score_paths([str(f) for f in files]):
        if not rec.ok:
            raise RuntimeError(f"{rec.input}: {rec.error}")
        out[Path(rec.input).name] = rec.score.logit
    return out


# how the toolkit scored these checkpoints before the published families read whole images
# (224 px tiles, mean logit): shown beside the reference for the issue's case
BEFORE = {"npr": ("npr", {"whole_image": False}), "cnndetection": ("resnet50", {})}


def before_logits(family: str, ckpt: Path, folder: Path) -> dict[str, float] | None:
    from genvis_trust.detectors import Detector
    from genvis_trust.detectors.importing import import_checkpoint
    from genvis_trust.scoring.engine import ScoringEngine

    if family not in BEFORE:
        return None
    old_family, extra = BEFORE[family]
    new = import_checkpoint(ckpt, family)
    cfg = {k: v for k, v in new.net_config.items() if k not in ("whole_image", "crop")}
    det = Detector.create(old_family, patch=224, device="cpu", **{**cfg, **extra})
    det.net.load_state_dict(new.net.state_dict())
    eng = ScoringEngine(det, workers=1, optimize=False)
    return {Path(r.input).name: r.score.logit for r in eng.score_paths([str(f) for f in sorted(folder.iterdir())])}


def _sigmoid(z: float) -> float:
    return float(1.0 / (1.0 + np.exp(-z)))


# ------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference-dir", action="append", default=[], metavar="FAMILY=PATH",
                    help="a checkout of the family's reference repository (repeat per family)")
    ap.add_argument("--reference-path", action="append", default=[], metavar="DIR",
                    help="extra sys.path entries for the reference code's own imports (e.g. a pip --target dir)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/published-fidelity"), help="scratch folder (images, checkpoints)")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--device", default="cpu", help="where ours runs (the reference runs on CPU)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="folder for published-fidelity.{json,md}")
    ap.add_argument("--fixtures", type=Path, default=None, help="also write the test fixtures (small images + reference logits) here")
    ap.add_argument("--_reference", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    refs = dict(r.split("=", 1) for r in args.reference_dir)
    unknown = set(refs) - set(ADAPTERS)
    if unknown:
        ap.error(f"no adapter for {sorted(unknown)}; known: {sorted(ADAPTERS)}")

    if args._reference:  # the subprocess
        run_reference(args._reference, Path(refs[args._reference]), args.work, args.seed)
        return 0

    if not refs:
        ap.error("give at least one --reference-dir FAMILY=PATH")
    images = make_images(args.work / "images")
    folder = args.work / "imagefolder"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "0_real").mkdir(parents=True)
    (folder / "1_fake").mkdir(parents=True)  # the reference datasets want both classes
    for im in images:
        shutil.copy(args.work / "images" / im["file"], folder / "0_real" / im["file"])
    shutil.copy(args.work / "images" / images[0]["file"], folder / "1_fake" / images[0]["file"])

    command = "python benchmarks/published_fidelity.py " + " ".join(argv if argv is not None else sys.argv[1:])
    results: dict[str, dict] = {}
    for family, ref_dir in refs.items():
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(Path(ref_dir).resolve()), *args.reference_path, str(ROOT)])
        cmd = [sys.executable, str(Path(__file__).resolve()), "--_reference", family, "--reference-dir", f"{family}={ref_dir}",
               "--work", str(args.work), "--seed", str(args.seed)]
        print(f"[{family}] reference code: {ref_dir}", file=sys.stderr)
        subprocess.run(cmd, check=True, env=env, cwd=ref_dir)
        ref = json.loads((args.work / f"{family}-reference.json").read_text())
        ours = our_logits(family, Path(ref["checkpoint"]), folder / "0_real", args.device)
        before = before_logits(family, Path(ref["checkpoint"]), folder / "0_real")
        per_image = []
        for im in images:
            r, o = ref["logits"][im["file"]], ours[im["file"]]
            per_image.append({**im, "reference_logit": r, "our_logit": o, "abs_diff": abs(r - o),
                              "reference_p": _sigmoid(r), "our_p": _sigmoid(o)})
            if before is not None:
                per_image[-1]["before_p"] = _sigmoid(before[im["file"]])
            print(f"  {im['file']:30s} ref {r:+.6f} ours {o:+.6f} |d| {abs(r - o):.2e}", file=sys.stderr)
        import torch

        results[family] = {
            "max_abs_logit_diff": max(p["abs_diff"] for p in per_image),
            "reference_repository": ADAPTERS[family].repository,
            "reference_commit": ref["commit"],
            "images": len(per_image),
            "command": command,
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d"),
            "machine": f"{platform.machine()} {platform.system()}, torch {torch.__version__}, ours on {args.device}, reference on cpu",
            "seed": args.seed,
            # what the reference code imported from --reference-path (pip --target dirs)
            "reference_packages": sorted(d.name.removesuffix(".dist-info") for r in args.reference_path
                                         for d in Path(r).glob("*.dist-info")),
            "per_image": per_image,
        }
        if args.fixtures:
            write_fixture(args.fixtures, family, results[family], args.work / "images", ref)
    write_results(args.out, results)
    return 0


def write_fixture(fixtures: Path, family: str, res: dict, images: Path, ref: dict) -> None:
    (fixtures / "images").mkdir(parents=True, exist_ok=True)
    rows = {}
    for p in res["per_image"]:
        if p["fixture"]:
            shutil.copy(images / p["file"], fixtures / "images" / p["file"])
            rows[p["file"]] = p["reference_logit"]
    (fixtures / f"{family}.json").write_text(json.dumps({
        "family": family, "seed": res["seed"], "reference_repository": res["reference_repository"],
        "reference_commit": res["reference_commit"], "tolerance": 1e-4,
        "made_by": "benchmarks/published_fidelity.py --fixtures tests/fixtures/published",
        "reference_logits": rows, "checkpoint_key": ref["checkpoint_key"],
        "layout": ref["layout"]}, separators=(",", ":"), indent=None) + "\n")


# the package's copy of the joined results (an installed wheel has no benchmarks/): `detectors list` reads it
PACKAGED = ROOT / "genvis_trust" / "assets" / "published-fidelity.json"


def write_results(out: Path, results: dict) -> None:
    """Merge ``results`` (family -> entry) into ``out``/published-fidelity.json, rewrite its
    Markdown, and, when ``out`` is this repository's results folder, the packaged copy."""
    out.mkdir(parents=True, exist_ok=True)
    jf = out / "published-fidelity.json"
    data = json.loads(jf.read_text()) if jf.is_file() else {"families": {}}
    data["families"].update(results)
    data["target"] = "max |logit difference| <= 1e-4 in float32, every family, every image"
    text = json.dumps(data, indent=1) + "\n"
    jf.write_text(text)
    if out.resolve() == RESULTS.resolve():
        PACKAGED.write_text(text)
    lines = [
        "# Published families: fidelity to the reference code",
        "",
        "Largest |logit difference| between each reference repository's own model and preprocessing code "
        "and the toolkit's path (`detectors import --arch FAMILY`, then the scoring engine from the file's "
        "bytes), on the same checkpoint (seeded random weights in the published key layout, built by the "
        "reference code: the published weights are out of reach from the measuring machine) and the same "
        "images. Target: <= 1e-4 in float32. Made by `benchmarks/published_fidelity.py` (its docstring says how).",
        "",
        "| family | max abs logit diff | images | reference | commit | date | machine |",
        "|---|---|---|---|---|---|---|",
    ]
    fams = data["families"]
    for name in sorted(fams):
        f = fams[name]
        lines.append(f"| {name} | {f['max_abs_logit_diff']:.2e} | {f['images']} | {f['reference_repository']} | "
                     f"`{f['reference_commit'][:12]}` | {f['date']} | {f['machine']} |")
    for name in sorted(fams):
        f = fams[name]
        if not f.get("per_image"):
            continue
        has_before = "before_p" in f["per_image"][0]
        lines += ["", f"## {name}", "", f"Command: `{f['command']}`", ""]
        if f.get("reference_packages"):
            lines += [f"Reference-side packages on `--reference-path`: {', '.join(f['reference_packages'])}.", ""]
        if has_before:
            lines += [f"`p before`: the same checkpoint scored as the toolkit did before whole-image scoring "
                      f"(`{BEFORE[name][0]}` tiles of 224 px, mean logit).", ""]
        lines += ["| image | what | reference logit | our logit | abs diff | reference p | our p |" + (" p before |" if has_before else ""),
                  "|---|---|---|---|---|---|---|" + ("---|" if has_before else "")]
        for p in f["per_image"]:
            lines.append(f"| {p['file']} | {p['what']} | {p['reference_logit']:+.6f} | {p['our_logit']:+.6f} | "
                         f"{p['abs_diff']:.2e} | {p['reference_p']:.6f} | {p['our_p']:.6f} |"
                         + (f" {p['before_p']:.6f} |" if has_before else ""))
    (out / "published-fidelity.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
