"""Nothing lost, nothing crashes: folders with loops, links, FIFOs and odd names are walked
entry by entry; `demo` and corpus overwrites delete only what the toolkit wrote."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from genvis_trust.cli.main import app
from genvis_trust.datasets import CorpusWriter, FolderSource, read_corpus
from genvis_trust.datasets.folders import walk_entries
from genvis_trust.io import ERROR_CODES, encode_image

runner = CliRunner()
needs_posix = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs symlinks and FIFOs")


def hostile_tree(root: Path) -> Path:
    """Everything a file system can hold that a naive walk trips on."""
    (root / "sub").mkdir(parents=True)
    (root / "unreadable").mkdir()
    (root / "a.jpg").write_bytes(encode_image(np.full((40, 40, 3), 90, np.uint8), "JPEG"))
    (root / "sub" / "b.png").write_bytes(encode_image(np.zeros((40, 40, 3), np.uint8), "PNG"))
    os.symlink("a.jpg", root / "link.jpg")  # in-tree file link
    os.symlink("loop2", root / "loop1")  # a loop of file links
    os.symlink("loop1", root / "loop2")
    os.symlink("..", root / "sub" / "up")  # a folder link to an ancestor: a walk that follows it never ends
    os.symlink("sub", root / "sub_again")  # an in-tree folder link: following it records sub/ twice
    os.symlink(str(root.parent / "outside.png"), root / "out.png")  # a link out of the tree
    os.symlink("gone.png", root / "dangling.png")
    os.mkfifo(root / "pipe.png")  # opening it would block forever
    with open(os.fsencode(root) + b"/latin1-\xe9t\xe9.png", "wb") as f:  # a name that is not UTF-8
        f.write(encode_image(np.zeros((40, 40, 3), np.uint8), "PNG"))
    (root / "unreadable" / "c.png").write_bytes(b"x")
    os.chmod(root / "unreadable", 0)
    (root.parent / "outside.png").write_bytes(encode_image(np.zeros((8, 8, 3), np.uint8), "PNG"))
    return root


@pytest.fixture
def tree(tmp_path):
    root = hostile_tree(tmp_path / "tree")
    yield root
    os.chmod(root / "unreadable", 0o755)


@needs_posix
def test_walk_one_entry_per_name_under_its_own_path(tree):
    entries = {e.rel: e for e in walk_entries(tree)}
    names = {"a.jpg", "sub/b.png", "link.jpg", "loop1", "loop2", "sub/up", "sub_again", "out.png",
             "dangling.png", "pipe.png", "latin1-\udce9t\udce9.png"}
    root_can_read = os.access(tree / "unreadable", os.R_OK)  # root ignores permissions
    names |= {"unreadable/c.png"} if root_can_read else {"unreadable"}
    assert set(entries) == names
    scanned = {r for r, e in entries.items() if e.error is None}
    assert scanned == {"a.jpg", "sub/b.png", "link.jpg", "latin1-\udce9t\udce9.png"} | (
        {"unreadable/c.png"} if root_can_read else set())
    assert entries["link.jpg"].link == {"target": "a.jpg", "inside": True}
    assert entries["link.jpg"].path == tree / "link.jpg"  # never resolved to its target's name
    for name in names - scanned:
        e = entries[name]
        assert e.error["code"] in ERROR_CODES and e.error["message"], name
    assert "outside" in entries["out.png"].error["message"] and entries["out.png"].link["inside"] is False
    assert "FIFO" in entries["pipe.png"].error["message"]
    assert entries["dangling.png"].error["code"] == "not_found"
    assert "sub" in entries["sub_again"].error["message"]
    # the dataset view shares the walk: the in-tree link keeps its own key, nothing twice
    keys = sorted(it.key for it in FolderSource(tree).items())
    assert keys == sorted(n for n in scanned if n.endswith((".png", ".jpg")))


def _det(tmp_path) -> Path:
    import torch

    from genvis_trust.detectors import Detector

    torch.manual_seed(0)
    d = tmp_path / "det"
    Detector.create("cnn", device="cpu").save(d, card={"name": "rnd"})
    return d


@needs_posix
def test_scan_records_every_argument_and_entry(tree, tmp_path):
    (tmp_path / "empty").mkdir()
    det = _det(tmp_path)
    r = runner.invoke(app, ["scan", str(tree), str(tmp_path / "empty"), "--json", "--no-provenance",
                            "--detector", str(det), "--device", "cpu", "--workers", "1"])
    assert r.exit_code == 1, r.output  # some entries could not be scanned
    recs = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    by = {x["input"]: x for x in recs}
    assert len(by) == len(recs)  # one record each, none twice
    expected = {str(tree / e.rel) if e.rel != "." else str(tree) for e in walk_entries(tree)}
    assert set(by) == expected | {str(tmp_path / "empty")}
    assert by[str(tmp_path / "empty")]["error"]["code"] == "empty"
    link, target = by[str(tree / "link.jpg")], by[str(tree / "a.jpg")]
    assert link["link"] == {"target": "a.jpg", "inside": True} and link["verdict"] == target["verdict"] != "error"
    assert link["detector"]["probability"] == pytest.approx(target["detector"]["probability"])
    assert by[str(tree / "pipe.png")]["verdict"] == "error"


@needs_posix
def test_audit_survives_hostile_tree_and_resumes(tree, tmp_path):
    from genvis_trust.audit import run_audit
    from genvis_trust.scan import Scanner

    out = tmp_path / "audit"
    scanner = Scanner(_det(tmp_path), device="cpu", provenance=False, workers=1)
    try:
        first = run_audit(tree, out, scanner=scanner)
        again = run_audit(tree, out, scanner=scanner)
    finally:
        scanner.close()
    recs = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["input"] for r in recs) == sorted(e.rel for e in walk_entries(tree))
    assert first["records"] == again["records"] == len(recs) and again["new_this_run"] == 0
    by = {r["input"]: r for r in recs}
    link, target = by["link.jpg"], by["a.jpg"]
    # the link repeats its target's scan (the file is scanned once) under its own name
    assert link["link"] == {"target": "a.jpg", "inside": True} and "link" not in target
    assert {k: v for k, v in link.items() if k not in ("input", "link")} == {k: v for k, v in target.items() if k != "input"}
    assert "latin1-\ufffdt\ufffd.png" in (out / "report.html").read_text(encoding="utf-8")  # the undecodable name, shown


# ------------------------------------------------------------------ never delete what is not ours


def _demo(*args):
    return runner.invoke(app, ["demo", *map(str, args)])


def test_demo_refuses_a_folder_it_did_not_make(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.txt").write_text("four years of work")
    r = _demo("--out", out, "--n", 1)
    assert r.exit_code == 2
    flat = "".join(r.output.split())
    assert "--force" in flat and "thesis.txt" in flat and "force=" not in flat
    assert sorted(p.name for p in out.iterdir()) == ["thesis.txt"]


def test_demo_force_replaces_only_its_own_entries(tmp_path):
    from genvis_trust.cli.demo import DEMO_ENTRIES, DEMO_MARK, prepare_out

    out = tmp_path / "mine"
    (out / "images").mkdir(parents=True)
    (out / "images" / "old.png").write_bytes(b"demo output of a previous run")
    (out / "thesis.txt").write_text("four years of work")
    elsewhere = tmp_path / "keep"
    elsewhere.mkdir()
    (elsewhere / "k").write_text("k")
    os.symlink(elsewhere, out / "audit")  # a link among the demo's names: removed, its target kept
    prepare_out(out, force=True)
    assert (out / "thesis.txt").read_text() == "four years of work"
    assert (elsewhere / "k").exists()
    assert not any((out / n).exists() or (out / n).is_symlink() for n in DEMO_ENTRIES)
    assert (out / DEMO_MARK).is_file()
    prepare_out(out, force=False)  # marked as the demo's: a rerun needs no --force
    assert (out / "thesis.txt").exists()


def test_corpus_overwrite_keeps_files_it_did_not_write(tmp_path):
    with CorpusWriter(tmp_path) as w:
        for i in range(3):
            w.add(np.full((4, 4, 3), i, np.uint8), label="real", source="t")
    (tmp_path / "images" / "notes.txt").write_text("mine")
    with CorpusWriter(tmp_path, overwrite=True) as w:
        w.add(np.zeros((4, 4, 3), np.uint8), label="real", source="t")
    assert (tmp_path / "images" / "notes.txt").read_text() == "mine"
    written = sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "images").rglob("*.png"))
    assert written == [r["path"] for r in read_corpus(tmp_path).records]



# ------------------------------------------------------------------ atomic writes, one helper


def test_atomic_path_leaves_old_file_whole_on_error(tmp_path):
    from genvis_trust.atomic import atomic_path

    target = tmp_path / "model.safetensors"
    target.write_bytes(b"old weights")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half of the new")
            raise RuntimeError("killed mid-save")
    assert target.read_bytes() == b"old weights" and os.listdir(tmp_path) == ["model.safetensors"]


def test_train_state_is_replaced_not_rewritten(tmp_path):
    import torch

    from genvis_trust.generators import load_generator
    from genvis_trust.generators.artifact import TRAIN_STATE, load_train_state, save_train_state

    g = load_generator("gan-digits", "cpu")
    opts = {"g": torch.optim.Adam(g.parameters(), lr=1e-3)}
    save_train_state(g, opts, 1, tmp_path)
    first = (tmp_path / TRAIN_STATE).stat().st_ino
    save_train_state(g, opts, 2, tmp_path)
    # a new inode: the new state was written beside the old one and renamed over it
    assert (tmp_path / TRAIN_STATE).stat().st_ino != first
    assert os.listdir(tmp_path) == [TRAIN_STATE]
    assert load_train_state(g, opts, tmp_path) == 2


def test_corpus_manifest_repair_on_resume_is_atomic(tmp_path):
    from genvis_trust.datasets.corpus import MANIFEST

    with CorpusWriter(tmp_path) as w:
        for i in range(3):
            w.add(np.full((4, 4, 3), i, np.uint8), label="real", source="t")
    m = tmp_path / MANIFEST
    with open(m, "a") as f:
        f.write('{"path": "images/000/0000')  # a crash mid-record
    before = m.stat().st_ino
    with CorpusWriter(tmp_path, resume=True) as w:
        assert w.count == 3
    assert m.stat().st_ino != before and len(read_corpus(tmp_path)) == 3


def test_no_module_writes_files_in_place():
    """Every artifact, manifest, report and key goes through genvis_trust.atomic."""
    import re

    import genvis_trust

    pkg = Path(genvis_trust.__file__).parent
    in_place = re.compile(r"\.write_(bytes|text)\(|\bsave_file\(.*str\((?!tmp)|\.savefig\((?!buf|tmp)")
    found = [f"{p.relative_to(pkg)}:{i}" for p in pkg.rglob("*.py") if p.name != "atomic.py"
             for i, line in enumerate(p.read_text().splitlines(), 1)
             if in_place.search(line) and ">>>" not in line]
    assert found == []


def test_stamp_never_replaces_an_input_or_a_file_without_force(tmp_path):
    import cv2

    assert runner.invoke(app, ["keys", "init", str(tmp_path / "keys")]).exit_code == 0
    src = tmp_path / "in"
    src.mkdir()
    big = cv2.resize(np.random.default_rng(0).integers(0, 256, (8, 8, 3)).astype(np.uint8), (256, 256))
    (src / "a.png").write_bytes(encode_image(big, "PNG"))
    (src / "a.jpg").write_bytes(encode_image(big, "JPEG"))
    original = (src / "a.png").read_bytes()

    def stamp(out, *extra):
        return runner.invoke(app, ["stamp", str(src / "a.png"), *extra, "--out", str(out), "--keys", str(tmp_path / "keys"),
                                   "--format", "PNG", "--store", str(tmp_path / "store.db")])

    r = stamp(src)  # into the inputs' own folder
    assert r.exit_code == 1 and "replace this input itself" in " ".join(r.output.split())
    assert (src / "a.png").read_bytes() == original
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"the user's file")
    r = stamp(out, str(src / "a.jpg"))  # a.png and a.jpg both become out/a.png
    flat = " ".join(r.output.split())
    assert r.exit_code == 1 and "--force" in flat and "=True" not in flat
    assert (out / "a.png").read_bytes() == b"the user's file"
    r = stamp(out, str(src / "a.jpg"), "--force")
    flat = " ".join(r.output.split())
    assert r.exit_code == 1 and "already stamped to" in flat  # the first replaced, the second refused
    assert (out / "a.png").read_bytes() != b"the user's file" and (src / "a.png").read_bytes() == original


def test_unreadable_folder_is_a_record_not_a_crash(tmp_path):
    """Root reads every folder; without its override capability (setpriv) it is refused
    like any user, which is the case to test."""
    import shutil
    import subprocess

    root = tmp_path / "tree"
    (root / "locked").mkdir(parents=True)
    (root / "locked" / "x.png").write_bytes(b"x")
    (root / "ok.png").write_bytes(b"x")
    code = ("import json, sys; from genvis_trust.datasets.folders import walk_entries; "
            "print(json.dumps([[e.rel, e.error] for e in walk_entries(sys.argv[1])]))")
    cmd = [sys.executable, "-c", code, str(root)]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: every folder is readable")
        cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *cmd]
    os.chmod(root / "locked", 0)
    try:
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    finally:
        os.chmod(root / "locked", 0o755)
    assert r.returncode == 0, r.stderr
    found = dict(json.loads(r.stdout))
    assert set(found) == {"ok.png", "locked"} and found["ok.png"] is None
    assert found["locked"]["code"] == "unreadable" and "could not be listed" in found["locked"]["message"]
