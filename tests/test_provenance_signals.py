"""Metadata markers and known generators' watermarks, built with the real libraries;
clean photos are not flagged; hostile metadata is an error field, not a crash."""

import io
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from genvis_trust.datasets import get_source
from genvis_trust.io import encode_image
from genvis_trust.provenance.known_generators import check_known_marks, embed_known_mark
from genvis_trust.provenance.metadata import read_metadata


def _png_with_text(**texts) -> bytes:
    info = PngImagePlugin.PngInfo()
    for k, v in texts.items():
        info.add_text(k, v)
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def _jpeg_with_xmp(xmp: bytes) -> bytes:
    jpeg = encode_image(np.zeros((8, 8, 3), np.uint8), "JPEG")
    body = b"http://ns.adobe.com/xap/1.0/\x00" + xmp
    seg = b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body
    return jpeg[:2] + seg + jpeg[2:]


XMP_DST = b"""<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
 Iptc4xmpExt:DigitalSourceType="http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"/>
</rdf:RDF></x:xmpmeta>"""


def test_frontend_png_markers():
    a1111 = _png_with_text(parameters="a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1")
    comfy = _png_with_text(prompt='{"3": {"class_type": "KSampler"}}', workflow='{"nodes": []}')
    kinds = {m.indicates for m in read_metadata(a1111).markers}
    assert any("AUTOMATIC1111" in k for k in kinds)
    kinds = {m.indicates for m in read_metadata(comfy).markers}
    assert any("ComfyUI prompt" in k for k in kinds) and any("ComfyUI workflow" in k for k in kinds)
    assert read_metadata(_png_with_text(parameters="my holiday")).markers == []


def test_xmp_exif_markers():
    sig = read_metadata(_jpeg_with_xmp(XMP_DST))
    assert [m.kind for m in sig.markers] == ["iptc_digital_source_type"]
    exif = Image.Exif()
    exif[0x0131] = "Adobe Firefly"
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "JPEG", exif=exif.tobytes())
    sig = read_metadata(buf.getvalue())
    assert any("Firefly" in m.indicates for m in sig.markers)
    exif = Image.Exif()
    exif[0x0131] = "GIMP 2.10"
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "JPEG", exif=exif.tobytes())
    assert read_metadata(buf.getvalue()).markers == []


def test_hostile_metadata():
    bomb = b"""<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]><x>&d;&d;&d;&d;</x>"""
    t = time.perf_counter()
    sig = read_metadata(_jpeg_with_xmp(bomb))
    assert sig.errors and "refused" in sig.errors[0] and time.perf_counter() - t < 2
    sig = read_metadata(_jpeg_with_xmp(b"<x:xmpmeta><unclosed"))
    assert sig.errors and "malformed" in sig.errors[0]
    # a PNG text chunk claiming 2 GB, and a zTXt decompression bomb
    png = _png_with_text(a="b")
    huge = png[:33] + struct.pack(">I4s", 2**31 - 1, b"tEXt") + b"k\x00v"
    assert any("past the end" in e for e in read_metadata(huge).errors)
    z = zlib.compress(b"\x00" * (8 << 20))
    chunk = b"zTXtparameters\x00\x00" + z
    body = chunk[4:]
    ztxt = struct.pack(">I", len(body)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    sig = read_metadata(png[:33] + ztxt + png[33:])
    assert any("truncated" in e for e in sig.errors)
    assert read_metadata(b"\xff\xd8\xff\xe1\xff\xff").errors  # JPEG segment past the end


@pytest.fixture(scope="module")
def clean_patches():
    return [s.image for s in get_source("builtin-photos", patch=256, n=12, seed=11, split="train")]


@pytest.mark.parametrize("name", ["sdxl", "sd1", "sd2"])
def test_known_marks_recognised(name):
    # generators emit 512px and larger; dwtDct reads poorly at 256 (measured)
    imgs = [s.image for s in get_source("builtin-photos", patch=512, n=2, seed=2, split="train")]
    marked = [embed_known_mark(im, name, "bgr") for im in imgs]
    res = check_known_marks(marked, (name,))
    assert all(r[0].consistent for r in res), [(r[0].matched_bits, r[0].grade) for r in res]


def test_clean_photos_not_flagged(clean_patches):
    from genvis_trust.datasets import get_source

    full = [s.image for s in get_source("builtin-photos", split="train") if min(s.image.shape[:2]) >= 256]
    res = check_known_marks(clean_patches + full[:4])
    flagged = [(r.mark, r.matched_bits) for rr in res for r in rr if r.consistent]
    assert flagged == []
