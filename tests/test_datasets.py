"""Real-data sources: built-ins, splits by source image, patch sampling, folder layouts, adapters."""

from __future__ import annotations

import io
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genvis_trust.datasets import (
    SPLITS,
    FolderSource,
    ForenSynthsSource,
    GenImageSource,
    MapDatasetSource,
    SourceError,
    assign_splits,
    detect_layout,
    get_source,
    list_sources,
)
from genvis_trust.datasets.base import to_rgb_uint8
from genvis_trust.datasets.builtin import BuiltinDigits, BuiltinFaces, BuiltinPhotos
from genvis_trust.io import ERROR_CODES


def _png(path: Path, value: int = 0, size: tuple[int, int] = (12, 10)) -> Path:
    """A tiny PNG whose pixels encode ``value`` (so files differ)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = size
    a = np.full((h, w, 3), value % 256, np.uint8)
    a[0, 0] = (value * 7 % 256, value * 13 % 256, 255)
    Image.fromarray(a).save(path, format="PNG")
    return path


def _groups_by_split(src_factory, **opts) -> dict[str, set[str]]:
    """Groups of the samples each split actually yields (every item gets >= 1 patch)."""
    out = {}
    for split in SPLITS:
        probe = src_factory(split=split, **opts)
        n_items = len(probe.split_items())
        src = src_factory(split=split, n=2 * n_items, **opts) if opts.get("patch") else probe
        samples = list(src)
        assert all(s.meta["split"] == split for s in samples)
        out[split] = {s.group for s in samples}
    return out


# ----------------------------------------------------------------------------- registry


def test_builtins_registered_and_unknown_name_lists_them():
    names = list_sources()
    assert {"builtin-photos", "builtin-faces", "builtin-digits"} <= set(names)
    with pytest.raises(SourceError) as e:
        get_source("no-such-source")
    for name in ("builtin-photos", "builtin-faces", "builtin-digits"):
        assert name in str(e.value)


def test_option_a_source_does_not_take_is_a_source_error():
    with pytest.raises(SourceError, match="builtin-digits"):
        get_source("builtin-digits", label="real")


@pytest.mark.parametrize(
    "opts", [{"split": "training"}, {"patch": 0}, {"n": -1}, {"scales": (1.5,)}, {"scales": ()}]
)
def test_bad_common_options_refused(opts):
    with pytest.raises(SourceError):
        BuiltinDigits(**opts)


# ----------------------------------------------------------------------------- splits


def test_photo_splits_never_share_a_source_photo():
    items = BuiltinPhotos().items()
    all_groups = {it.group for it in items}
    by_split = _groups_by_split(BuiltinPhotos, patch=16, seed=0, scales=(1.0,))
    train, val, test = (by_split[s] for s in SPLITS)
    assert not train & val and not train & test and not val & test
    assert train | val | test == all_groups
    assert all(by_split[s] for s in SPLITS)  # 10 photos: every split gets one


def test_stereo_pair_is_one_group_in_one_split():
    items = {it.key: it for it in BuiltinPhotos().items()}
    left, right = items["skimage/motorcycle_left"], items["skimage/motorcycle_right"]
    assert left.group == right.group
    for seed in range(5):
        split_of = {it.key: it.split for it in BuiltinPhotos(seed=seed).items()}
        assert split_of["skimage/motorcycle_left"] == split_of["skimage/motorcycle_right"]


def test_folder_splits_never_share_a_group(tmp_path):
    for i in range(24):
        _png(tmp_path / f"sub{i % 3}" / f"img{i:02d}.png", i)

    def factory(**o):
        return FolderSource(tmp_path, label="real", **o)

    by_split = _groups_by_split(factory, seed=3)
    train, val, test = (by_split[s] for s in SPLITS)
    assert not train & val and not train & test and not val & test
    assert train | val | test == {it.group for it in factory().items()}
    assert len(train | val | test) == 24


def test_assign_splits_fractions_roughly_respected():
    groups = [f"g{i}" for i in range(1000)]
    counts = Counter(assign_splits(groups, (0.7, 0.15, 0.15), seed=0).values())
    assert sum(counts.values()) == 1000
    assert abs(counts["train"] - 700) <= 2
    assert abs(counts["val"] - 150) <= 2
    assert abs(counts["test"] - 150) <= 2


@pytest.mark.parametrize(
    "fractions", [(0.7, 0.15, 0.15), (0.8, 0.1, 0.1), (0.0, 0.5, 0.5), (0.5, 0.5, 0.0), (1, 0, 0)]
)
def test_assign_splits_nonzero_splits_nonempty_zero_splits_empty(fractions):
    wanted = [s for s, f in zip(SPLITS, fractions, strict=True) if f > 0]
    for n in range(len(wanted), 30):
        groups = [f"g{i}" for i in range(n)]
        counts = Counter(assign_splits(groups, fractions, seed=n).values())
        assert sum(counts.values()) == n
        assert all(counts[s] > 0 for s in wanted), (n, counts)
        assert all(counts[s] == 0 for s in SPLITS if s not in wanted), (n, counts)


def test_assign_splits_groups_counted_once_and_bad_fractions_refused():
    a = assign_splits(["a", "a", "b", "c"], seed=0)
    assert sorted(a) == ["a", "b", "c"]
    with pytest.raises(SourceError):
        assign_splits(["a"], (0.5, 0.5))
    with pytest.raises(SourceError):
        assign_splits(["a"], (1.0, -0.5, 0.5))


def test_seed_changes_the_assignment():
    split0 = {it.key: it.split for it in BuiltinDigits(seed=0).items()}
    split0_again = {it.key: it.split for it in BuiltinDigits(seed=0).items()}
    split1 = {it.key: it.split for it in BuiltinDigits(seed=1).items()}
    assert split0 == split0_again
    assert split0 != split1
    assert Counter(split0.values()) == Counter(split1.values())  # same sizes, other members


# ----------------------------------------------------------------------------- determinism


def _stream(**opts):
    return list(BuiltinPhotos(**opts))


def test_patches_are_deterministic_exact_in_count_and_shape():
    opts = dict(patch=24, n=13, seed=5, split="train")
    a, b = _stream(**opts), _stream(**opts)
    assert len(a) == 13 == len(BuiltinPhotos(**opts))
    assert [s.key for s in a] == [s.key for s in b]
    assert len({s.key for s in a}) == 13
    for x, y in zip(a, b, strict=True):
        assert x.image.shape == (24, 24, 3) and x.image.dtype == np.uint8
        np.testing.assert_array_equal(x.image, y.image)
        assert x.label == "real" and x.source == "builtin-photos"
        assert x.meta["patch"][2] == 24


def test_other_seed_gives_other_patches():
    a = _stream(patch=24, n=6, seed=0, split=None)
    b = _stream(patch=24, n=6, seed=1, split=None)
    assert [s.key for s in a] != [s.key for s in b]
    assert any(
        x.image.shape != y.image.shape or not np.array_equal(x.image, y.image)
        for x, y in zip(a, b, strict=True)
    )


def test_fewer_patches_than_images_spread_over_distinct_images():
    src = BuiltinPhotos(patch=8, n=3, seed=0, split=None, scales=(0.25,))
    samples = list(src)
    assert len(samples) == 3
    assert len({s.meta["path"] if "path" in s.meta else s.key.split("#")[0] for s in samples}) == 3


@pytest.mark.parametrize("scales", [(0.5,), (1.0, 0.25)])
def test_scales_option_respected(scales):
    samples = _stream(patch=16, n=24, seed=2, split="train", scales=scales)
    seen = {s.meta["scale"] for s in samples}
    assert seen <= set(scales)
    assert seen == set(scales)  # 24 draws: every listed scale occurs
    for s in samples:
        assert f"@{s.meta['scale']:g}:" in s.key


def test_whole_images_with_n_pick_a_deterministic_subset():
    a = [s.key for s in BuiltinDigits(n=5, seed=0)]
    b = [s.key for s in BuiltinDigits(n=5, seed=0)]
    c = [s.key for s in BuiltinDigits(n=5, seed=9)]
    assert a == b and len(a) == 5 and a != c
    assert len(BuiltinDigits(n=5)) == 5


# ----------------------------------------------------------------------------- built-ins


def test_builtin_digits():
    src = BuiltinDigits(split=None)
    items = src.items()
    assert len(items) == 1797 == len(src)
    assert {it.class_id for it in items} == set(range(10))
    assert src.num_classes == 10
    s = next(iter(BuiltinDigits(n=1, split=None)))
    assert s.image.shape == (32, 32, 3) and s.image.dtype == np.uint8
    assert np.array_equal(s.image[..., 0], s.image[..., 2])  # grey
    small = next(iter(BuiltinDigits(size=16, n=1)))
    assert small.image.shape == (16, 16, 3)
    assert BuiltinDigits(size=16).spec()["size"] == 16


def test_builtin_faces():
    src = BuiltinFaces(split=None)
    items = src.items()
    assert len(items) == 200
    assert Counter(it.class_id for it in items) == {1: 100, 0: 100}
    assert len({it.group for it in items}) == 200
    s = next(iter(BuiltinFaces(size=25, n=1)))
    assert s.image.shape == (25, 25, 3)
    assert next(iter(BuiltinFaces(n=1))).image.shape == (32, 32, 3)


def test_builtin_photos_describe_counts_images_and_groups():
    d = BuiltinPhotos().describe()
    assert d["images"] == 11
    assert sum(d["groups_per_split"].values()) == 10
    assert d["labels"] == {"real": 11}


# ----------------------------------------------------------------------------- folder layouts


def test_plain_folder_with_label(tmp_path):
    for i, rel in enumerate(["a.png", "b/c.png", "b/d/e.png"]):
        _png(tmp_path / rel, i)
    (tmp_path / "notes.txt").write_text("not an image")
    _png(tmp_path / ".hidden.png", 9)
    assert detect_layout(tmp_path) == "folder"
    src = get_source(str(tmp_path), label="generated", split=None)
    assert isinstance(src, FolderSource)
    samples = list(src)
    assert sorted(s.key for s in samples) == ["a.png", "b/c.png", "b/d/e.png"]
    assert all(s.label == "generated" and s.group == s.key for s in samples)
    assert all(s.image.shape == (12, 10, 3) for s in samples)
    assert list(FolderSource(tmp_path, split=None))[0].label is None


def test_plain_folder_refuses_bad_label_and_empty_folder(tmp_path):
    _png(tmp_path / "a.png")
    with pytest.raises(SourceError, match="label"):
        FolderSource(tmp_path, label="fake")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="no image"):
        FolderSource(empty).items()
    with pytest.raises(SourceError, match="not a folder"):
        FolderSource(tmp_path / "a.png")


def test_forensynths_flat(tmp_path):
    for i in range(3):
        _png(tmp_path / "0_real" / f"r{i}.png", i)
        _png(tmp_path / "1_fake" / f"f{i}.png", 10 + i)
    assert detect_layout(tmp_path) == "forensynths"
    src = get_source(str(tmp_path))
    assert isinstance(src, ForenSynthsSource)
    labels = {it.key: it.label for it in src.items()}
    assert labels["0_real/r0.png"] == "real" and labels["1_fake/f2.png"] == "generated"
    assert Counter(labels.values()) == {"real": 3, "generated": 3}
    assert all(it.meta["family"] is None for it in src.items())
    assert all(it.split in SPLITS for it in src.items())


def test_forensynths_nested_per_class_and_under_splits(tmp_path):
    _png(tmp_path / "train" / "car" / "0_real" / "a.png", 1)
    _png(tmp_path / "train" / "car" / "1_fake" / "b.png", 2)
    _png(tmp_path / "train" / "cat" / "0_real" / "c.png", 3)
    _png(tmp_path / "val" / "car" / "0_real" / "d.png", 4)
    _png(tmp_path / "val" / "cat" / "1_fake" / "e.png", 5)
    _png(tmp_path / "test" / "cat" / "1_fake" / "f.png", 6)
    assert detect_layout(tmp_path) == "forensynths"
    items = {it.key: it for it in get_source(str(tmp_path), seed=1).items()}
    assert {k: (it.split, it.meta["family"], it.label) for k, it in items.items()} == {
        "train/car/0_real/a.png": ("train", "car", "real"),
        "train/car/1_fake/b.png": ("train", "car", "generated"),
        "train/cat/0_real/c.png": ("train", "cat", "real"),
        "val/car/0_real/d.png": ("val", "car", "real"),
        "val/cat/1_fake/e.png": ("val", "cat", "generated"),
        "test/cat/1_fake/f.png": ("test", "cat", "generated"),
    }
    val = list(ForenSynthsSource(tmp_path, split="val"))
    assert sorted(s.key for s in val) == ["val/car/0_real/d.png", "val/cat/1_fake/e.png"]
    assert all(s.meta["family"] in ("car", "cat") for s in val)


def test_forensynths_class_folders_without_split(tmp_path):
    _png(tmp_path / "car" / "0_real" / "a.png", 1)
    _png(tmp_path / "car" / "1_fake" / "b.png", 2)
    items = ForenSynthsSource(tmp_path).items()
    assert {it.meta["family"] for it in items} == {"car"}
    assert {it.label for it in items} == {"real", "generated"}


def test_forensynths_takes_no_label_and_needs_label_folders(tmp_path):
    _png(tmp_path / "0_real" / "a.png")
    with pytest.raises(SourceError, match="label"):
        get_source(str(tmp_path), label="generated")
    other = tmp_path / "other"
    _png(other / "x.png")
    with pytest.raises(SourceError, match="0_real"):
        ForenSynthsSource(other).items()


def test_genimage(tmp_path):
    _png(tmp_path / "sdv4" / "train" / "nature" / "a.png", 1)
    _png(tmp_path / "sdv4" / "train" / "ai" / "b.png", 2)
    _png(tmp_path / "sdv4" / "val" / "ai" / "c.png", 3)
    _png(tmp_path / "sdv4" / "val" / "nature" / "d.png", 4)
    _png(tmp_path / "midj" / "train" / "ai" / "e.png", 5)
    assert detect_layout(tmp_path) == "genimage"
    src = get_source(str(tmp_path))
    assert isinstance(src, GenImageSource)
    got = {it.key: (it.label, it.split, it.meta["family"]) for it in src.items()}
    assert got == {
        "sdv4/train/nature/a.png": ("real", "train", "sdv4"),
        "sdv4/train/ai/b.png": ("generated", "train", "sdv4"),
        "sdv4/val/ai/c.png": ("generated", "val", "sdv4"),
        "sdv4/val/nature/d.png": ("real", "val", "sdv4"),
        "midj/train/ai/e.png": ("generated", "train", "midj"),
    }
    assert len(list(GenImageSource(tmp_path, split="val"))) == 2
    assert detect_layout(tmp_path / "sdv4") == "genimage"
    assert {it.meta["family"] for it in GenImageSource(tmp_path / "sdv4").items()} == {None}


def test_layout_override_and_bad_layout(tmp_path):
    _png(tmp_path / "0_real" / "a.png")
    assert isinstance(get_source(str(tmp_path), layout="folder"), FolderSource)
    with pytest.raises(SourceError, match="layout"):
        get_source(str(tmp_path), layout="imagenet")
    with pytest.raises(SourceError, match="folder"):
        get_source(str(tmp_path / "0_real" / "a.png"))


def test_corrupt_file_recorded_and_rest_yielded(tmp_path):
    for i in range(3):
        _png(tmp_path / f"ok{i}.png", i)
    (tmp_path / "garbage.png").write_bytes(b"this is not an image at all")
    good = _png(tmp_path / "whole.png", 7, size=(40, 40)).read_bytes()
    (tmp_path / "truncated.png").write_bytes(good[: len(good) // 2])
    src = FolderSource(tmp_path, label="real", split=None)
    samples = list(src)
    assert sorted(s.key for s in samples) == ["ok0.png", "ok1.png", "ok2.png", "whole.png"]
    by_key = {e["key"]: e for e in src.errors}
    assert set(by_key) == {"garbage.png", "truncated.png"}
    assert by_key["garbage.png"]["code"] == "not_an_image"
    for e in by_key.values():
        assert e["code"] in ERROR_CODES and e["message"]
        assert e["path"].endswith(e["key"])


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_symlink_outside_root_not_followed(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    _png(root / "in.png", 1)
    secret = _png(outside / "secret.png", 2)
    os.symlink(secret, root / "link_out.png")
    os.symlink(outside, root / "dir_out")
    os.symlink(root / "in.png", root / "link_in.png")
    keys = [it.key for it in FolderSource(root).items()]
    assert "link_out.png" not in keys and not any(k.startswith("dir_out") for k in keys)
    assert sorted(keys) == ["in.png", "link_in.png"]  # in-root link keeps its own key


# ----------------------------------------------------------------------------- adapters


def test_map_dataset_fakedata_and_totensor():
    from torchvision.datasets import FakeData
    from torchvision.transforms import ToTensor

    plain = MapDatasetSource(FakeData(size=4, image_size=(3, 12, 10), num_classes=5), split=None)
    tensor = MapDatasetSource(
        FakeData(size=4, image_size=(3, 12, 10), num_classes=5, transform=ToTensor()), split=None
    )
    a, b = list(plain), list(tensor)
    assert len(a) == len(b) == 4
    assert plain.num_classes == 5
    for x, y in zip(a, b, strict=True):
        assert y.image.shape == (12, 10, 3) and y.image.dtype == np.uint8
        np.testing.assert_array_equal(x.image, y.image)  # ToTensor's /255 undone exactly
        assert x.class_id in range(5) and x.class_id == y.class_id
        assert x.label == "real" and x.source == "dataset:FakeData"


def test_map_dataset_imagefolder_classes_from_targets(tmp_path):
    from torchvision.datasets import ImageFolder

    for i in range(2):
        _png(tmp_path / "cats" / f"c{i}.png", i)
        _png(tmp_path / "dogs" / f"d{i}.png", 10 + i)
    ds = ImageFolder(str(tmp_path))
    src = MapDatasetSource(
        ds, label_of=lambda t: "generated" if t == 1 else "real", split=None, name="pets"
    )
    items = src.items()
    assert [it.class_id for it in items] == [0, 0, 1, 1] == list(ds.targets)
    assert [it.label for it in items] == ["real", "real", "generated", "generated"]
    assert src.num_classes == 2
    samples = list(src)
    assert all(s.image.shape == (12, 10, 3) and s.source == "pets" for s in samples)


def test_map_dataset_refusals():
    with pytest.raises(SourceError, match="map-style"):
        MapDatasetSource(iter([]))
    with pytest.raises(SourceError, match="label"):
        MapDatasetSource([(np.zeros((4, 4, 3), np.uint8), 0)], label="fake").items()


def test_to_rgb_uint8_forms():
    import torch

    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert to_rgb_uint8(grey).shape == (3, 4, 3)
    rgba = np.zeros((3, 4, 4), np.uint8)
    assert to_rgb_uint8(rgba).shape == (3, 4, 3)
    t = torch.full((1, 3, 4), 1.0)
    out = to_rgb_uint8(t)
    assert out.shape == (3, 4, 3) and out.dtype == np.uint8 and out.max() == 255
    pil = Image.open(io.BytesIO(_png_bytes()))
    assert to_rgb_uint8(pil).shape == (2, 2, 3)
    with pytest.raises(SourceError):
        to_rgb_uint8(np.zeros((2, 2, 2), np.uint8))


def _png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(buf, format="PNG")
    return buf.getvalue()
