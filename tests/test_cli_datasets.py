"""`genvis-trust datasets list|export|verify` through typer's test runner."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from genvis_trust.cli.main import app
from genvis_trust.datasets.corpus import MANIFEST

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, ["datasets", *map(str, args)])


def _flat(text: str) -> str:
    """Rich wraps long lines on stderr; compare messages without whitespace."""
    return "".join(text.split())


def _shas(root: Path) -> list[str]:
    return [json.loads(line)["sha256"] for line in (root / MANIFEST).read_text().splitlines()]


@pytest.fixture(scope="module")
def photos32(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "real32"
    r = _run("export", "builtin-photos", "--patch", 32, "--n", 200, "--out", out)
    assert r.exit_code == 0, r.output
    return out


def test_list_json_names_the_builtins():
    r = _run("list", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    by_name = {row["name"]: row for row in doc["builtin"]}
    assert {"builtin-photos", "builtin-faces", "builtin-digits"} <= set(by_name)
    assert by_name["builtin-digits"]["images"] == 1797
    assert doc["layouts"]


def test_list_table():
    r = _run("list")
    assert r.exit_code == 0 and "builtin-faces" in r.stdout


def test_export_then_verify(photos32):
    r = _run("verify", photos32, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["ok"] is True and doc["images"] == 200 and doc["labels"] == {"real": 200}
    assert doc["hashes_checked"] is True
    card = json.loads((photos32 / "card.json").read_text())
    assert card["complete"] is True and card["data"]["patch"] == 32 and card["data"]["n"] == 200
    first = json.loads((photos32 / MANIFEST).read_text().splitlines()[0])
    assert (first["width"], first["height"]) == (32, 32)


def test_verify_names_a_tampered_record(photos32, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(photos32, copy)
    rec = json.loads((copy / MANIFEST).read_text().splitlines()[41])
    img = np.asarray(Image.open(copy / rec["path"])).copy()
    img[0, 0] ^= 1
    Image.fromarray(img).save(copy / rec["path"], format="PNG")
    r = _run("verify", copy)
    assert r.exit_code == 1
    assert _flat(f"{MANIFEST}:42 ({rec['path']})") in _flat(r.output)
    r = _run("verify", copy, "--json")
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert doc["ok"] is False and rec["path"] in doc["error"] and ":42" in doc["error"]
    assert _run("verify", copy, "--no-hashes").exit_code == 0


def test_export_refuses_existing_corpus(photos32):
    before = (photos32 / MANIFEST).read_bytes()
    r = _run("export", "builtin-photos", "--patch", 32, "--n", 200, "--out", photos32)
    assert r.exit_code == 2
    assert "already" in r.output and "--force" in r.output and "=True" not in r.output and "--resume" in r.output
    assert (photos32 / MANIFEST).read_bytes() == before
    r = _run("export", "builtin-photos", "--out", photos32, "--resume", "--overwrite")
    assert r.exit_code == 2


def test_resume_completes_to_the_uninterrupted_result(photos32, tmp_path):
    out = tmp_path / "partial"
    shutil.copytree(photos32, out)
    lines = (out / MANIFEST).read_text().splitlines()
    # interrupted: 130 complete records, the 131st half written
    (out / MANIFEST).write_text("".join(x + "\n" for x in lines[:130]) + lines[130][:25])
    r = _run("export", "builtin-photos", "--patch", 32, "--n", 200, "--out", out, "--resume")
    assert r.exit_code == 0, r.output
    assert _shas(out) == _shas(photos32)
    assert [json.loads(x)["path"] for x in (out / MANIFEST).read_text().splitlines()] == [
        json.loads(x)["path"] for x in lines
    ]
    assert _run("verify", out).exit_code == 0
    # resuming with another stream would mix two datasets: refused
    r = _run("export", "builtin-photos", "--patch", 32, "--n", 200, "--seed", 1, "--out", out, "--resume")
    assert r.exit_code == 2 and "resume" in r.output


def test_unknown_source_lists_known_names(tmp_path):
    r = _run("export", "no-such-source", "--out", tmp_path / "x")
    assert r.exit_code == 2
    flat = _flat(r.output)
    assert "no-such-source" in flat
    for name in ("builtin-photos", "builtin-faces", "builtin-digits"):
        assert name in flat
    assert not (tmp_path / "x").exists()


def test_grid_writes_a_png(tmp_path):
    grid = tmp_path / "grid.png"
    r = _run("export", "builtin-digits", "--n", 10, "--out", tmp_path / "d", "--grid", grid)
    assert r.exit_code == 0, r.output
    assert grid.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(grid) as im:
        assert im.size[0] >= 32 * 3
    assert len((tmp_path / "d" / MANIFEST).read_text().splitlines()) == 10


def test_folder_export_needs_a_label_and_reports_bad_files(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        Image.fromarray(np.full((8, 8, 3), i * 40, np.uint8)).save(src / f"{i}.png")
    r = _run("export", src, "--out", tmp_path / "nolabel")
    assert r.exit_code == 2 and "--label" in r.output
    assert not (tmp_path / "nolabel" / MANIFEST).exists()
    (src / "bad.png").write_bytes(b"garbage")
    r = _run("export", src, "--label", "generated", "--out", tmp_path / "c")
    assert r.exit_code == 1  # written, but one input could not be read
    assert "bad.png" in r.output and "not_an_image" in r.output
    doc = json.loads(_run("verify", tmp_path / "c", "--json").stdout)
    assert doc["images"] == 3 and doc["labels"] == {"generated": 3}


def test_bad_option_values_are_usage_errors(tmp_path):
    r = _run("export", "builtin-digits", "--split", "training", "--out", tmp_path / "a")
    assert r.exit_code == 2 and "split" in r.output
    r = _run("export", "builtin-digits", "--label", "real", "--out", tmp_path / "b")
    assert r.exit_code == 2 and "label" in r.output
