import numpy as np
import pytest

from genvis_trust.datasets import perturbations as P
from genvis_trust.datasets.perturbations import (
    PERTURBATIONS,
    STANDARD_ROBUSTNESS_SUITE,
    Compose,
    OneOf,
    Perturbation,
    RandomApply,
    Range,
    apply,
    apply_batch,
    create_perturbation,
    derive_rng,
    list_perturbations,
    parse_perturbation,
)


def natural(h=64, w=64, seed=0):
    """Gradients plus mildly smoothed noise: some texture, some flat structure."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([x / w * 200, y / h * 200, (x + y) / (h + w) * 255], axis=-1)
    noise = rng.normal(0, 25, (h, w, 3)).astype(np.float32)
    noise = (noise + np.roll(noise, 1, 0) + np.roll(noise, 1, 1)) / 2
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def laplacian_var(img):
    g = img.astype(np.float64).mean(-1)
    lap = -4 * g[1:-1, 1:-1] + g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:]
    return float(lap.var())


def assert_image(out, shape):
    assert isinstance(out, np.ndarray)
    assert out.dtype == np.uint8
    assert out.shape == shape


# One example call per registered name: a new perturbation without an entry fails below.
EXAMPLES = {
    "identity": {},
    "jpeg": {"quality": 60},
    "webp": {"quality": 60},
    "resize": {"factor": 0.5},
    "resize_back": {"factor": 0.5},
    "crop": {"fraction": 0.75},
    "crop_resize": {"fraction": 0.75},
    "gaussian_blur": {"sigma": 1.5},
    "gaussian_noise": {"sigma": 4.0},
    "brightness_contrast": {"brightness": 0.1, "contrast": 1.3},
    "format_roundtrip": {"fmt": "JPEG", "quality": 80},
    "saturation": {"factor": 1.5},
    "rotate": {"degrees": 2.0},
}


def test_every_registered_perturbation_has_an_example():
    assert sorted(EXAMPLES) == list_perturbations()


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_registered_perturbation_contract(name):
    img = natural(48, 40)
    before = img.copy()
    p = create_perturbation(name, **EXAMPLES[name])
    out = apply(img, p, seed=3)
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    assert out.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(img, before)  # input never modified
    assert out is not img
    np.testing.assert_array_equal(out, apply(img, p, seed=3))  # deterministic
    assert parse_perturbation(p.spec) == p  # spec round trip
    assert str(p) == p.spec


# --------------------------------------------------------------------------- codecs


def test_jpeg_changes_image_and_lower_quality_is_worse():
    img = natural()
    q = {quality: psnr(img, P.jpeg(img, quality)) for quality in (95, 75, 30, 10)}
    assert np.isfinite(q[95])  # lossy: output differs from input
    assert q[95] > q[75] > q[30] > q[10]
    # noisy chroma suffers from 4:2:0; with full chroma, quality 95 is near-transparent
    assert psnr(img, P.jpeg(img, 95, "4:4:4")) > max(q[95] + 5, 35)


def test_jpeg_subsampling_444_keeps_fine_colour_detail():
    # A 1-pixel red/blue checkerboard: luma is nearly flat, all detail is in chroma.
    y, x = np.mgrid[0:64, 0:64]
    img = np.zeros((64, 64, 3), np.uint8)
    img[(x + y) % 2 == 0] = (255, 0, 0)
    img[(x + y) % 2 == 1] = (0, 0, 255)
    scores = {s: psnr(img, P.jpeg(img, 90, s)) for s in ("4:4:4", "4:2:2", "4:2:0")}
    assert scores["4:4:4"] > scores["4:2:2"] + 3
    assert scores["4:4:4"] > scores["4:2:0"] + 3
    red = (x + y) % 2 == 0
    out420 = P.jpeg(img, 90, "4:2:0").astype(int)
    # 4:2:0 averages red and blue chroma into purple: red pixels lose most of their red lead.
    assert (out420[red][:, 0] - out420[red][:, 2]).mean() < 100
    out444 = P.jpeg(img, 90, "4:4:4").astype(int)
    assert (out444[red][:, 0] - out444[red][:, 2]).mean() > 200


def test_webp_is_lossy_and_quality_matters():
    img = natural()
    hi, lo = psnr(img, P.webp(img, 95)), psnr(img, P.webp(img, 10))
    assert np.isfinite(hi) and hi > lo


def test_format_roundtrip():
    img = natural()
    np.testing.assert_array_equal(P.format_roundtrip(img, "PNG"), img)
    np.testing.assert_array_equal(P.format_roundtrip(img, "png"), img)
    np.testing.assert_array_equal(
        P.format_roundtrip(img, "JPEG", quality=70, subsampling="4:4:4"),
        P.jpeg(img, 70, "4:4:4"),
    )
    np.testing.assert_array_equal(P.format_roundtrip(img, "JPEG"), P.jpeg(img, 95, "4:2:0"))
    np.testing.assert_array_equal(P.format_roundtrip(img, "WEBP", quality=50), P.webp(img, 50))
    with pytest.raises(ValueError, match="quality"):
        P.format_roundtrip(img, "PNG", quality=90)
    with pytest.raises(ValueError, match="subsampling"):
        P.format_roundtrip(img, "WEBP", subsampling="4:4:4")
    with pytest.raises(ValueError, match="GIF"):
        P.format_roundtrip(img, "GIF")


@pytest.mark.parametrize(
    "call",
    [
        lambda img: P.jpeg(img, 0),
        lambda img: P.jpeg(img, 101),
        lambda img: P.jpeg(img, 75.5),
        lambda img: P.jpeg(img, 75, "4:1:1"),
        lambda img: P.resize(img, 0),
        lambda img: P.resize(img, 0.5, "cubic-ish"),
        lambda img: P.crop(img, 1.5),
        lambda img: P.gaussian_blur(img, -1),
        lambda img: P.brightness_contrast(img, brightness=2),
        lambda img: P.brightness_contrast(img, contrast=-1),
    ],
)
def test_bad_values_raise(call):
    with pytest.raises(ValueError):
        call(natural(16, 16))


def test_bad_images_raise():
    with pytest.raises(TypeError, match="uint8"):
        P.identity(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        P.jpeg(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="shape"):
        P.gaussian_blur(np.zeros((8, 8, 4), np.uint8), 1)


# --------------------------------------------------------------------------- geometry


@pytest.mark.parametrize("method", sorted(P.RESIZE_METHODS))
@pytest.mark.parametrize(
    "shape,factor,expected",
    [
        ((64, 48), 0.5, (32, 24)),
        ((10, 7), 0.33, (3, 2)),
        ((5, 5), 0.01, (1, 1)),
        ((9, 4), 2.5, (22, 10)),
    ],
)
def test_resize_shapes(method, shape, factor, expected):
    img = natural(*shape)
    assert_image(P.resize(img, factor, method), (*expected, 3))


def test_resize_methods_differ_and_nearest_picks_pixels():
    img = natural()
    outs = {m: P.resize(img, 0.5, m) for m in P.RESIZE_METHODS}
    assert not np.array_equal(outs["nearest"], outs["bilinear"])
    assert not np.array_equal(outs["bilinear"], outs["bicubic"])
    up = P.resize(img, 2, "nearest")
    np.testing.assert_array_equal(up[::2, ::2], img)


def test_resize_back_keeps_shape_and_loses_detail():
    img = natural(60, 44)
    out75, out50 = P.resize_back(img, 0.75), P.resize_back(img, 0.5)
    assert_image(out50, img.shape)
    assert psnr(img, out75) > psnr(img, out50)
    assert np.isfinite(psnr(img, out50))
    np.testing.assert_array_equal(P.resize_back(img, 1.0), img)


def test_crop_shape_position_and_randomness():
    img = natural(100, 60)
    out = P.crop(img, 0.7)
    assert_image(out, (70, 42, 3))
    np.testing.assert_array_equal(out, img[15:85, 9:51])  # centred without rng
    # centre=True ignores the rng
    np.testing.assert_array_equal(P.crop(img, 0.7, rng=derive_rng(0, 0), center=True), out)
    crops = [P.crop(img, 0.7, rng=derive_rng(0, i)) for i in range(8)]
    assert all(c.shape == (70, 42, 3) for c in crops)
    assert len({c.tobytes() for c in crops}) > 1  # random position
    # every random crop is a true window of the input
    for c in crops:
        hits = np.argwhere(img[:, :, 0] == c[0, 0, 0])
        assert any(
            np.array_equal(img[top : top + 70, left : left + 42], c)
            for top, left in hits
            if top <= 30 and left <= 18
        )
    assert_image(P.crop(natural(3, 3), 0.1), (1, 1, 3))


def test_crop_resize_restores_size():
    img = natural(64, 48)
    out = P.crop_resize(img, 0.5, center=True)
    assert_image(out, img.shape)
    # exactly the centre crop, zoomed back to the input size
    np.testing.assert_array_equal(out, P.resize(P.crop(img, 0.5), 2.0, "bilinear"))


# --------------------------------------------------------------------------- filters


def test_blur_reduces_high_frequencies_and_zero_is_identity():
    img = natural()
    np.testing.assert_array_equal(P.gaussian_blur(img, 0), img)
    v0, v1, v3 = (laplacian_var(P.gaussian_blur(img, s)) for s in (0, 1, 3))
    assert v0 > 3 * v1 > 3 * v3
    assert_image(P.gaussian_blur(img, 1), img.shape)
    # mean brightness preserved
    assert abs(P.gaussian_blur(img, 2).mean() - img.mean()) < 2


def test_noise_std_and_determinism():
    img = np.full((128, 128, 3), 128, np.uint8)  # mid-grey: no clipping
    out = P.gaussian_noise(img, 5.0, np.random.default_rng(1))
    diff = out.astype(np.float64) - 128
    assert abs(diff.std() - 5.0) < 0.2
    assert abs(diff.mean()) < 0.2
    np.testing.assert_array_equal(out, P.gaussian_noise(img, 5.0, np.random.default_rng(1)))
    assert not np.array_equal(out, P.gaussian_noise(img, 5.0, np.random.default_rng(2)))
    np.testing.assert_array_equal(P.gaussian_noise(img, 0, np.random.default_rng(1)), img)
    with pytest.raises(ValueError, match="rng"):
        P.gaussian_noise(img, 5.0, None)
    with pytest.raises(ValueError, match="sigma"):
        P.gaussian_noise(img, -1, np.random.default_rng(1))


def test_noise_clips_instead_of_wrapping():
    img = np.zeros((64, 64, 3), np.uint8)
    img[:32] = 255
    out = P.gaussian_noise(img, 50, np.random.default_rng(0)).astype(int)
    assert out[:32].mean() > 200 and out[32:].mean() < 55  # wraparound would flip these


def test_brightness_contrast():
    img = np.array([[[0, 100, 127], [128, 200, 255]]], np.uint8)
    np.testing.assert_array_equal(P.brightness_contrast(img), img)
    np.testing.assert_array_equal(
        P.brightness_contrast(img, brightness=0.1), np.clip(np.rint(img + 25.5), 0, 255)
    )
    np.testing.assert_array_equal(P.brightness_contrast(img, brightness=-1.0), np.zeros_like(img))
    c = P.brightness_contrast(img, contrast=2.0).astype(int)
    np.testing.assert_array_equal(c, [[[0, 72, 126], [128, 255, 255]]])
    flat = P.brightness_contrast(img, contrast=0.0)
    assert set(np.unique(flat)) == {128}  # 127.5 rounds half to even


# --------------------------------------------------------------------------- object layer


def test_perturbation_spec_and_parse():
    p = parse_perturbation("resize:factor=0.5,method=bilinear")
    assert p == Perturbation("resize", {"factor": 0.5, "method": "bilinear"})
    assert p.spec == "resize:factor=0.5,method=bilinear"
    assert parse_perturbation("jpeg:quality=50") == create_perturbation("jpeg", quality=50)
    assert parse_perturbation(" jpeg : quality = 50 ").params == {"quality": 50}
    assert parse_perturbation("identity").spec == "identity"
    assert parse_perturbation("crop:fraction=0.5,center=true").params["center"] is True
    r = parse_perturbation("jpeg:quality=30..100")
    assert r.params["quality"] == Range(30, 100) and r.spec == "jpeg:quality=30..100"
    chain = parse_perturbation("jpeg:quality=50|resize:factor=0.5")
    assert isinstance(chain, Compose) and chain.spec == "jpeg:quality=50|resize:factor=0.5"
    assert hash(p) == hash(parse_perturbation(p.spec))
    assert len({p, parse_perturbation(p.spec)}) == 1


@pytest.mark.parametrize(
    "spec,token",
    [
        ("jpgg:quality=50", "jpgg"),
        ("jpeg:qualty=50", "qualty"),
        ("jpeg:quality", "quality"),
        ("jpeg:quality=fifty", "fifty"),
        ("jpeg:quality=50,quality=60", "quality"),
        ("resize", "factor"),
        ("resize:factor=0.5,method=bilinear,foo=1", "foo"),
        ("gaussian_noise:sigma=1,rng=3", "rng"),
        ("jpeg:quality=a..b", "a..b"),
        ("crop:center=yes", "yes"),
        ("", "''"),
    ],
)
def test_parse_errors_name_the_bad_token(spec, token):
    with pytest.raises(ValueError, match=token.replace(".", r"\.")):
        parse_perturbation(spec)


def test_random_perturbations_refuse_to_run_without_rng():
    img = natural(16, 16)
    for p in (
        parse_perturbation("gaussian_noise:sigma=3"),
        parse_perturbation("jpeg:quality=30..90"),
        RandomApply(0.5, parse_perturbation("identity")),
        OneOf([parse_perturbation("identity")]),
    ):
        with pytest.raises(ValueError, match="rng"):
            p(img)
    # deterministic ones run without an rng
    parse_perturbation("jpeg:quality=50")(img)
    parse_perturbation("crop_resize:fraction=0.5")(img)


def test_range_samples_ints_for_int_params_and_floats_for_float_params():
    img = natural(32, 32)
    jp = parse_perturbation("jpeg:quality=30..32")
    outs = {apply(img, jp, seed=0, index=i).tobytes() for i in range(20)}
    # only the 3 integer qualities exist
    assert outs <= {P.jpeg(img, q).tobytes() for q in (30, 31, 32)} and len(outs) >= 2
    blur = parse_perturbation("gaussian_blur:sigma=0..3")
    vals = {Range(0, 3).sample(derive_rng(0, i)) for i in range(10)}
    assert any(v != int(v) for v in vals)
    results = {apply(img, blur, seed=0, index=i).tobytes() for i in range(6)}
    assert len(results) == 6  # continuous sigma: all distinct
    with pytest.raises(ValueError):
        Range(3, 1)
    with pytest.raises(ValueError, match="sigma"):
        Perturbation("gaussian_blur", {"sigma": Range(0, 1), "method": "x"})


def test_compose_random_apply_one_of():
    img = natural()
    jp, bl = parse_perturbation("jpeg:quality=40"), parse_perturbation("gaussian_blur:sigma=2.0")
    np.testing.assert_array_equal(Compose([jp, bl])(img), P.gaussian_blur(P.jpeg(img, 40), 2.0))
    np.testing.assert_array_equal(Compose([])(img), img)
    rng = np.random.default_rng
    np.testing.assert_array_equal(RandomApply(1.0, jp)(img, rng(0)), P.jpeg(img, 40))
    np.testing.assert_array_equal(RandomApply(0.0, jp)(img, rng(0)), img)
    ra = RandomApply(0.5, jp)
    applied = [not np.array_equal(apply(img, ra, seed=1, index=i), img) for i in range(40)]
    assert 8 < sum(applied) < 32
    one = OneOf([jp, bl])
    outs = {apply(img, one, seed=2, index=i).tobytes() for i in range(20)}
    assert outs == {P.jpeg(img, 40).tobytes(), P.gaussian_blur(img, 2.0).tobytes()}
    only_blur = OneOf([jp, bl], weights=[0, 1])
    assert {apply(img, only_blur, seed=2, index=i).tobytes() for i in range(5)} == {
        P.gaussian_blur(img, 2.0).tobytes()
    }
    with pytest.raises(ValueError):
        OneOf([jp, bl], weights=[1])
    with pytest.raises(ValueError):
        RandomApply(1.5, jp)
    assert "random_apply(p=0.5, jpeg:quality=40)" == str(ra)
    assert "jpeg:quality=40" in one.spec and "gaussian_blur:sigma=2.0" in one.spec


# --------------------------------------------------------------------------- seeding and batches

AUG = Compose(
    [
        RandomApply(0.7, parse_perturbation("jpeg:quality=30..95")),
        parse_perturbation("crop_resize:fraction=0.6..1.0"),
        parse_perturbation("gaussian_noise:sigma=0..8"),
    ]
)


def test_apply_same_seed_same_result_different_seed_different_result():
    img = natural()
    a = apply(img, AUG, seed=5)
    np.testing.assert_array_equal(a, apply(img, AUG, seed=5))
    assert not np.array_equal(a, apply(img, AUG, seed=6))
    assert not np.array_equal(a, apply(img, AUG, seed=5, index=1))
    assert not np.array_equal(a, apply(img, AUG, seed=(5, 1)))  # e.g. (seed, epoch)


def test_derive_rng_depends_only_on_seed_and_index():
    a = derive_rng(3, 7).random(4)
    np.testing.assert_array_equal(a, derive_rng(3, 7).random(4))
    np.testing.assert_array_equal(
        a, np.random.default_rng(np.random.SeedSequence(3).spawn(8)[7]).random(4)
    )
    assert not np.array_equal(a, derive_rng(3, 8).random(4))
    assert not np.array_equal(a, derive_rng(4, 7).random(4))
    with pytest.raises(ValueError):
        derive_rng(0, -1)


def test_apply_batch_matches_per_image_and_ignores_batch_composition():
    imgs = [natural(seed=s) for s in range(5)]
    batch = apply_batch(imgs, AUG, seed=11)
    assert isinstance(batch, list) and len(batch) == 5
    for i, (img, out) in enumerate(zip(imgs, batch, strict=True)):
        np.testing.assert_array_equal(out, apply(img, AUG, seed=11, index=i))
        np.testing.assert_array_equal(out, AUG(img, derive_rng(11, i)))
    # split into two batches with stable indices
    first = apply_batch(imgs[:2], AUG, seed=11)
    rest = apply_batch(imgs[2:], AUG, seed=11, indices=range(2, 5))
    for a, b in zip(first + rest, batch, strict=True):
        np.testing.assert_array_equal(a, b)
    # reordered and partial batch with indices: same per-image results
    order = [4, 0, 2]
    shuffled = apply_batch([imgs[i] for i in order], AUG, seed=11, indices=order)
    for i, out in zip(order, shuffled, strict=True):
        np.testing.assert_array_equal(out, batch[i])
    # identical images still get different augmentations
    same = apply_batch([imgs[0]] * 3, AUG, seed=11)
    assert len({o.tobytes() for o in same}) == 3
    with pytest.raises(ValueError, match="indices"):
        apply_batch(imgs, AUG, seed=11, indices=[0, 1])


def test_apply_batch_array_in_array_out():
    arr = np.stack([natural(32, 32, seed=s) for s in range(4)])
    out = apply_batch(arr, AUG, seed=1)
    assert isinstance(out, np.ndarray) and out.shape == arr.shape and out.dtype == np.uint8
    for i in range(4):
        np.testing.assert_array_equal(out[i], apply(arr[i], AUG, seed=1, index=i))
    small = apply_batch(arr, parse_perturbation("resize:factor=0.5"), seed=1)
    assert small.shape == (4, 16, 16, 3)
    listed = apply_batch(list(arr), AUG, seed=1)
    assert isinstance(listed, list)
    np.testing.assert_array_equal(np.stack(listed), out)
    empty = apply_batch(arr[:0], AUG, seed=1)
    assert isinstance(empty, np.ndarray) and empty.shape == (0, 32, 32, 3)
    with pytest.raises(ValueError, match="batch"):
        apply_batch(arr[0], AUG)
    mixed = [natural(32, 32), natural(20, 20)]
    assert [o.shape for o in apply_batch(mixed, parse_perturbation("crop:fraction=0.5"))] == [
        (16, 16, 3),
        (10, 10, 3),
    ]


def test_apply_batch_refuses_to_stack_different_shapes():
    arr = np.stack([natural(32, 32, seed=s) for s in range(3)])
    p = parse_perturbation("resize:factor=0.5..1.0")
    with pytest.raises(ValueError, match="different shapes"):
        apply_batch(arr, p, seed=0)


# --------------------------------------------------------------------------- robustness suite


def test_standard_suite_contents():
    assert list(STANDARD_ROBUSTNESS_SUITE) == [
        "identity",
        "jpeg_90",
        "jpeg_75",
        "jpeg_50",
        "resize_back_0.75",
        "resize_back_0.5",
        "crop_0.9",
        "crop_0.7",
        "blur_1",
        "noise_5",
        "brightness_+0.1",
        "contrast_1.2",
        "png_to_jpeg_95",
    ]
    with pytest.raises(TypeError):
        STANDARD_ROBUSTNESS_SUITE["mine"] = parse_perturbation("identity")  # read-only
    for name, p in STANDARD_ROBUSTNESS_SUITE.items():
        assert p.name in PERTURBATIONS, name
        assert parse_perturbation(p.spec) == p


@pytest.mark.parametrize("name", list(STANDARD_ROBUSTNESS_SUITE))
def test_standard_suite_entry_runs_and_keeps_shape(name):
    img = natural(64, 64)
    p = STANDARD_ROBUSTNESS_SUITE[name]
    out = apply(img, p, seed=0)
    assert_image(out, (64, 64, 3))
    np.testing.assert_array_equal(out, apply(img, p, seed=0))
    if name == "identity":
        np.testing.assert_array_equal(out, img)
    else:
        assert not np.array_equal(out, img), f"{name} left the image unchanged"


def test_standard_suite_crops_are_centred():
    img = natural(64, 64)
    p = STANDARD_ROBUSTNESS_SUITE["crop_0.7"]
    a, b = apply(img, p, seed=0), apply(img, p, seed=1)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, P.crop_resize(img, 0.7))


def test_doctest_example_in_module_docstring():
    import doctest

    result = doctest.testmod(P, verbose=False)
    assert result.attempted > 0 and result.failed == 0


def test_saturation_and_rotate():
    img = natural(48, 40)
    grey = create_perturbation("saturation", factor=0.0)(img)
    assert np.abs(grey[..., 0].astype(int) - grey[..., 2]).max() <= 1  # channels equal up to rounding
    assert np.array_equal(create_perturbation("saturation", factor=1.0)(img), img)
    assert np.array_equal(create_perturbation("rotate", degrees=0.0)(img), img)
    turned = create_perturbation("rotate", degrees=2.0)(img)
    assert turned.shape == img.shape and not np.array_equal(turned, img)
