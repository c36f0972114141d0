"""The photo corpus builder's folder rules (issue 24) and the dev-set grid cutter: selection,
near-duplicate groups sharing a split, and regular tiles."""

from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
photos = runpy.run_path(str(SCRIPTS / "build_photo_corpus.py"), run_name="photos")
devset = runpy.run_path(str(SCRIPTS / "build_outside_devset.py"), run_name="devset")


def _spec(name: str) -> dict:
    return next(s for s in photos["GITHUB_FOLDERS"] if s["set"] == name)


def test_folder_rules_select_and_skip():
    sel = photos["folder_selected"]
    ex = _spec("exif-samples")
    assert sel(ex, "jpg/gps/DSCN0010.jpg", 161_713, set()) is None
    assert "under" in sel(ex, "jpg/Canon_40D.jpg", 7_958, set())
    assert sel(ex, "jpg/xmp/no_exif.jpg", 182_252, set())  # looked at: a poster
    assert sel(ex, "jpg/orientation/landscape_1.jpg", 139_435, set()) is None  # one of the 16 rotations kept
    assert sel(ex, "jpg/orientation/portrait_3.jpg", 135_813, set())
    bs = _spec("bsds500")
    assert "cbsd68" in sel(bs, "BSDS500/data/images/test/106024.jpg", 50_000, {"106024"})
    assert sel(bs, "BSDS500/data/images/test/100007.jpg", 50_000, {"106024"}) is None


def test_near_duplicates_share_a_split():
    grp, split_of = photos["folder_group"], photos["split_of"]
    ex = _spec("exif-samples")
    a = grp(ex, "jpg/hdr/canon_hdr_NO.jpg", "exif-samples/hdr/canon_hdr_NO.jpg")
    b = grp(ex, "jpg/hdr/canon_hdr_YES.jpg", "exif-samples/hdr/canon_hdr_YES.jpg")
    assert a == b and split_of(a) == split_of(b)
    # a file outside any group is its own group: the earlier corpus's splits are unchanged
    assert grp(ex, "jpg/gps/DSCN0010.jpg", "exif-samples/gps/DSCN0010.jpg") == "exif-samples/gps/DSCN0010.jpg"
    fx = _spec("exifr-fixtures")
    assert grp(fx, "test/fixtures/Bush-dog.jpg", "k1") == grp(fx, "test/fixtures/Bush-dog.tif", "k2")


def test_reserved_sources_are_not_in_the_new_folders():
    from genvis_trust.datasets.photos import RESERVED_REPOSITORIES

    assert not {s["repository"].lower() for s in photos["GITHUB_FOLDERS"]} & RESERVED_REPOSITORIES


def test_grid_tiles():
    img = np.arange(260 * 1550 * 3, dtype=np.uint32).reshape(260, 1550, 3).astype(np.uint8)
    spec = {"tile": [256, 256], "origin": [2, 2], "step": [258, 258], "grid": [1, 6]}
    tiles = list(devset["tiles_of"](img, spec))
    assert [k for k, _ in tiles] == list(range(6))
    assert all(t.shape == (256, 256, 3) for _, t in tiles)
    assert np.array_equal(tiles[1][1], img[2:258, 260:516])
    assert len(list(devset["tiles_of"](img, {**spec, "n": 4}))) == 4
    # a tile that would cross the border is not cut
    assert len(list(devset["tiles_of"](img, {**spec, "grid": [1, 7]}))) == 6
