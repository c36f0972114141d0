"""Every error the CLI prints says what to do next: the toolkit's own pixel limit and the
image's size for decompression bombs, `keys init` for missing keys, "does not exist" vs "is a
file" vs "not a folder" for path arguments, the pip command for a torch/torchvision pair that
does not fit together; and `doctor` shows what the installation has."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from genvis_trust.cli.main import app
from genvis_trust.io import DEFAULT_MAX_PIXELS, ImageLoadError, encode_image, load_image

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def _png_header(w: int, h: int) -> bytes:
    def chunk(t: bytes, b: bytes) -> bytes:
        return struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [60000, 9000])  # over Pillow's own guard, and only over ours
def test_bomb_message_gives_the_toolkit_limit_and_the_image_size(tmp_path, side):
    with pytest.raises(ImageLoadError) as info:
        load_image(_png_header(side, side))
    msg = info.value.message
    assert info.value.code == "too_large"
    assert f"{side}x{side}" in msg and str(side * side) in msg, msg
    assert f"toolkit's limit of {DEFAULT_MAX_PIXELS} pixels" in msg and "DOS attack" not in msg, msg
    assert "raise the limit" in msg
    # in the CLI's output too
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header(side, side))
    r = runner.invoke(app, ["verify", str(path), "--json", "--no-known-generators"])
    assert r.exit_code == 1
    assert f"{side}x{side}" in json.loads(r.stdout)["error"]["message"]


def test_missing_keys_name_keys_init(tmp_path):
    img = tmp_path / "a.png"
    img.write_bytes(encode_image(np.zeros((8, 8, 3), np.uint8)))
    (tmp_path / "afile").write_text("x")
    (tmp_path / "empty").mkdir()
    cases = {
        "nokeys": "keys folder does not exist; create one with `genvis-trust keys init {k}`",
        "afile": "keys folder is a file, not a folder; create one with `genvis-trust keys init keys`",
        "empty": "holds no signing keys; create one with `genvis-trust keys init {k}`",
    }
    for name, want in cases.items():
        k = tmp_path / name
        r = runner.invoke(app, ["stamp", str(img), "--keys", str(k), "--out", str(tmp_path / "o")])
        assert r.exit_code == 2 and want.format(k=k) in r.output.replace("\n", ""), r.output
    r = runner.invoke(app, ["stamp", str(img), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "genvis-trust keys init keys" in r.output.replace("\n", ""), r.output


def test_path_arguments_say_what_is_wrong(tmp_path):
    img = tmp_path / "a.png"
    img.write_bytes(encode_image(np.zeros((8, 8, 3), np.uint8)))
    folder = tmp_path / "d"
    folder.mkdir()
    cases = [
        (["verify", img, "--trust-anchors", tmp_path / "nope.pem"], "nope.pem: trust anchor file (--trust-anchors) does not exist"),
        (["verify", img, "--trust-anchors", tmp_path / "x" / "ca.pem"], "does not exist (nor does the folder"),
        (["verify", img, "--trust-anchors", folder], "is a folder, not a file"),
        (["verify", img, "--store", folder], "provenance store (--store) is a folder, not a file"),
        (["verify", img, "--store", tmp_path / "p.db"], "p.db: provenance store (--store) does not exist"),
        (["datasets", "verify", img], "a.png: corpus folder is a file, not a folder"),
        (["datasets", "verify", tmp_path / "nope"], "nope: corpus folder does not exist"),
        (["detectors", "explain", tmp_path / "nope.png", "-o", tmp_path / "o.png"], "nope.png: image does not exist"),
        (["audit", tmp_path / "nope", "--out", tmp_path / "o"], "nope: folder to audit does not exist"),
        (["audit", img, "--out", tmp_path / "o"], f"a.png: folder to audit is a file, not a folder; for one file use `genvis-trust scan {img}`"),
    ]
    for args, want in cases:
        r = runner.invoke(app, [str(a) for a in args])
        assert r.exit_code == 2, (args, r.output)
        assert want in r.output.replace("\n", ""), (args, r.output)
    assert not (tmp_path / "o").exists()  # a refused command leaves no output folder behind


def test_input_files_say_what_is_wrong(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    cases = [(tmp_path / "nope.jpg", "file does not exist [not_found]"),
             (tmp_path / "x" / "a.jpg", "file does not exist (nor does the folder"),
             (folder, "is a folder, not a file [unreadable]")]
    for path, want in cases:
        r = runner.invoke(app, ["verify", str(path), "--no-known-generators"])
        assert r.exit_code == 1 and want in r.output.replace("\n", ""), r.output


def test_check_path_cases(tmp_path):
    import typer

    from genvis_trust.cli.common import check_path

    (tmp_path / "f").write_text("x")
    os.symlink(tmp_path / "gone", tmp_path / "link")
    assert check_path(tmp_path, "folder") == tmp_path and check_path(tmp_path / "f", "file") == tmp_path / "f"
    for p, kind in ((tmp_path / "link", "file"), (tmp_path / "f", "folder"), (tmp_path, "file"),
                    (Path("/dev/null"), "file")):
        with pytest.raises(typer.Exit) as info:
            check_path(p, kind)
        assert info.value.exit_code == 2


# a torchvision whose compiled operators do not register with this torch fails at import with
# this RuntimeError (a CPU torch beside PyPI's CUDA torchvision); the broken wheel pair cannot be
# installed here, so a package raising that same error at import stands in for it
_BROKEN_TV = 'raise RuntimeError("operator torchvision::nms does not exist")\n'


def _run_with_broken_torchvision(tmp_path, code: str) -> subprocess.CompletedProcess:
    fake = tmp_path / "site" / "torchvision"
    fake.mkdir(parents=True, exist_ok=True)
    (fake / "__init__.py").write_text(_BROKEN_TV)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(ROOT)])}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)


def test_broken_torchvision_is_named_with_the_fix(tmp_path):
    import torch

    from genvis_trust.environment import torchvision_for_torch

    want = torchvision_for_torch(torch.__version__)
    r = _run_with_broken_torchvision(tmp_path, (
        "from genvis_trust.detectors import Detector\n"
        "from genvis_trust.environment import TorchvisionMismatch\n"
        "try:\n    Detector.create('resnet50', device='cpu')\n"
        "except TorchvisionMismatch as e:\n    print(e)\n"))
    assert r.returncode == 0, r.stderr
    assert "operator torchvision::nms does not exist" in r.stdout
    assert f"pip install --force-reinstall --no-deps 'torchvision=={want}' --index-url https://download.pytorch.org/whl/" in r.stdout
    # doctor says the same and exits 1
    r = _run_with_broken_torchvision(tmp_path, "from genvis_trust.cli.main import app; app(['doctor', '--json'])")
    assert r.returncode == 1, r.stderr
    rep = json.loads(r.stdout)
    assert rep["torch"]["torchvision"]["imports"] is False
    assert any(f"torchvision=={want}" in p for p in rep["problems"])


def test_torchvision_fix_per_build():
    from genvis_trust.environment import torchvision_fix

    cpu = torchvision_fix("x", "2.14.1+cpu", None, "0.29.1")
    assert "--index-url https://download.pytorch.org/whl/cpu" in cpu and "pip install --force-reinstall 'torch==2.14.1' 'torchvision==0.29.1'" in cpu
    cuda = torchvision_fix("x", "2.5.1", "12.4", "0.20.1+cpu")
    assert "'torchvision==0.20.1' --index-url https://download.pytorch.org/whl/cu124" in cuda


def test_doctor_reports_the_installation():
    import torch

    r = runner.invoke(app, ["doctor", "--json"])
    rep = json.loads(r.stdout)
    assert r.exit_code == (1 if rep["problems"] else 0)
    assert rep["torch"]["version"] == torch.__version__
    assert rep["devices"]["cuda"] == torch.cuda.is_available()
    assert {"ray", "serve", "onnx"} <= set(rep["extras"]) and all("enables" in e for e in rep["extras"].values())
    assert "resnet50" in rep["detectors"]["families"] and "default" in rep["detectors"]["bundled"]
    assert rep["core"]["pillow"]["version"]
    text = runner.invoke(app, ["doctor"])
    assert "torchvision" in text.stdout and "optional extras:" in text.stdout and "serve" in text.stdout
