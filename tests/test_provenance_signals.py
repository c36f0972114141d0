"""Metadata markers and known generators' watermarks, built with the real libraries;
clean photos are not flagged; hostile metadata is an error field, not a crash."""

import io
import json
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


def _jpeg_with_exif(**tags) -> bytes:
    ids = {"Make": 0x010F, "Model": 0x0110, "Software": 0x0131, "ImageDescription": 0x010E, "Artist": 0x013B}
    exif = Image.Exif()
    for k, v in tags.items():
        if k != "LensModel":
            exif[ids[k]] = v
    if "LensModel" in tags:
        exif.get_ifd(0x8769)[0xA434] = tags["LensModel"]
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "JPEG", exif=exif.tobytes())
    return buf.getvalue()


def _add_xmp(jpeg: bytes, xmp: bytes) -> bytes:
    body = b"http://ns.adobe.com/xap/1.0/\x00" + xmp
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + jpeg[2:]


def _xmp(attrs: str = "", inner: str = "") -> bytes:
    return f"""<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/"
 xmlns:xmpMM="http://ns.adobe.com/xap/1.0/mm/" xmlns:stEvt="http://ns.adobe.com/xap/1.0/sType/ResourceEvent#"
 xmlns:tiff="http://ns.adobe.com/tiff/1.0/" {attrs}>{inner}</rdf:Description></rdf:RDF></x:xmpmeta>""".encode()


_HISTORY = """<xmpMM:History><rdf:Seq>
<rdf:li stEvt:action="created" stEvt:softwareAgent="Adobe Photoshop 25.0 (Macintosh)"/>
<rdf:li><rdf:Description><stEvt:action>edited</stEvt:action><stEvt:softwareAgent>Adobe Firefly</stEvt:softwareAgent></rdf:Description></rdf:li>
</rdf:Seq></xmpMM:History>"""


@pytest.mark.parametrize("make, model, extra", [
    # a 2003 compact camera: its firmware names the model in Software and the description
    ("Trust", "Gemini11", {"Software": "Gemini11 Ver1.00", "ImageDescription": "Gemini11"}),
    ("Trust", "Gemini 11", {"Software": "Gemini 11 v1.0"}),  # camera firmware naming its own camera
    ("Google", "Pixel 8 Pro", {"Software": "HDR+ 1.0.540104767zd"}),
    ("FLIR", "Firefly MV", {"Software": "FlyCapture2"}),
    ("Canon", "Canon EOS 5D", {"LensModel": "Imagen 24-70mm", "Artist": "Sora Tanaka",
                                "ImageDescription": "shot for the Midjourney office wall"}),
    ("NIKON", "COOLPIX", {"Software": "Imagenomic Portraiture 3", "ImageDescription": "OLYMPUS DIGITAL CAMERA"}),
])
def test_camera_fields_never_name_a_service(make, model, extra):
    """Service names count only in fields a generator or editor writes, as whole words."""
    sig = read_metadata(_jpeg_with_exif(Make=make, Model=model, **extra))
    assert sig.fields["exif:Make"] == make
    assert sig.markers == [], [m.to_dict() for m in sig.markers]
    # and in XMP: the camera's make/model there, a photographer's credit that is not a tool's
    xmp = _xmp(f'tiff:Make="{make}" tiff:Model="{model}" photoshop:Credit="Jane Doe / Gemini Photo Club"')
    assert read_metadata(_add_xmp(_jpeg_with_exif(Make=make, Model=model), xmp)).markers == []


@pytest.mark.parametrize("data, kind, names", [
    (lambda: _jpeg_with_exif(Software="Adobe Firefly"), "exif_software", "Firefly"),
    (lambda: _jpeg_with_exif(Software="Google Gemini"), "exif_software", "Google"),
    (lambda: _jpeg_with_exif(Make="Canon", Model="EOS R5", Software="DALL-E 3"), "exif_software", "OpenAI"),
    (lambda: _add_xmp(_jpeg_with_exif(), _xmp('xmp:CreatorTool="Adobe Firefly 2.1"')), "xmp_creator_tool", "Firefly"),
    (lambda: _add_xmp(_jpeg_with_exif(), _xmp("", _HISTORY)), "xmp_history", "Firefly"),
    (lambda: _add_xmp(_jpeg_with_exif(), _xmp('photoshop:Credit="Made with Google AI"')), "xmp_credit", "Google"),
    (lambda: _png_with_text(Software="NovelAI", Source="Stable Diffusion XL C1E1DE52"), "png_text", "NovelAI"),
    (lambda: _png_with_text(Software="FLUX.1 [dev]"), "png_text", "FLUX"),
])
def test_generator_fields_name_a_service(data, kind, names):
    ms = [m for m in read_metadata(data()).markers if m.kind == kind]
    assert ms and any(names in m.indicates for m in ms), read_metadata(data()).to_dict()


def test_generator_markers_with_real_looking_metadata():
    a1111 = _png_with_text(parameters="portrait of a fox, oil painting\nNegative prompt: blurry\n"
                           "Steps: 30, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1234, Size: 512x512, "
                           "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: v1.7.0")
    assert [m.indicates for m in read_metadata(a1111).markers] == ["AUTOMATIC1111 / Forge generation parameters"]
    graph = {"3": {"class_type": "KSampler", "inputs": {"seed": 5, "steps": 20, "cfg": 8, "model": ["4", 0]}},
             "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}}}
    workflow = {"last_node_id": 9, "nodes": [{"id": 3, "type": "KSampler"}], "links": [], "version": 0.4}
    comfy = read_metadata(_png_with_text(prompt=json.dumps(graph), workflow=json.dumps(workflow))).markers
    assert sorted(m.indicates for m in comfy) == ["ComfyUI prompt graph", "ComfyUI workflow"]
    dst = read_metadata(_add_xmp(_jpeg_with_exif(Make="Canon"), XMP_DST)).markers
    assert [m.kind for m in dst] == ["iptc_digital_source_type"]
    from genvis_trust.provenance.metadata import c2pa_service_markers
    c2pa = c2pa_service_markers("Adobe_Firefly c2pa-rs/0.49", [{"action": "c2pa.created",
                                "softwareAgent": {"name": "GPT-4o"}}])
    assert [(m.key, m.indicates.split(": ")[1]) for m in c2pa] == [
        ("c2pa:claim_generator", "Adobe Firefly"), ("c2pa:softwareAgent", "OpenAI (DALL-E / ChatGPT / Sora)")]
    assert c2pa_service_markers("Google C2PA Core Generator Library", [{"softwareAgent": "Pixel Camera"}]) == []


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
