"""C2PA on every format c2pa-python reads: the toolkit reports what ``c2pa.Reader`` reports.

Signed files are made here with c2pa-python's own Builder (WAV, MP4, PDF, HEIC, AVIF, a
remote-manifest JPEG); ``fixtures/c2pa-python/dashinit.mp4`` is an independently signed
video from the c2pa-python repository (see its README). Set ``GENVIS_C2PA_FIXTURES`` to a
checkout's ``tests/fixtures`` folder to sweep all of them.
"""

import io
import os
import tempfile
import wave
from pathlib import Path

import c2pa
import cv2
import numpy as np
import pytest
from PIL import Image

from genvis_trust.io import encode_image, load_image, sniff_media_type
from genvis_trust.provenance.c2pa_manifest import _context, build_manifest, read_c2pa
from genvis_trust.provenance.keys import init_keys, load_signing_material
from genvis_trust.provenance.stamp import stamp_array
from genvis_trust.provenance.store import ProvenanceStore
from genvis_trust.provenance.verify import verify_bytes
from genvis_trust.scan import fuse
from genvis_trust.scoring.engine import ScoreRecord

FIXTURES = Path(__file__).parent / "fixtures" / "c2pa-python"


@pytest.fixture(scope="module")
def material(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    init_keys(d)
    return load_signing_material(d)


def _sign(data: bytes, mime: str, material, remote_url: str | None = None) -> bytes:
    builder = c2pa.Builder(build_manifest(title="t", generator="test-gen", tool_version="0"), context=_context(None))
    if remote_url:
        builder.set_no_embed()
        builder.set_remote_url(remote_url)
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(material.alg.encode(), material.chain_pem, material.key_pem, None))
    try:
        dst = io.BytesIO()
        builder.sign(signer, mime, io.BytesIO(data), dst)
    finally:
        signer.close()
    return dst.getvalue()


def _wav() -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes((np.sin(np.arange(800) / 3) * 3000).astype(np.int16).tobytes())
    return buf.getvalue()


def _mp4() -> bytes:
    path = Path(tempfile.mkdtemp()) / "v.mp4"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5, (32, 32))
    for i in range(3):
        w.write(np.full((32, 32, 3), 40 * i, np.uint8))
    w.release()
    return path.read_bytes()


_PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
        b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 10 10]>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n")


def _image(fmt: str) -> bytes:
    import pillow_heif

    pillow_heif.register_heif_opener()
    buf = io.BytesIO()
    grad = np.linspace(0, 255, 64 * 64 * 3).reshape(64, 64, 3).astype(np.uint8)
    Image.fromarray(grad).save(buf, format=fmt)
    return buf.getvalue()


def _reference(data: bytes, mime: str) -> dict:
    """What c2pa.Reader itself says: state and active-manifest failure codes, or its error."""
    try:
        reader = c2pa.Reader.try_create(mime, io.BytesIO(data), None, _context(None))
    except c2pa.C2paError as e:
        return {"error": str(e).split(":", 1)[0]}
    if reader is None:
        return {"state": None, "failure": []}
    with reader:
        active = (reader.get_validation_results() or {}).get("activeManifest") or {}
        return {"state": reader.get_validation_state(), "failure": [c["code"] for c in active.get("failure", [])]}


def _ours(data: bytes) -> dict:
    info = read_c2pa(data)
    if info.reader_error:
        return {"error": info.reader_error}
    return {"state": info.state, "failure": info.failure_codes}


@pytest.fixture(scope="module")
def signed(material):
    return {
        "wav": (_sign(_wav(), "audio/wav", material), "audio/wav"),
        "mp4": (_sign(_mp4(), "video/mp4", material), "video/mp4"),
        "pdf": (_sign(_PDF, "application/pdf", material), "application/pdf"),
        "heic": (_sign(_image("HEIF"), "image/heic", material), "image/heic"),
        "avif": (_sign(_image("AVIF"), "image/avif", material), "image/avif"),
        "dashinit": ((FIXTURES / "dashinit.mp4").read_bytes(), "video/mp4"),
    }


@pytest.mark.parametrize("name", ["wav", "mp4", "pdf", "heic", "avif", "dashinit"])
def test_state_and_codes_match_the_reference_reader(signed, name):
    data, mime = signed[name]
    assert sniff_media_type(data) == mime
    ref = _reference(data, mime)
    assert _ours(data) == ref
    if name == "dashinit":  # an independently signed video whose box hash no longer matches
        assert ref == {"state": "Invalid", "failure": ["signingCredential.untrusted", "assertion.bmffHash.mismatch"]}
    else:
        assert ref["state"] == "Valid"


@pytest.mark.parametrize("name, media", [("wav", "audio/wav"), ("mp4", "video/mp4"), ("pdf", "application/pdf")])
def test_non_image_media_get_c2pa_and_a_verdict_without_error(signed, name, media):
    data, _ = signed[name]
    rep = verify_bytes(data, name=f"x.{name}")
    assert rep.c2pa.status == "manifest" and rep.c2pa.state == "Valid"
    assert rep.input.media_type == media
    assert rep.error["code"] == "not_an_image" and "not decoded" in rep.input.pixels
    c2pa_ev = next(e for e in rep.evidence if e.kind == "c2pa")
    assert c2pa_ev.indicates == "generated" and "trainedAlgorithmicMedia" in c2pa_ev.summary
    # scan: the manifest decides; no detector, no error for a file that has no pixels to check
    res = fuse(ScoreRecord(f"x.{name}", error=rep.error, provenance=rep))
    assert res.verdict == "generated" and res.error is None
    assert res.image["media_type"] == media and "not checked" in res.image["pixels"]


@pytest.mark.parametrize("name", ["heic", "avif"])
def test_heic_avif_have_pixels_and_c2pa(signed, name):
    data, _ = signed[name]
    rep = verify_bytes(data, known_generators=False)
    assert rep.error is None and rep.input.format == name.upper() and rep.input.width == 64
    assert rep.c2pa.state == "Valid"
    assert load_image(data).array.shape == (64, 64, 3)


def test_remote_manifest_reported_with_url_not_fetched(material):
    url = "https://example.invalid/manifests/x.c2pa"
    data = _sign(encode_image(np.full((16, 16, 3), 90, np.uint8), "JPEG"), "image/jpeg", material, remote_url=url)
    assert _reference(data, "image/jpeg") == {"error": "Remote"}
    info = read_c2pa(data)
    assert (info.status, info.present, info.remote_url, info.remote_manifest_not_fetched) == ("remote", True, url, True)
    assert info.state is None and info.error is None
    ev = next(e for e in verify_bytes(data, known_generators=False).evidence if e.kind == "c2pa")
    assert url in ev.summary and "--fetch-remote" in ev.summary and ev.indicates == "none"
    # asked to fetch: the attempt is made (.invalid never resolves) and its failure reported
    fetched = read_c2pa(data, fetch_remote=True)
    assert (fetched.status, fetched.remote_url, fetched.remote_manifest_not_fetched) == ("remote", url, False)
    assert "could not be fetched" in fetched.error


def test_byte_flip_in_png_pixels_reports_data_hash_next_to_decode_error(material, tmp_path):
    store = ProvenanceStore(tmp_path / "p.db")
    rgb = cv2.resize(np.linspace(0, 255, 48 * 48 * 3).reshape(48, 48, 3).astype(np.uint8), (256, 256))
    stamp_array(rgb, tmp_path / "s.png", store=store, material=material, fmt="PNG", generator="g")
    signed = (tmp_path / "s.png").read_bytes()
    idat = signed.find(b"IDAT") + 4
    # the first byte of the compressed pixel data (zlib header): the pixels can no longer decode
    data = bytearray(signed)
    data[idat] ^= 0x01
    rep = verify_bytes(bytes(data), name="flipped.png", store=store)
    assert rep.error["code"] in ("corrupt", "truncated") and rep.error["path"] == "flipped.png"
    assert rep.c2pa.state == "Invalid" and "assertion.dataHash.mismatch" in rep.c2pa.failure_codes
    res = fuse(ScoreRecord("flipped.png", error=rep.error, provenance=rep))
    assert res.verdict == "error" and res.error["code"] == rep.error["code"]
    assert "assertion.dataHash.mismatch" in res.summary and "C2PA manifest Invalid" in res.summary
    # a flip deeper in the deflate stream may still decode (to wrong pixels) or not, depending
    # on the stream; either way the hard binding catches it
    data = bytearray(signed)
    data[idat + 100] ^= 0x01
    rep = verify_bytes(bytes(data), name="flipped2.png", known_generators=False)
    assert rep.c2pa.state == "Invalid" and "assertion.dataHash.mismatch" in rep.c2pa.failure_codes


def test_file_over_the_byte_limit_still_gets_its_c2pa(signed, tmp_path):
    from genvis_trust.provenance.verify import verify_paths

    data, mime = signed["mp4"]
    (tmp_path / "long.mp4").write_bytes(data)
    rep = verify_paths([tmp_path / "long.mp4"], max_bytes=1000)[0]  # as a multi-GB video would be
    assert rep.input.media_type == mime
    assert rep.c2pa.state == "Valid" and _ours(data) == _reference(data, mime)
    assert rep.input.bytes == len(data) and "C2PA read from disk" in rep.input.pixels
    # a video's frames are decoded from disk too (streamed by PyAV), not refused
    assert rep.error is None and rep.input.video["frames_examined"] >= 1


def test_unknown_bytes_are_not_sent_to_the_reader():
    info = read_c2pa(b"just some text, no media")
    assert info.status == "format_not_supported" and not info.present and info.error is None


@pytest.mark.skipif(not os.environ.get("GENVIS_C2PA_FIXTURES"), reason="GENVIS_C2PA_FIXTURES not set")
def test_every_c2pa_python_fixture_matches_the_reference():
    """With a c2pa-python checkout: every fixture's state and codes equal the reader's own,
    read with the media type sniffed from the content."""
    root = Path(os.environ["GENVIS_C2PA_FIXTURES"])
    files = [p for p in sorted(root.rglob("*")) if p.is_file() and p.stat().st_size]
    assert len(files) > 40
    for p in files:
        data = p.read_bytes()
        mime = sniff_media_type(data)
        if mime is None or mime not in c2pa.Reader.get_supported_mime_types():
            assert read_c2pa(data).status == "format_not_supported", p
            continue
        assert _ours(data) == _reference(data, mime), p


def test_stamp_media_signs_audio_and_video_and_the_store_finds_them(material, tmp_path):
    from genvis_trust.provenance.stamp import StampError, stamp_media

    store = ProvenanceStore(tmp_path / "p.db")
    for name, data, mime in [("a.wav", _wav(), "audio/wav"), ("v.mp4", _mp4(), "video/mp4")]:
        res = stamp_media(data, tmp_path / name, store=store, material=material, generator="gen-av",
                          source_type="digitalCapture" if name == "v.mp4" else None)
        assert res.media_type == mime and (tmp_path / name).stat().st_size > len(data)
        signed = (tmp_path / name).read_bytes()
        assert _reference(signed, mime)["state"] == "Valid"
        rep = verify_bytes(signed, name=name, store=store)
        assert rep.c2pa.generator_assertion["record_id"] == res.record_id
        assert rep.store["found"] and rep.store["path"] in ("c2pa", "sha256")
        assert rep.store["record"]["source_type"] == res.source_type
        verdict = fuse(ScoreRecord(name, error=rep.error, provenance=rep)).verdict
        assert verdict == ("no_evidence" if name == "v.mp4" else "generated")
    with pytest.raises(StampError, match="x.png"):  # images go through stamp_array (watermark first)
        stamp_media(encode_image(np.zeros((8, 8, 3), np.uint8)), tmp_path / "x.png", store=store, material=material)
    with pytest.raises(StampError, match="broken.mp4"):
        stamp_media(b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00", tmp_path / "broken.mp4", store=store,
                    material=material)
    assert not (tmp_path / "broken.mp4").exists()


def test_input_facts_are_typed_and_their_json_says_only_what_applies():
    """``ProvenanceReport.input`` is a dataclass; its JSON is what the dict used to be: nothing for
    an input that was not read, the media type always once it was (null when unrecognised)."""
    from genvis_trust.provenance.verify import InputFacts, ProvenanceReport

    assert InputFacts().to_dict() == {}
    assert InputFacts(bytes=3, sha256="ab").to_dict() == {"bytes": 3, "sha256": "ab", "media_type": None}
    f = InputFacts(width=4, height=2, media_type="video frame", conversions=[])
    assert f.to_dict() == {"width": 4, "height": 2, "media_type": "video frame", "conversions": []}
    rep = ProvenanceReport("1.1", "x", input=f)
    assert rep.to_dict()["input"] == f.to_dict()


def test_c2pa_and_metadata_parts_are_typed_and_their_json_is_unchanged(signed):
    """``.c2pa`` and ``.metadata`` are the readers' dataclasses (read by attribute); in JSON
    they are what the dicts were: the readers' ``to_dict``, and ``{}`` where nothing was read."""
    from genvis_trust.provenance.c2pa_manifest import C2paInfo
    from genvis_trust.provenance.metadata import MetadataSignals
    from genvis_trust.provenance.verify import ProvenanceReport

    data, _ = signed["wav"]
    rep = verify_bytes(data)
    assert isinstance(rep.c2pa, C2paInfo) and rep.c2pa.state == "Valid"
    assert isinstance(rep.metadata, MetadataSignals)
    d = rep.to_dict()
    assert d["c2pa"] == read_c2pa(data).to_dict() and d["c2pa"]["state"] == "Valid"
    assert d["metadata"] == rep.metadata.to_dict() and set(d["metadata"]) == {"markers", "fields", "errors"}
    assert ProvenanceReport("1.1", "x").to_dict()["c2pa"] == {} == ProvenanceReport("1.1", "x").to_dict()["metadata"]


def test_one_options_type_stamps_any_medium(material, tmp_path):
    """StampOptions says what the content is for every medium; its fields as keywords (what
    callers passed before) are put over it, and an unknown one is refused."""
    from genvis_trust.provenance.stamp import StampOptions, stamp_media, stamp_options

    what = StampOptions(generator="gen-opt", source_type="digitalCapture", title="a clip")
    assert stamp_options(what, {"title": "other"}) == StampOptions("gen-opt", source_type="digitalCapture", title="other")
    with pytest.raises(TypeError):
        stamp_options(what, {"generater": "typo"})
    store = ProvenanceStore(tmp_path / "p.db")
    res = stamp_media(_wav(), tmp_path / "a.wav", store=store, material=material, options=what)
    rec = store.get(res.record_id).to_dict()
    assert res.source_type == "digitalCapture" and rec["generator"] == "gen-opt"
    assert read_c2pa((tmp_path / "a.wav").read_bytes()).digital_source_types[0].endswith("/digitalCapture")
