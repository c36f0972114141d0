"""What the CLI says: flags, not Python arguments; piped output never wrapped; `evaluate`
says which images it used; no library warnings leak onto stderr."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from genvis_trust.cli.main import app
from genvis_trust.io import encode_image

runner = CliRunner()


def _cli(*args, **kw) -> subprocess.CompletedProcess:
    """The CLI as a user runs it: a process whose stdout and stderr are pipes, not a terminal."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("COLUMNS", None)
    env = kw.pop("env", env)
    return subprocess.run([sys.executable, "-m", "genvis_trust.cli.main", *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=env, **kw)


@pytest.fixture(scope="module")
def gan_corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gen") / "gan"
    r = runner.invoke(app, ["generate", "gan-digits", "--n", "40", "--seed", "1", "--out", str(out)])
    assert r.exit_code == 0, r.output
    return out


def test_messages_name_flags_not_python_arguments(tmp_path, gan_corpus):
    assert runner.invoke(app, ["keys", "init", str(tmp_path / "k")]).exit_code == 0
    r = runner.invoke(app, ["keys", "init", str(tmp_path / "k")])
    assert r.exit_code == 2 and "--force" in r.output and "=True" not in r.output, r.output
    r = runner.invoke(app, ["generate", "gan-digits", "--n", "2", "--out", str(gan_corpus)])
    flat = " ".join(r.output.split())
    assert r.exit_code == 2 and "--resume" in flat and "--force" in flat and "=True" not in flat, flat
    # --force is the word everywhere; --overwrite still works
    r = runner.invoke(app, ["generate", "gan-digits", "--n", "2", "--out", str(tmp_path / "g"), "--force"])
    assert r.exit_code == 0, r.output


def test_piped_table_is_not_wrapped(tmp_path):
    name = tmp_path / ("a-file-name-long-enough-to-be-wrapped-by-an-80-column-console-" * 2 + ".png")
    name.write_bytes(encode_image(np.zeros((40, 40, 3), np.uint8)))
    r = _cli("scan", name, "--no-provenance", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert any(str(name) in line for line in r.stdout.splitlines()), r.stdout


def test_evaluate_says_how_many_images_of_each_class_and_why(gan_corpus):
    from genvis_trust.cli.detectors import data_source

    r = _cli("evaluate", "default", "--fake", gan_corpus, "--real-n", 20, "--device", "cpu")
    assert r.returncode == 0, r.stderr
    used = len(data_source(str(gan_corpus), "test", patch=None, n=None, seed=0))
    assert 0 < used < 40
    assert f"generated: {used} images" in r.stderr and f"{used} of its 40 images" in r.stderr, r.stderr
    assert "--split all" in r.stderr and "real: 20 images" in r.stderr
    assert "Warning" not in r.stderr


def test_explain_leaks_no_library_warning(tmp_path):
    f = tmp_path / "small.png"
    f.write_bytes(encode_image(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)))
    r = _cli("detectors", "explain", f, "--out", tmp_path / "heat.png", "--device", "cpu")
    assert r.returncode == 0 and (tmp_path / "heat.png").is_file(), r.stderr
    assert "Warning" not in r.stderr and "warn" not in r.stderr.lower(), r.stderr
    # a colour scale under the maps: dark on the left (0), bright on the right (max)
    from PIL import Image

    png = np.asarray(Image.open(tmp_path / "heat.png").convert("L")).astype(int)
    bar = png[-24]
    assert bar[10] < 40 and bar[-10] > 200


def test_command_groups_are_imported_when_used_and_help_lists_them_all():
    """`scan` imports no other command group (their imports are start-up time of every scan);
    the root `--help` still lists every command, built as typer builds it."""
    from genvis_trust.cli.main import COMMANDS

    code = ("import sys; from genvis_trust.cli.main import app\n"
            "try: app(['scan', '--help'])\nexcept SystemExit: pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('genvis_trust.cli.')))")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "['genvis_trust.cli.common', 'genvis_trust.cli.main', 'genvis_trust.cli.scan']"
    r = runner.invoke(app, ["--help"], terminal_width=200)
    assert r.exit_code == 0, r.output
    listed = [line.split()[1] for line in r.output.splitlines() if line.startswith("│ ") and len(line.split()) > 2]
    assert [n for n in listed if n in COMMANDS] == list(COMMANDS)
    r = runner.invoke(app, ["train", "--help"], terminal_width=200)
    assert r.exit_code == 0 and "detector" in r.output and "generator" in r.output, r.output
    r = runner.invoke(app, ["scna"])
    assert r.exit_code == 2 and "Did you mean 'scan'?" in r.output, r.output


def test_cli_exit_skips_the_last_collection_and_leaves_the_store_closed(tmp_path):
    """A scan with a store, its provenance checks in worker threads: the CLI freezes the garbage
    collector at exit (its last cycle collection took ~0.5 s), so every store connection must be
    closed explicitly first; SQLite removes its -wal and -shm files only when the last one closes."""
    from genvis_trust.provenance.store import ProvenanceStore

    db = tmp_path / "provenance.db"
    ProvenanceStore(db).close()
    imgs = []
    for i in range(3):
        f = tmp_path / f"img{i}.png"
        f.write_bytes(encode_image(np.random.default_rng(i).integers(0, 255, (64, 64, 3), np.uint8)))
        imgs.append(f)
    r = _cli("scan", *imgs, "--store", db, "--workers", "2", "--json", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count('"verdict"') == 3
    assert db.exists()
    assert not (tmp_path / "provenance.db-wal").exists() and not (tmp_path / "provenance.db-shm").exists()
    # a store left open in a reference cycle (only a collection would close it) is closed at exit
    db2 = tmp_path / "cycle.db"
    code = ("from typer.testing import CliRunner; from genvis_trust.cli.main import app\n"
            "from genvis_trust.provenance.store import ProvenanceStore\n"
            "assert CliRunner().invoke(app, ['scan', '--help']).exit_code == 0\n"
            "assert CliRunner().invoke(app, ['scan', '--help']).exit_code == 0  # the exit hook is registered once\n"
            f"st = ProvenanceStore({str(db2)!r}); st.reserve_id(); st.cycle = st; del st\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert db2.exists() and not (tmp_path / "cycle.db-wal").exists()


def test_help_wraps_at_the_terminal_not_at_the_docstrings_line_breaks():
    """`--help` lists a command by its docstring's first paragraph as one piece of text: at a wide
    terminal each entry is one line (the docstring's own line breaks used to cut them)."""
    r = _cli("--help", env={**os.environ, "COLUMNS": "250", "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert r.returncode == 0, r.stderr
    demo = next(line for line in r.stdout.splitlines() if " demo " in line)
    assert "images from built-in data, audit it with every signal" in demo
    stamp = next(line for line in r.stdout.splitlines() if " stamp " in line)
    assert "WebP lossless; a video gets the watermark" in stamp
    # a command's own page: prose reflowed, example commands kept on their own lines
    page = _cli("generate", "--help", env={**os.environ, "COLUMNS": "250", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}).stdout
    assert "transform crops of real photographs drawn from each image's seed; the record names the photograph" in page
    assert any(line.strip().startswith("Clips:") for line in page.splitlines())


def test_stamp_and_verify_leave_no_wal_and_a_failed_stamp_no_folder(tmp_path):
    """Every command closes its store (no -wal/-shm beside it after exit); a stamp run that fails
    before writing anything (an input that is not an image) creates no --out folder."""
    from genvis_trust.provenance.keys import init_keys

    init_keys(tmp_path / "keys")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    r = _cli("stamp", tmp_path / "broken.jpg", "--out", tmp_path / "st2", "--keys", tmp_path / "keys")
    assert r.returncode == 1 and "broken.jpg" in r.stderr
    assert not (tmp_path / "st2").exists()
    ok = tmp_path / "ok.png"
    ok.write_bytes(encode_image(np.random.default_rng(0).integers(0, 255, (256, 256, 3), np.uint8)))
    for args in (("stamp", ok, "--out", tmp_path / "st3", "--keys", tmp_path / "keys", "--source-type", "digitalCapture"),
                 ("verify", tmp_path / "st3" / "ok.png", "--store", tmp_path / "st3" / "provenance.db")):
        r = _cli(*args)
        assert r.returncode == 0, r.stderr
        assert sorted(p.name for p in (tmp_path / "st3").iterdir()) == ["ok.png", "provenance.db"], args[0]
