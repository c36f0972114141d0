"""The shared watermark transform: computed once per channel order, the same values as the
library's decoder, and the fast singular-value test equal to the exact one on every block."""

import numpy as np
import pytest

from genvis_trust.datasets import get_source
from genvis_trust.provenance import dwt
from genvis_trust.provenance.known_generators import check_known_marks
from genvis_trust.provenance.watermarks import SharedTransforms, WatermarkError, detect_shared


@pytest.fixture(scope="module")
def photo():
    return next(iter(get_source("builtin-photos", patch=512, n=1, seed=1, split="train"))).image


def _exact_svd_scores(blocks):
    """The reader before issue 10: the exact top eigenvalue of every block's Gram matrix."""
    gram = np.swapaxes(blocks, -1, -2) @ blocks
    s0 = np.sqrt(np.maximum(np.linalg.eigvalsh(gram)[..., -1], 0.0))
    return (np.mod(s0, 36.0) > 18.0).astype(np.uint8)


def test_rgb_to_yuv_equals_library_bgr_conversion(photo):
    import cv2

    bgr = np.ascontiguousarray(photo[..., ::-1])
    assert np.array_equal(cv2.cvtColor(photo, cv2.COLOR_RGB2YUV), cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV))


def test_ll_blocks_match_pywavelets(photo):
    import cv2
    import pywt

    for order, img in (("bgr", photo[..., ::-1]), ("rgb_as_bgr", photo)):
        u = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_BGR2YUV)[:, :, 1]
        ll = pywt.dwt2(u, "haar")[0]  # the library's call
        blocks = dwt.ll_blocks(SharedTransforms([photo]), order)[0]
        assert np.array_equal(blocks[1], ll[0:4, 4:8]) and np.array_equal(blocks[-1], ll[-4:, -4:])


def test_svd_scores_equal_exact_on_every_block(photo):
    rng = np.random.default_rng(0)
    blocks = [dwt.ll_blocks(SharedTransforms([photo]), o).reshape(-1, 4, 4) for o in dwt.ORDERS]
    noise = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)
    blocks.append(dwt.ll_blocks(SharedTransforms([noise])).reshape(-1, 4, 4))
    # blocks on the decision boundaries, where the fast bounds cannot decide and the exact
    # path must: s0 = 4c for a constant block, so c = 4.5 k puts s0 on a multiple of 18
    const = np.array([4.5 * k + d for k in range(1, 40) for d in (0.0, 1e-12, -1e-12, 1e-7)])
    blocks.append(np.ones((len(const), 4, 4)) * const[:, None, None])
    rank_two = rng.uniform(0, 510, (2000, 4, 4))
    rank_two[:, 2:] = rank_two[:, :2] * 0.999  # close top eigenvalues: slow power iteration
    blocks.append(rank_two)
    blocks.append(np.zeros((3, 4, 4)))  # zero rows: the bounds divide by zero
    blocks.append(rng.uniform(-300, 300, (500, 4, 4)))  # negative entries: no bounds, exact path
    b = np.concatenate(blocks)
    assert np.array_equal(dwt._svd_scores(b), _exact_svd_scores(b))


def test_exact_path_is_taken_for_undecidable_blocks(monkeypatch):
    b = np.ones((5, 4, 4)) * np.array([4.5, 9.0, 1.0, 13.5, 2.0])[:, None, None]  # s0 = 18, 36, 4, 54, 8
    want = _exact_svd_scores(b).tolist()
    calls = []
    real = np.linalg.eigvalsh
    monkeypatch.setattr(np.linalg, "eigvalsh", lambda a: calls.append(len(a)) or real(a))
    assert dwt._svd_scores(b).tolist() == want
    assert calls == [3]  # only the three on a boundary


def test_transform_computed_once_per_channel_order(photo, monkeypatch):
    computed = []
    real = dwt._compute_ll_blocks
    monkeypatch.setattr(dwt, "_compute_ll_blocks", lambda ims, order: computed.append(order) or real(ims, order))
    shared = SharedTransforms([photo])
    for be in ("dwtDctSvd", "dwtDct"):
        detect_shared(shared, be)
    check_known_marks([photo], shared=shared)
    assert sorted(computed) == ["bgr", "rgb_as_bgr"]
    # the pixels were only read: no reader wrote into the caller's array
    assert shared.images[0] is photo


def test_shared_transforms_refuses_mixed_or_bad_input(photo):
    with pytest.raises(WatermarkError, match="one shape"):
        SharedTransforms([photo, photo[:300]])
    with pytest.raises(WatermarkError, match="uint8"):
        SharedTransforms([photo.astype(np.float32)])
    with pytest.raises(WatermarkError, match="256x256"):
        check_known_marks([photo[:200, :200]])


def test_uint8_ll_blocks_are_bit_identical_to_float_haar():
    import pywt

    rng = np.random.default_rng(3)
    for shape in ((64, 96), (68, 100)):  # sides that leave pixels outside whole blocks
        u = rng.integers(0, 256, shape, dtype=np.uint8)
        u[:2, :2] = [[0, 255], [255, 0]]  # the table's extremes
        r, c = shape[0] // 8, shape[1] // 8
        ll = dwt._haar_ll(u.astype(np.float64))[: 4 * r, : 4 * c]
        want = ll.reshape(r, 4, c, 4).transpose(0, 2, 1, 3).reshape(-1, 4, 4)
        assert np.array_equal(dwt._uint8_ll_blocks(u, r, c), want)
    # every (even row, odd row) pair of values, against PyWavelets (the library's transform)
    i, j = np.divmod(np.arange(256 * 256), 256)
    u = np.zeros((2, 2 * i.size), np.uint8)
    u[0, 0::2], u[1, 0::2], u[0, 1::2], u[1, 1::2] = i, j, j, i
    pair = (u[0].astype(np.intp) << 8) | u[1]
    table_ll = dwt._PAIR_TABLE[pair[0::2]] + dwt._PAIR_TABLE[pair[1::2]]
    assert np.array_equal(table_ll, pywt.dwt2(u.astype(np.float64), "haar")[0][0])


def test_binomial_sf_equals_scipy_stats():
    from scipy.stats import binom

    from genvis_trust.provenance.watermarks import binomial_sf

    for n in (32, 48, 64, 136):  # every mark length read
        for k in range(-1, n + 3):
            assert binomial_sf(k, n) == float(binom.sf(k - 1, n, 0.5)), (k, n)
    assert binomial_sf(3, 10, 0.2) == float(binom.sf(2, 10, 0.2))


def test_rivagan_frames_equal_library_preprocessing(photo):
    """rivaGan's input is written once, without a BGR stack; it must equal the library's."""
    import torch

    from genvis_trust.provenance.rivagan import RivaGan

    imgs = [photo[:256, :300], np.ascontiguousarray(photo[256:, 212:])]
    for im in imgs:
        bgr = np.ascontiguousarray(im[..., ::-1])
        # imwatermark/rivaGan.py decode(): the frame as the library prepares it
        lib = (torch.from_numpy(np.array([bgr], dtype=np.float32)) / 127.5 - 1.0).permute(3, 0, 1, 2).unsqueeze(0)
        assert np.array_equal(RivaGan._frames([im]), lib.numpy())
