"""Watermark readings pinned: every reader (ours and known generators') gives, bit for bit
and float for float, what it gave before the shared transform (issue 10).

``tests/fixtures/watermark_pins.json`` was written by the code *before* the readers shared
one transform per channel order (commit caad899), with

    PYTHONPATH=<tree at caad899> python tests/test_watermark_pins.py --write

Images: stamped with each of our backends, with each known generator's mark in both
channel orders, unstamped photos, a stamped image re-saved as JPEG 90, sizes that are
not multiples of 4, and one below the 256-pixel minimum.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

PINS = Path(__file__).parent / "fixtures" / "watermark_pins.json"


def _cases() -> dict[str, np.ndarray]:
    from genvis_trust.datasets import get_source
    from genvis_trust.io import decode_image, encode_image
    from genvis_trust.provenance.known_generators import embed_known_mark
    from genvis_trust.provenance.payload import get_codec
    from genvis_trust.provenance.watermarks import get_watermark

    p512 = [s.image for s in get_source("builtin-photos", patch=512, n=3, seed=5, split="train")]
    p256 = [s.image for s in get_source("builtin-photos", patch=256, n=2, seed=7, split="train")]
    rng = np.random.default_rng(10)
    svd, dct = get_watermark("dwtDctSvd"), get_watermark("dwtDct")
    c64 = get_codec(64)
    cases = {
        "clean512": p512[0],
        "clean256": p256[0],
        "noise260x301": rng.integers(0, 256, (260, 301, 3), dtype=np.uint8),
        "small200": p256[1][:200, :240].copy(),
        "svd512": svd.embed(p512[1], c64.encode(41, issuer=3)),
        "svd256": svd.embed(p256[1], c64.encode(7, issuer=9)),
        "dct512": dct.embed(p512[2], c64.encode(12345 % c64.short_id_modulus, issuer=3)),
        "sdxl_bgr": embed_known_mark(p512[0], "sdxl", "bgr"),
        "sdxl_rgb_as_bgr": embed_known_mark(p512[1], "sdxl", "rgb_as_bgr"),
        "sd1_bgr": embed_known_mark(p512[2], "sd1", "bgr"),
        "sd2_rgb_as_bgr": embed_known_mark(p512[0], "sd2", "rgb_as_bgr"),
    }
    both = dct.embed(embed_known_mark(p512[1], "sdxl", "rgb_as_bgr"), c64.encode(3, issuer=3))
    cases["sdxl_and_dct"] = both
    cases["svd512_jpeg90"] = decode_image(encode_image(cases["svd512"], "JPEG", quality=90)).array
    cases["odd_crop"] = cases["svd512"][3:510, 1:303]  # not C-contiguous, not a multiple of 4
    return cases


def _results(cases: dict[str, np.ndarray]) -> dict:
    from genvis_trust.io import encode_image
    from genvis_trust.provenance.known_generators import check_known_marks
    from genvis_trust.provenance.verify import verify_bytes
    from genvis_trust.provenance.watermarks import detect, detect_batch

    out: dict = {}
    names = list(cases)
    for be in ("dwtDctSvd", "dwtDct"):
        batch = detect_batch([cases[n] for n in names], be)
        for n, d in zip(names, batch, strict=True):
            out[f"{n}/{be}/batch"] = d.to_dict()
            out[f"{n}/{be}/single"] = detect(cases[n], be).to_dict()
    big = [n for n in names if min(cases[n].shape[:2]) >= 256]
    for n, res in zip(big, check_known_marks([cases[n] for n in big]), strict=True):
        out[f"{n}/known"] = [r.to_dict() for r in res]
    for n in ("clean512", "svd512", "sdxl_and_dct", "sd1_bgr", "small200"):
        rep = verify_bytes(encode_image(np.ascontiguousarray(cases[n]), "PNG"), name=f"{n}.png")
        out[f"{n}/verify"] = {k: rep.to_dict()[k] for k in ("watermarks", "known_generators", "evidence")}
    return out


@pytest.fixture(scope="module")
def results():
    return json.loads(json.dumps(_results(_cases())))  # through JSON, as the pins were


def test_pins_cover_detections():
    pins = json.loads(PINS.read_text())
    # the pins are not vacuous: they hold detections and known-mark matches
    assert pins["svd512/dwtDctSvd/single"]["detected"] and pins["svd512/dwtDctSvd/single"]["payload"]["record_id"] == 41
    assert pins["svd512_jpeg90/dwtDctSvd/single"]["detected"]
    assert not pins["clean512/dwtDctSvd/single"]["detected"]
    assert pins["sdxl_and_dct/dwtDct/single"]["detected"]
    assert [(r["mark"], r["channel_order"]) for r in pins["sdxl_bgr/known"] if r["consistent"]] == [("sdxl", "bgr")]
    assert [(r["mark"], r["channel_order"]) for r in pins["sd2_rgb_as_bgr/known"] if r["consistent"]] == [("sd2", "rgb_as_bgr")]
    assert any(r["consistent"] and r["mark"] == "sd1" for r in pins["sd1_bgr/known"])
    assert not any(r["consistent"] for r in pins["clean512/known"])
    assert pins["small200/dwtDct/single"]["error"]


def test_readings_identical_to_pins(results):
    pins = json.loads(PINS.read_text())
    assert sorted(results) == sorted(pins)
    for key in pins:
        assert results[key] == pins[key], key


if __name__ == "__main__":
    if "--write" in sys.argv:
        PINS.write_text(json.dumps(_results(_cases()), indent=1, sort_keys=True) + "\n")
        print(f"wrote {PINS}")
