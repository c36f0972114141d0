"""`detectors fetch` end to end against an HTTP server on 127.0.0.1 started here (nothing leaves
the machine): checkpoints in the published layouts (a raw state dict, one under 'model', one
with 'module.' prefixes), a resumed and a truncated download, a wrong size, a wrong sha256, a
pickle that would run code, a server that stalls, licence gating, `--from FILE`, and the
installed detector found by `load_detector` and `scan --detector NAME`."""

from __future__ import annotations

import hashlib
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from genvis_trust.cli.main import app
from genvis_trust.detectors import load_detector
from genvis_trust.detectors.published import PublishedCard, WeightsSource
from genvis_trust.detectors.registry import DETECTORS, CheckpointImportError, register_detector

runner = CliRunner()
FAMILY, NC_FAMILY = "tinypub-test", "tinypub-nc-test"


# -- a tiny published family, registered by the tests

class _TinyNet(nn.Module):
    def __init__(self, width: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.fc = nn.Linear(width, 1)

    def prepare_input(self, image: np.ndarray) -> torch.Tensor:  # whole image, no normalisation
        return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean((2, 3))).squeeze(1)

    @staticmethod
    def checkpoint_filter_fn(state):
        if "conv.weight" not in state:
            raise CheckpointImportError("no conv.weight: not a tiny state dict")
        return state, {"width": int(state["conv.weight"].shape[0])}


def _state(seed: int = 0, width: int = 4) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return _TinyNet(width).state_dict()


def _torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _safetensors_bytes(state) -> bytes:
    from safetensors.torch import save

    return save({k: v.contiguous() for k, v in state.items()})


class _Evil:
    """Unpickling this runs code: it would write ``marker``."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


# -- the server

class _Server:
    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.behaviour: dict[str, str] = {}  # path -> "ok" | "truncate_once" | "stall" | "no_range"
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                mode = server.behaviour.get(self.path, "ok")
                start = 0
                if rng and mode != "no_range":
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                if mode == "truncate_once":
                    server.behaviour[self.path] = "ok"
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if mode == "stall":
                    self.wfile.write(body[:16])
                    self.wfile.flush()
                    server.release.wait(30)
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def put(self, path: str, data: bytes, behaviour: str = "ok") -> str:
        self.files[path] = data
        self.behaviour[path] = behaviour
        return self.base + path

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


def _card(sources: list[WeightsSource], commercial: bool = True) -> PublishedCard:
    return PublishedCard(
        publication="Tiny et al., a test publication", repository="https://example.invalid/tiny", commit="0" * 40,
        licence="MIT" if commercial else "CC-BY-NC-4.0", commercial_use=commercial,
        preprocessing="whole image, scaled to [0, 1], no normalisation",
        claimed_accuracy="99.9 AP on TinyTest (the publisher's figure)", weights=sources)


@pytest.fixture
def home(tmp_path, monkeypatch):
    h = tmp_path / "home"
    monkeypatch.setenv("GENVIS_TRUST_HOME", str(h))
    monkeypatch.delenv("GENVIS_TRUST_FETCH_TIMEOUT", raising=False)
    return h


@pytest.fixture
def published(server, tmp_path):
    """Two test families (commercial and non-commercial) whose cards point at the local server,
    with every layout and failure mode as a variant; removed from the registry afterwards."""
    raw = _state(0)
    files = {
        "raw": (_torch_bytes(raw), "ok"),
        "model": (_torch_bytes({"model": _state(1), "epoch": 3}), "ok"),
        "module": (_torch_bytes({f"module.{k}": v for k, v in _state(2).items()}), "ok"),
        "st": (_safetensors_bytes(_state(7)), "ok"),
        "truncated": (_torch_bytes(_state(3)), "truncate_once"),
        "stall": (_torch_bytes(_state(4)), "stall"),
        "evil": (_torch_bytes({"model": _state(5), "x": _Evil(str(tmp_path / "PWNED"))}), "ok"),
    }
    srcs = []
    for variant, (data, mode) in files.items():
        fname = f"{variant}.safetensors" if variant == "st" else f"{variant}.pth"
        url = server.put(f"/w/{fname}", data, mode)
        srcs.append(WeightsSource(url, fname, hashlib.sha256(data).hexdigest(), len(data), variant))
    good = files["raw"][0]
    srcs.append(WeightsSource(server.put("/w/wrongsize.pth", good), "wrongsize.pth", None, len(good) + 10, "wrongsize"))
    srcs.append(WeightsSource(server.put("/w/wrongsha.pth", good), "wrongsha.pth", "ab" * 32, len(good), "wrongsha"))
    srcs.append(WeightsSource(server.put("/w/unknown.pth", good), "unknown.pth", None, None, "unknown"))
    nc_data = _torch_bytes(_state(6))
    nc_src = WeightsSource(server.put("/w/nc.pth", nc_data), "nc.pth", hashlib.sha256(nc_data).hexdigest(), len(nc_data))

    cls = type("TinyPub", (_TinyNet,), {"published": _card(srcs)})
    nc_cls = type("TinyPubNC", (_TinyNet,), {"published": _card([nc_src], commercial=False)})
    register_detector(FAMILY, "tiny published family (tests)", patch=32)(cls)
    register_detector(NC_FAMILY, "tiny non-commercial published family (tests)", patch=32)(nc_cls)
    yield {"files": files, "sources": {s.variant: s for s in srcs}, "nc": nc_src}
    # the Registry has no verb to remove an entry (nothing but tests needs one)
    DETECTORS._entries.pop(FAMILY, None)
    DETECTORS._entries.pop(NC_FAMILY, None)


def _fetch(*args: str):
    return runner.invoke(app, ["detectors", "fetch", *args])


def _downloads_left(home: Path) -> list[Path]:
    """Files left in the downloads folder, besides the (empty) lock files."""
    return [p for p in (home / "downloads").rglob("*") if p.is_file() and p.suffix != ".lock"]


def _nothing_installed(home: Path) -> bool:
    d = home / "detectors"
    return not d.exists() or not [p for p in d.iterdir() if (p / "config.json").exists()]


@pytest.mark.parametrize("variant,seed", [("raw", 0), ("model", 1), ("module", 2), ("st", 7)])
def test_fetch_published_layouts_end_to_end(home, published, server, variant, seed):
    src = published["sources"][variant]
    r = _fetch(FAMILY, "--variant", variant)
    assert r.exit_code == 0, r.output
    assert src.sha256 in r.output and str(src.size) in r.output  # printed
    name = FAMILY if variant == "raw" else f"{FAMILY}-{variant}"
    folder = home / "detectors" / name
    assert sorted(p.name for p in folder.iterdir()) == ["card.json", "config.json", "model.safetensors"]
    card = json.loads((folder / "card.json").read_text())
    assert card["source"]["sha256"] == src.sha256 and card["source"]["size"] == src.size
    assert card["source"]["url"] == src.url and card["source"]["sha256_matches_card"] is True
    assert card["licence"] == "MIT" and card["published"]["claimed_accuracy"].startswith("99.9")
    # the installed weights are the published ones, found by name
    det = load_detector(name, device="cpu")
    want = _state(seed)
    got = det.net.state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert det.name == name and det.family == FAMILY
    # the downloaded file is not kept (the artifact holds the weights), no .part left
    assert not _downloads_left(home)


def test_fetch_unknown_sha_recorded_and_json(home, published):
    r = _fetch(FAMILY, "--variant", "unknown", "--json")
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)
    data = published["files"]["raw"][0]
    assert rec["sha256"] == hashlib.sha256(data).hexdigest() and rec["size"] == len(data)
    card = json.loads((Path(rec["path"]) / "card.json").read_text())
    assert card["source"]["sha256"] == rec["sha256"] and card["source"]["sha256_matches_card"] is None


def test_truncated_download_then_rerun_resumes(home, published, server):
    src = published["sources"]["truncated"]
    r = _fetch(FAMILY, "--variant", "truncated")
    assert r.exit_code == 1, r.output
    assert "incomplete" in r.output and "resume" in r.output
    assert _nothing_installed(home)
    parts = list((home / "downloads").rglob("*.part"))
    assert len(parts) == 1 and parts[0].stat().st_size == src.size // 2
    r = _fetch(FAMILY, "--variant", "truncated", "--json")
    assert r.exit_code == 0, r.output
    assert server.requests[-1] == ("/w/truncated.pth", f"bytes={src.size // 2}-")  # asked for the rest only
    rec = json.loads(r.stdout)
    assert rec["resumed_from"] == src.size // 2 and rec["sha256"] == src.sha256
    assert "resumed from byte" in r.output
    det = load_detector(f"{FAMILY}-truncated", device="cpu")
    assert torch.equal(det.net.state_dict()["conv.weight"], _state(3)["conv.weight"])


def test_a_second_fetch_of_the_same_file_waits_its_turn(home, published):
    import fcntl

    assert _fetch(FAMILY, "--variant", "truncated").exit_code == 1
    (lock,) = list((home / "downloads").rglob("*.lock"))
    with open(lock) as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # another process fetching it
        r = _fetch(FAMILY, "--variant", "truncated")
        assert r.exit_code == 1 and "another fetch of this file is running" in r.output
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    assert _fetch(FAMILY, "--variant", "truncated").exit_code == 0


def test_server_ignoring_range_restarts_cleanly(home, published, server):
    src = published["sources"]["truncated"]
    assert _fetch(FAMILY, "--variant", "truncated").exit_code == 1
    server.behaviour["/w/truncated.pth"] = "no_range"  # answers 200 with the whole file
    r = _fetch(FAMILY, "--variant", "truncated", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["sha256"] == src.sha256


def test_part_longer_than_the_file_on_the_server_starts_over(home, published, server):
    data = published["files"]["raw"][0]
    big = _torch_bytes(_state(8, width=64))
    assert len(big) // 2 > len(data)
    server.files["/w/unknown.pth"] = big
    server.behaviour["/w/unknown.pth"] = "truncate_once"
    assert _fetch(FAMILY, "--variant", "unknown").exit_code == 1  # leaves half of the big file
    server.files["/w/unknown.pth"] = data  # the file changed upstream, now shorter than our part
    r = _fetch(FAMILY, "--variant", "unknown", "--json")
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)
    assert rec["sha256"] == hashlib.sha256(data).hexdigest() and rec["resumed_from"] == 0


def test_wrong_size_refused(home, published):
    r = _fetch(FAMILY, "--variant", "wrongsize")
    assert r.exit_code == 1
    assert "bytes" in r.output and "not the published file" in r.output
    assert _nothing_installed(home)
    assert not _downloads_left(home)


def test_wrong_sha256_refused(home, published):
    r = _fetch(FAMILY, "--variant", "wrongsha")
    assert r.exit_code == 1
    assert "sha256" in r.output and "ab" * 32 in r.output
    assert _nothing_installed(home)
    assert not _downloads_left(home)  # not resumed into later


def test_pickle_with_code_is_refused(home, published, tmp_path):
    marker = tmp_path / "PWNED"
    r = _fetch(FAMILY, "--variant", "evil")
    assert r.exit_code == 1
    assert "refused" in r.output and "exec" in r.output and "nothing installed" in r.output
    assert not marker.exists()
    assert _nothing_installed(home)
    assert not _downloads_left(home)
    # the same from a local file
    evil = tmp_path / "evil.pth"
    evil.write_bytes(published["files"]["evil"][0])
    r = _fetch(FAMILY, "--from", str(evil), "--variant", "unknown")  # a variant whose card has no size or sha256
    assert r.exit_code == 1 and "refused" in r.output
    assert not marker.exists() and _nothing_installed(home)


def test_stalled_server_times_out_clearly(home, published, monkeypatch):
    monkeypatch.setenv("GENVIS_TRUST_FETCH_TIMEOUT", "0.5")
    r = _fetch(FAMILY, "--variant", "stall")
    assert r.exit_code == 1
    assert "stalled" in r.output and "0.5s" in r.output
    assert _nothing_installed(home)
    r = _fetch(FAMILY, "--variant", "stall", "--timeout", "0.3")
    assert r.exit_code == 1 and "0.3s" in r.output


def test_non_commercial_licence_needs_acceptance(home, published, server):
    n = len(server.requests)
    r = _fetch(NC_FAMILY)
    assert r.exit_code == 2
    assert "CC-BY-NC-4.0" in r.output and "does not allow commercial use" in r.output and "--accept-licence" in r.output
    assert len(server.requests) == n  # nothing downloaded
    assert _nothing_installed(home)
    r = _fetch(NC_FAMILY, "--accept-licence")
    assert r.exit_code == 0, r.output
    card = json.loads((home / "detectors" / NC_FAMILY / "card.json").read_text())
    assert card["licence_accepted"] is True and card["commercial_use"] is False


def test_from_file_no_network_and_out(home, published, server, tmp_path):
    f = tmp_path / "mine.pth"
    f.write_bytes(published["files"]["model"][0])
    n = len(server.requests)
    out = tmp_path / "art"
    r = _fetch(FAMILY, "--from", str(f))  # checked against the default variant's size and sha256
    assert r.exit_code == 1 and "not the published file" in r.output and "detectors import" in r.output
    r = _fetch(FAMILY, "--from", str(f), "--variant", "model", "--out", str(out), "--json")
    assert r.exit_code == 0, r.output
    assert len(server.requests) == n
    rec = json.loads(r.stdout)
    assert rec["path"] == str(out) and rec["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()
    assert json.loads((out / "card.json").read_text())["source"]["file"] == str(f.resolve())
    assert _nothing_installed(home)
    det = load_detector(str(out), device="cpu")
    assert torch.equal(det.net.state_dict()["fc.weight"], _state(1)["fc.weight"])


def test_out_never_replaces_a_folder_of_something_else(home, published, tmp_path):
    precious = tmp_path / "documents"
    precious.mkdir()
    (precious / "thesis.txt").write_text("years of work")
    r = _fetch(FAMILY, "--variant", "raw", "--out", str(precious))
    assert r.exit_code == 2 and "not a detector artifact folder" in r.output
    assert (precious / "thesis.txt").read_text() == "years of work" and sorted(p.name for p in precious.iterdir()) == ["thesis.txt"]


def test_refetch_replaces_install(home, published, server):
    assert _fetch(FAMILY, "--variant", "raw").exit_code == 0
    first = (home / "detectors" / FAMILY / "model.safetensors").read_bytes()
    new = _torch_bytes(_state(9))
    server.files["/w/unknown.pth"] = new
    r = _fetch(FAMILY, "--variant", "unknown", "--out", str(home / "detectors" / FAMILY))
    assert r.exit_code == 0, r.output
    assert (home / "detectors" / FAMILY / "model.safetensors").read_bytes() != first
    assert sorted(p.name for p in (home / "detectors").iterdir()) == [FAMILY]  # no temporary folders left


def test_missing_requirements_stop_before_the_download(home, published, server, monkeypatch):
    import dataclasses

    cls = DETECTORS.get(FAMILY).cls
    monkeypatch.setattr(cls, "published", dataclasses.replace(cls.published, requires=["torch", "no-such-package-xyz>=1"]))
    n = len(server.requests)
    r = _fetch(FAMILY)
    assert r.exit_code == 2 and "pip install no-such-package-xyz>=1" in r.output and "torch" not in r.output.split("needs")[1]
    assert len(server.requests) == n and _nothing_installed(home)


def test_unknown_names_are_usage_errors(home, published):
    assert _fetch("no-such-family").exit_code == 2
    r = _fetch(FAMILY, "--variant", "nope")
    assert r.exit_code == 2 and "raw" in r.output
    r = _fetch("cnn")
    assert r.exit_code == 2 and "toolkit's own" in r.output


# -- npr: the real family, from a file and from a test-local card

def _npr_state() -> dict[str, torch.Tensor]:
    from genvis_trust.detectors.npr import NPRNet

    torch.manual_seed(0)
    return NPRNet(width=8, blocks=(1, 1)).state_dict()


def test_npr_from_file_then_scan_by_name(home, tmp_path):
    from genvis_trust.io import encode_image

    f = tmp_path / "NPR.pth"
    torch.save(_npr_state(), f)
    r = _fetch("npr", "--from", str(f))  # NPR's repository states no licence: not commercial
    assert r.exit_code == 2 and "--accept-licence" in r.output
    r = _fetch("npr", "--from", str(f), "--accept-licence")
    assert r.exit_code == 0, r.output
    assert hashlib.sha256(f.read_bytes()).hexdigest() in r.output
    det = load_detector("npr", device="cpu")
    assert det.family == "npr" and det.net_config["width"] == 8
    img = tmp_path / "x.png"
    img.write_bytes(encode_image(np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8), "PNG"))
    r = runner.invoke(app, ["scan", "--detector", "npr", "--no-provenance", "--json", str(img)])
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout.strip().splitlines()[-1])
    assert rec["detector"]["detector"] == "npr"
    want = det.score(np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)).probability
    assert abs(rec["detector"]["probability"] - want) < 1e-5


def test_npr_with_a_test_local_card(home, server, monkeypatch):
    from genvis_trust.detectors.npr import NPRNet

    data = _torch_bytes({f"module.{k}": v for k, v in _npr_state().items()})
    url = server.put("/npr/NPR.pth", data)
    monkeypatch.setattr(NPRNet, "published", _card([WeightsSource(url, "NPR.pth", hashlib.sha256(data).hexdigest(), len(data))]),
                        raising=False)
    r = _fetch("npr", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["sha256"] == hashlib.sha256(data).hexdigest()
    assert "npr" in {n for n in __import__("genvis_trust.detectors.installed", fromlist=["x"]).list_installed()}


def test_load_detector_error_lists_installed(home, published):
    from genvis_trust.artifacts import ArtifactError

    assert _fetch(FAMILY, "--variant", "raw").exit_code == 0
    with pytest.raises(ArtifactError, match=f"installed: {FAMILY}"):
        load_detector("nothing-by-this-name", device="cpu")


# -- detectors list

def test_list_shows_origin_licence_fidelity_and_claim(home, published, monkeypatch, tmp_path):
    from genvis_trust.detectors import catalogue

    monkeypatch.setattr(catalogue, "FIDELITY_FILES", [tmp_path / "none.json"])
    assert _fetch(FAMILY, "--variant", "raw").exit_code == 0
    r = runner.invoke(app, ["detectors", "list", "--json"])
    assert r.exit_code == 0, r.output
    fams = json.loads(r.stdout)["families"]
    row = fams[FAMILY]
    assert row["origin"] == "published" and row["installed"] == [FAMILY]
    assert row["licence"] == "MIT" and row["commercial_use"] is True
    assert row["claimed_accuracy"] == {"claim": "99.9 AP on TinyTest (the publisher's figure)", "by": "the publisher"}
    assert row["fidelity"]["status"] == "not measured"
    assert fams[NC_FAMILY]["commercial_use"] is False and fams[NC_FAMILY]["installed"] == []
    assert fams["cnn"]["origin"] == "toolkit" and fams["cnn"]["claimed_accuracy"] is None
    assert "default" in fams["stack"]["bundled"]
    # a measurement, when the fidelity file has one
    fid = tmp_path / "published-fidelity.json"
    fid.write_text(json.dumps({"families": {FAMILY: {"max_abs_logit_diff": 3.2e-6, "reference_commit": "0" * 40}}}))
    monkeypatch.setattr(catalogue, "FIDELITY_FILES", [fid])
    r = runner.invoke(app, ["detectors", "list", "--json"])
    f = json.loads(r.stdout)["families"][FAMILY]["fidelity"]
    assert f["status"] == "measured" and f["max_abs_logit_diff"] == 3.2e-6 and f["within_target"] is True
    assert f["commit_matches_card"] is True
    r = runner.invoke(app, ["detectors", "list"])
    assert r.exit_code == 0
    assert "publisher" in r.output and "non-commercial" in r.output and "3.2e-06" in r.output and "not measured" not in r.output.split(FAMILY)[1].split("\n")[0]


def test_packaged_fidelity_copy_matches_the_benchmark():
    """The package ships a copy of the fidelity results (an installed wheel has no benchmarks/):
    when both exist they must agree."""
    from genvis_trust.detectors import catalogue

    packaged, bench = catalogue.FIDELITY_FILES
    if not bench.is_file():
        pytest.skip("no benchmarks/results/published-fidelity.json in this checkout yet")
    assert packaged.is_file(), f"copy {bench} to {packaged}"
    assert json.loads(packaged.read_text()) == json.loads(bench.read_text())
