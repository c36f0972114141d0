"""``genvis-trust doctor``: what this installation has and what it can do."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

import typer

from .common import EXIT_OK, EXIT_PROBLEM, out, print_json

# distribution name -> what the toolkit uses it for (all declared in pyproject.toml)
CORE = {
    "torch": "networks (detectors, generators)",
    "torchvision": "the resnet50 detector family, Inception features for FID",
    "numpy": "arrays",
    "pillow": "image decoding",
    "opencv-python": "image filters, faces",
    "scikit-learn": "classical detectors, calibration, metrics",
    "safetensors": "artifacts",
    "c2pa-python": "C2PA manifests: sign and verify",
    "invisible-watermark": "watermark backends",
    "av": "video frames (PyAV)",
    "pillow-heif": "HEIC/HEIF images",
    "defusedxml": "XMP metadata",
    "jinja2": "HTML reports",
    "matplotlib": "plots",
    "typer": "this command line",
    "rich": "progress and tables",
}

# extra -> (its distributions, what it enables)
EXTRAS = {
    "ray": (["ray"], "`audit --engine ray`: the audit spread over a Ray cluster (Ray Data)"),
    "serve": (["fastapi", "fastapi-offline", "uvicorn", "python-multipart"],
              "`genvis-trust serve`: the HTTP scanning service"),
    "onnx": (["onnx"], "the opt-in ONNX Runtime graph of a detector (Detector.optimize_for_inference)"),
    "onnxruntime": (["onnxruntime"], "the rivaGan watermark backend, the ONNX Runtime graph"),
}

# packages that published detector families may need (PublishedCard.requires)
PUBLISHED_PACKAGES = {
    "open_clip_torch": "CLIP-based published detectors",
    "timm": "timm-backbone published detectors",
}


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _torch_facts() -> tuple[dict, dict, list[str]]:
    """Versions and devices of torch, and whether torchvision imports with it."""
    problems: list[str] = []
    torch_info: dict = {"version": None}
    devices: dict = {"cuda": False}
    try:
        import torch
    except Exception as e:  # a broken torch is exactly what doctor is for
        problems.append(f"torch does not import: {type(e).__name__}: {e}")
        return torch_info, devices, problems
    torch_info = {"version": torch.__version__, "build": f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only",
                  "threads": torch.get_num_threads()}
    cuda = bool(torch.cuda.is_available())
    devices = {"cuda": cuda, "cuda_devices": [], "cpu_cores": len(_affinity())}
    if cuda:
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            devices["cuda_devices"].append({"index": i, "name": p.name, "memory_gib": round(p.total_memory / 2**30, 1)})
    elif torch.version.cuda:
        devices["note"] = "torch is a CUDA build but sees no GPU: everything runs on the CPU (--device auto)"
    mps = getattr(torch.backends, "mps", None)
    devices["mps"] = bool(mps is not None and mps.is_available())
    from genvis_trust.environment import TorchvisionMismatch, import_torchvision

    try:
        tv = import_torchvision()
        torch_info["torchvision"] = {"imports": True, "version": tv.__version__}
    except TorchvisionMismatch as e:
        torch_info["torchvision"] = {"imports": False, "version": _version("torchvision"), "fix": str(e)}
        problems.append(str(e))
    return torch_info, devices, problems


def _affinity() -> set[int]:
    import os

    try:
        return os.sched_getaffinity(0)
    except AttributeError:  # pragma: no cover - not Linux
        return set(range(os.cpu_count() or 1))


def _detectors() -> dict:
    try:
        from genvis_trust.detectors import list_bundled, list_families
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"}
    fams = {}
    for name, fam in list_families().items():
        card = getattr(getattr(fam, "cls", None), "published", None)
        requires = list(getattr(card, "requires", []) or [])
        missing = [r for r in requires if _version(r) is None]
        fams[name] = {"description": fam.description,
                      **({"requires": requires, "missing": missing} if requires else {})}
    return {"families": fams, "bundled": sorted(list_bundled())}


def collect() -> tuple[dict, list[str]]:
    """Everything ``doctor`` reports, and the problems found."""
    from genvis_trust import __version__

    torch_info, devices, problems = _torch_facts()
    core = {d: {"version": _version(d), "for": what} for d, what in CORE.items()}
    for d, v in core.items():
        if v["version"] is None and d not in ("torch", "torchvision"):
            problems.append(f"{d} is not installed ({v['for']}): pip install {d}")
    try:
        from PIL import features

        avif = bool(features.check("avif"))
    except Exception:
        avif = False
    extras = {}
    for name, (dists, what) in EXTRAS.items():
        missing = [d for d in dists if _version(d) is None]
        extras[name] = {"installed": not missing, "enables": what, "missing": missing,
                        "versions": {d: _version(d) for d in dists}}
    published = {p: {"version": _version(p), "enables": what} for p, what in PUBLISHED_PACKAGES.items()}
    report = {
        "genvis_trust": __version__,
        "python": {"version": platform.python_version(), "executable": sys.executable,
                   "platform": platform.platform()},
        "torch": torch_info,
        "devices": devices,
        "core": core,
        "formats": {"avif": avif, "heic": _version("pillow-heif") is not None, "video": _version("av") is not None},
        "extras": extras,
        "published_detector_packages": published,
        "detectors": _detectors(),
        "problems": problems,
    }
    return report, problems


def doctor_cmd(as_json: bool = typer.Option(False, "--json", help="Print the report as JSON to stdout.")):
    """Show what this installation has: versions (python, torch, torchvision, key libraries),
    devices (CUDA?), optional extras and what each enables, and the installed detectors. A
    torch/torchvision pair that does not fit together is named with the pip command that fixes it.

    Exit codes: 0 nothing wrong; 1 a problem found (listed last, each with its fix).
    """
    rep, problems = collect()
    if as_json:
        print_json(rep)
        raise typer.Exit(EXIT_PROBLEM if problems else EXIT_OK)
    t = rep["torch"]
    tv = t.get("torchvision") or {}
    lines = [f"genvis-trust {rep['genvis_trust']}  python {rep['python']['version']}  ({rep['python']['platform']})",
             f"torch {t.get('version') or 'NOT IMPORTABLE'} ({t.get('build', '?')})  torchvision "
             + (f"{tv.get('version')} ok" if tv.get("imports") else f"{tv.get('version') or '-'} DOES NOT IMPORT")]
    d = rep["devices"]
    gpus = ", ".join(f"{g['name']} ({g['memory_gib']} GiB)" for g in d.get("cuda_devices", []))
    lines.append(f"devices: CUDA {'yes: ' + gpus if d.get('cuda') else 'no'}; CPU cores {d.get('cpu_cores', '?')}"
                 + (f"; {d['note']}" if d.get("note") else ""))
    lines.append("libraries: " + ", ".join(f"{k} {v['version'] or 'MISSING'}" for k, v in rep["core"].items()
                                           if k not in ("torch", "torchvision")))
    f = rep["formats"]
    lines.append(f"formats: HEIC {'yes' if f['heic'] else 'no'}, AVIF {'yes' if f['avif'] else 'no'}, "
                 f"video {'yes' if f['video'] else 'no'}")
    lines.append("optional extras:")
    for name, e in rep["extras"].items():
        state = "installed" if e["installed"] else f"not installed (pip install 'genvis-trust[{name}]')" \
            if name != "onnxruntime" else "not installed (pip install onnxruntime)"
        lines.append(f"  {name:12s} {state}: {e['enables']}")
    lines.append("published-detector packages:")
    for name, p in rep["published_detector_packages"].items():
        lines.append(f"  {name:16s} {p['version'] or 'not installed'}: {p['enables']}")
    det = rep["detectors"]
    if "error" in det:
        lines.append(f"detectors: cannot be listed ({det['error']})")
    else:
        lines.append(f"detector families: {', '.join(det['families'])}")
        lines.append(f"bundled detectors: {', '.join(det['bundled']) or 'none'}")
    out.print("\n".join(lines), highlight=False, markup=False)
    if problems:
        out.print("problems:\n" + "\n".join(f"- {p}" for p in problems), highlight=False, markup=False)
        raise typer.Exit(EXIT_PROBLEM)
    out.print("no problems found", highlight=False)
