"""Corpus folders: write, read back, verify, resume, and refusing manifests that cannot be trusted."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genvis_trust.datasets import (
    CorpusError,
    CorpusSource,
    CorpusWriter,
    SourceError,
    detect_layout,
    get_source,
    read_corpus,
    write_corpus,
)
from genvis_trust.datasets.builtin import BuiltinDigits
from genvis_trust.datasets.corpus import CARD, MANIFEST, _Loader
from genvis_trust.io import ImageLoadError, load_image, sha256_file


def _digits(n=6, **kw):
    return list(BuiltinDigits(n=n, seed=0, size=8, split=None, **kw))


def _image(value: int) -> np.ndarray:
    a = np.zeros((6, 5, 3), np.uint8)
    a[..., 0] = value
    return a


def _write(root: Path, n: int = 4, **kw) -> Path:
    with CorpusWriter(root, card={"about": "test"}, **kw) as w:
        for i in range(n):
            w.add(_image(i), label="real" if i % 2 else "generated", source="t", group=f"g{i // 2}")
    return root


def _lines(root: Path) -> list[str]:
    return (root / MANIFEST).read_text().splitlines()


def _set_lines(root: Path, lines: list[str]) -> None:
    (root / MANIFEST).write_text("".join(line + "\n" for line in lines))


def _edit_record(root: Path, line_no: int, **changes) -> None:
    lines = _lines(root)
    rec = json.loads(lines[line_no - 1])
    rec.update(changes)
    lines[line_no - 1] = json.dumps(rec)
    _set_lines(root, lines)


# ----------------------------------------------------------------------------- round trip


def test_write_read_verify_round_trip(tmp_path):
    samples = _digits(6)
    assert write_corpus(tmp_path / "c", samples, card={"data": {"source": "digits"}}) == 6
    c = read_corpus(tmp_path / "c")
    assert len(c) == 6
    assert c.card["complete"] is True and c.card["images"] == 6 and c.card["data"] == {"source": "digits"}
    assert c.card["labels"] == {"real": 6}
    for s, rec in zip(samples, c.records, strict=True):
        assert rec["key"] == s.key and rec["group"] == s.group and rec["class_id"] == s.class_id
        assert (rec["width"], rec["height"]) == (8, 8) and rec["label"] == "real"
        f = c.file(rec)
        assert f.is_relative_to((tmp_path / "c").resolve())
        assert rec["sha256"] == sha256_file(f) and rec["bytes"] == f.stat().st_size
        np.testing.assert_array_equal(load_image(f).array, s.image)  # PNG is lossless
    assert c.summary()["images"] == 6
    c.verify()


def test_corpus_source_reads_labels_classes_groups_back(tmp_path):
    samples = _digits(6)
    write_corpus(tmp_path, samples)
    assert detect_layout(tmp_path) == "corpus"
    src = get_source(str(tmp_path), split=None)
    assert isinstance(src, CorpusSource)
    back = {s.group: s for s in src}
    assert set(back) == {s.group for s in samples}
    for s in samples:
        b = back[s.group]
        assert (b.label, b.class_id) == (s.label, s.class_id)
        np.testing.assert_array_equal(b.image, s.image)
    relabeled = CorpusSource(tmp_path, label="generated", split=None)
    assert {s.label for s in relabeled} == {"generated"}
    with pytest.raises(SourceError, match="label"):
        CorpusSource(tmp_path, label="fake")


def test_corpus_source_keep_splits(tmp_path):
    samples = _digits(20)
    write_corpus(tmp_path, samples)
    kept = {it.group: it.split for it in CorpusSource(tmp_path, keep_splits=True).items()}
    assert kept == {s.group: s.meta["split"] for s in samples}
    reassigned = {it.group: it.split for it in CorpusSource(tmp_path, seed=123).items()}
    assert set(reassigned) == set(kept)


def test_jpeg_corpus_and_predecoded_data_extension(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(_image(9)).save(buf, format="JPEG")
    with CorpusWriter(tmp_path, image_format="jpg") as w:
        r1 = w.add(_image(1), label="real", source="t")
        r2 = w.add(None, label="real", source="t", key="../../evil.exe", data=buf.getvalue())
        with pytest.raises(CorpusError):
            w.add(None, label="real", source="t", data=b"not an image")
    assert r1["path"].endswith(".jpg") and r2["path"].endswith(".jpg")
    assert r2["path"].startswith("images/")
    read_corpus(tmp_path)


def test_add_refuses_bad_label_and_unlabeled_sample(tmp_path):
    s = _digits(1)[0]
    s.label = None
    with CorpusWriter(tmp_path) as w:
        with pytest.raises(CorpusError, match="label"):
            w.add(_image(0), label="fake", source="t")
        with pytest.raises(CorpusError, match="no label"):
            w.add_sample(s)
        assert w.count == 0
    with pytest.raises(CorpusError, match="image_format"):
        CorpusWriter(tmp_path / "x", image_format="gif")


# ----------------------------------------------------------------------------- resume/overwrite


def test_refuses_existing_corpus_without_resume_or_overwrite(tmp_path):
    _write(tmp_path, 3)
    before = (tmp_path / MANIFEST).read_bytes()
    with pytest.raises(CorpusError, match="already exists"):
        CorpusWriter(tmp_path)
    assert (tmp_path / MANIFEST).read_bytes() == before


def test_overwrite_replaces_and_leaves_no_stale_images(tmp_path):
    _write(tmp_path, 5)
    _write(tmp_path, 2, overwrite=True)
    c = read_corpus(tmp_path)
    assert len(c) == 2
    files = sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "images").rglob("*.*"))
    assert files == sorted(r["path"] for r in c.records)


def test_resume_after_crash_mid_line(tmp_path):
    _write(tmp_path, 5)
    lines = _lines(tmp_path)
    # crash while writing record 5: its image exists, its manifest line is half written
    (tmp_path / MANIFEST).write_text("\n".join(lines[:4]) + "\n" + lines[4][:30])
    with CorpusWriter(tmp_path, resume=True) as w:
        assert w.count == 4
        for i in range(4, 7):
            w.add(_image(i), label="real", source="t")
    c = read_corpus(tmp_path)
    paths = [r["path"] for r in c.records]
    assert len(paths) == 7 == len(set(paths))
    assert paths == [f"images/000/{i:06d}.png" for i in range(7)]
    assert [r.line for r in c.records] == list(range(1, 8))
    assert c.card["images"] == 7 and c.card["complete"] is True


def test_resume_refuses_other_data_or_format(tmp_path):
    with CorpusWriter(tmp_path, card={"data": {"source": "a", "seed": 0}}) as w:
        w.add(_image(0), label="real", source="a")
    with pytest.raises(CorpusError, match="cannot resume"):
        CorpusWriter(tmp_path, card={"data": {"source": "a", "seed": 1}}, resume=True)
    with pytest.raises(CorpusError, match="cannot resume"):
        CorpusWriter(tmp_path, card={"data": {"source": "a", "seed": 0}}, resume=True, image_format="jpeg")
    CorpusWriter(tmp_path, card={"data": {"source": "a", "seed": 0}}, resume=True).close()


def test_interrupted_writer_leaves_incomplete_card(tmp_path):
    with pytest.raises(RuntimeError):
        with CorpusWriter(tmp_path) as w:
            w.add(_image(0), label="real", source="t")
            assert json.loads((tmp_path / CARD).read_text())["complete"] is False
            raise RuntimeError("crash")
    card = json.loads((tmp_path / CARD).read_text())
    assert card["complete"] is False and card["images"] == 1


# ----------------------------------------------------------------------------- untrusted manifests


def test_path_leaving_root_refused_naming_line(tmp_path):
    _write(tmp_path, 3)
    (tmp_path.parent / "outside.png").write_bytes(b"x")
    _edit_record(tmp_path, 2, path="../outside.png")
    with pytest.raises(CorpusError, match=rf"{MANIFEST}:2: .*leaves the corpus root"):
        read_corpus(tmp_path, verify=False)
    _edit_record(tmp_path, 2, path="images/../../outside.png")
    with pytest.raises(CorpusError, match=":2:"):
        read_corpus(tmp_path)


def test_absolute_path_refused(tmp_path):
    _write(tmp_path, 2)
    real = str((tmp_path / _lines_path(tmp_path, 1)).resolve())
    _edit_record(tmp_path, 1, path=real)
    with pytest.raises(CorpusError, match=r":1: .*absolute"):
        read_corpus(tmp_path, verify=False)


def _lines_path(root: Path, line_no: int) -> str:
    return json.loads(_lines(root)[line_no - 1])["path"]


def test_wrong_sha256_names_the_record(tmp_path):
    _write(tmp_path, 3)
    _edit_record(tmp_path, 3, sha256="0" * 64)
    with pytest.raises(CorpusError) as e:
        read_corpus(tmp_path)
    assert f"{MANIFEST}:3" in str(e.value) and _lines_path(tmp_path, 3) in str(e.value)
    assert "sha256" in str(e.value)
    assert len(read_corpus(tmp_path, hashes=False)) == 3  # presence only


def test_tampered_file_detected(tmp_path):
    _write(tmp_path, 3)
    (tmp_path / _lines_path(tmp_path, 2)).write_bytes(b"\x89PNG tampered")
    with pytest.raises(CorpusError, match=r":2 \(.*sha256 mismatch"):
        read_corpus(tmp_path)


def test_missing_file_named(tmp_path):
    _write(tmp_path, 3)
    (tmp_path / _lines_path(tmp_path, 1)).unlink()
    with pytest.raises(CorpusError, match=r":1 \(.*missing"):
        read_corpus(tmp_path, hashes=False)


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("{not json", r":2: not valid JSON"),
        ('["a list"]', r":2: record lacks"),
        ('{"path": "images/x.png", "label": "real"}', r":2: record lacks"),
    ],
)
def test_malformed_lines(tmp_path, bad_line, message):
    _write(tmp_path, 3)
    lines = _lines(tmp_path)
    lines[1] = bad_line
    _set_lines(tmp_path, lines)
    with pytest.raises(CorpusError, match=message):
        read_corpus(tmp_path, verify=False)


def test_bad_label_bad_hash_format_and_duplicate_path(tmp_path):
    _write(tmp_path, 3)
    _edit_record(tmp_path, 2, label="fake")
    with pytest.raises(CorpusError, match=r":2: label must be one of"):
        read_corpus(tmp_path, verify=False)
    _edit_record(tmp_path, 2, label="real", sha256=12)
    with pytest.raises(CorpusError, match=r":2: sha256"):
        read_corpus(tmp_path, verify=False)
    _edit_record(tmp_path, 2, sha256="a" * 64, path=_lines_path(tmp_path, 1))
    with pytest.raises(CorpusError, match=r":2: .*already line 1"):
        read_corpus(tmp_path, verify=False)


def test_not_a_corpus(tmp_path):
    with pytest.raises(CorpusError, match="not a corpus"):
        read_corpus(tmp_path)


def test_loader_refuses_file_changed_after_listing(tmp_path):
    _write(tmp_path, 3)
    src = CorpusSource(tmp_path, split=None)
    items = src.items()  # listed (and verified) while intact
    changed = tmp_path / items[1].key
    Image.fromarray(_image(200)).save(changed, format="PNG")  # a valid image, other bytes
    (tmp_path / items[2].key).unlink()
    samples = list(src)
    assert [s.key for s in samples] == [items[0].key]
    codes = {e["key"]: e["code"] for e in src.errors}
    assert codes == {items[1].key: "corrupt", items[2].key: "not_found"}
    loader = _Loader(changed, "0" * 64)
    with pytest.raises(ImageLoadError, match="sha256"):
        loader()


def test_resume_without_card_keeps_existing_card_fields(tmp_path):
    import numpy as np

    from genvis_trust.datasets import CorpusWriter, read_corpus

    with CorpusWriter(tmp_path / "c", card={"generator": {"family": "gan"}}) as w:
        w.add(np.zeros((4, 4, 3), np.uint8), label="generated", source="g")
    with CorpusWriter(tmp_path / "c", resume=True) as w:
        w.add(np.ones((4, 4, 3), np.uint8), label="generated", source="g")
    c = read_corpus(tmp_path / "c")
    assert len(c) == 2 and c.card["generator"] == {"family": "gan"} and c.card["complete"] is True


def test_mask_written_beside_image_and_read_back(tmp_path):
    img = np.full((20, 30, 3), 128, np.uint8)
    mask = np.zeros((20, 30), bool)
    mask[5:10, 8:20] = True
    with CorpusWriter(tmp_path / "c") as w:
        rec = w.add(img, label="generated", source="inpaint", mask=mask)
        w.add(img, label="real", source="photo")
    assert rec["mask"].startswith("masks/") and len(rec["mask_sha256"]) == 64
    c = read_corpus(tmp_path / "c")
    back = c.load_mask(c.records[0])
    assert back.dtype == bool and (back == mask).all()
    assert c.load_mask(c.records[1]) is None


def test_mask_shape_must_match_image(tmp_path):
    with CorpusWriter(tmp_path / "c") as w:
        with pytest.raises(CorpusError, match="mask must be H x W"):
            w.add(np.zeros((20, 30, 3), np.uint8), label="generated", source="x", mask=np.zeros((30, 20)))


def test_mask_tampering_is_named(tmp_path):
    with CorpusWriter(tmp_path / "c") as w:
        rec = w.add(np.zeros((8, 8, 3), np.uint8), label="generated", source="x", mask=np.ones((8, 8)))
    from genvis_trust.io import encode_image

    (tmp_path / "c" / rec["mask"]).write_bytes(encode_image(np.zeros((8, 8), np.uint8), "PNG"))
    c = read_corpus(tmp_path / "c")
    with pytest.raises(CorpusError, match="mask sha256 mismatch"):
        c.load_mask(c.records[0])


def test_overwrite_removes_old_masks(tmp_path):
    with CorpusWriter(tmp_path / "c") as w:
        rec = w.add(np.zeros((8, 8, 3), np.uint8), label="generated", source="x", mask=np.ones((8, 8)))
    with CorpusWriter(tmp_path / "c", overwrite=True) as w:
        w.add(np.zeros((8, 8, 3), np.uint8), label="real", source="x")
    assert not (tmp_path / "c" / rec["mask"]).exists()
