"""The scan service, tested with a real uvicorn server on 127.0.0.1 (a free port, a
background thread, stopped by the fixture). Every request has a timeout; the file runs in
well under a minute on two cores."""

from __future__ import annotations

import asyncio
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import contextmanager

import numpy as np
import pytest

from genvis_trust.cli.serve import _missing_serve_extra, serve_cmd
from genvis_trust.detectors import Detector
from genvis_trust.io import encode_image
from genvis_trust.scan import SCAN_SCHEMA_VERSION, VERDICTS, Scanner
from genvis_trust.service import create_app

if _missing_serve_extra():
    pytest.skip(f"the serve extra is not installed ({_missing_serve_extra()})", allow_module_level=True)
httpx = pytest.importorskip("httpx")
import uvicorn  # noqa: E402

TOKEN = "t0ken-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_UPLOAD = 256 * 1024
MAX_FILES = 4
MAX_PIXELS = 128 * 128
TIMEOUT = httpx.Timeout(30.0)
SCANNER = dict(device="cpu", check_stability=False, workers=2)


def png(size: int = 64, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return encode_image(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), "PNG")


@contextmanager
def running(app):
    """Serve ``app`` on a free loopback port in a thread; stop it on exit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # the OS picks the port: no race with other tests
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
        assert not thread.is_alive(), "server did not stop"


@pytest.fixture(scope="module")
def detector_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("detector")
    sha = Detector.create("cnn", device="cpu").save(d, card={"name": "t"})
    return d, sha


@pytest.fixture(scope="module")
def url(detector_dir):
    """Token, small limits, provenance on (C2PA, metadata, watermark checks run per upload)."""
    app = create_app(
        str(detector_dir[0]), max_upload_bytes=MAX_UPLOAD, max_files=MAX_FILES, max_pixels=MAX_PIXELS,
        max_concurrency=2, queue_timeout_s=20, token=TOKEN, provenance=True, **SCANNER,
    )
    with running(app) as u:
        yield u


@pytest.fixture(scope="module")
def busy_url(detector_dir):
    """One slot and an impatient queue: the concurrency limit shows."""
    app = create_app(str(detector_dir[0]), max_concurrency=1, queue_timeout_s=0.3, provenance=False, **SCANNER)
    with running(app) as u:
        yield u


def post(base, files, headers=AUTH, **kw):
    return httpx.post(f"{base}/scan", files=[("files", f) for f in files], headers=headers, timeout=TIMEOUT, **kw)


def multipart_body(files, boundary="genvis-test-boundary") -> tuple[bytes, bytes, dict]:
    """A multipart body split in two (head, tail) for uploads streamed without a length."""
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n"
        for name, data in files
    ]
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body[:100], body[100:], {"content-type": f"multipart/form-data; boundary={boundary}"}


def test_health_names_the_model_and_limits(url, detector_dir):
    r = httpx.get(f"{url}/health", timeout=TIMEOUT)  # open without the token
    assert r.status_code == 200
    h = r.json()
    assert h["status"] == "ok" and h["schema_version"] == SCAN_SCHEMA_VERSION
    assert h["detector"]["sha256"] == detector_dir[1] and h["detector"]["family"] == "cnn"
    assert h["detector"]["name"] == "t" and h["version"]
    assert h["limits"]["max_upload_bytes"] == MAX_UPLOAD and h["limits"]["max_files"] == MAX_FILES
    assert h["limits"]["max_pixels"] == MAX_PIXELS and h["limits"]["max_concurrency"] == 2
    assert h["auth"] == "bearer" and TOKEN not in r.text
    assert h["provenance"] is True and h["in_flight"] == 0


def test_scan_two_images_keeps_order_and_schema(url, detector_dir):
    a, b = png(96, seed=1), png(64, seed=2)
    r = post(url, [("b.png", b, "image/png"), ("a.png", a, "image/png")])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["schema_version"] == SCAN_SCHEMA_VERSION
    res = body["results"]
    assert [x["input"] for x in res] == ["b.png", "a.png"]
    assert [x["image"]["width"] for x in res] == [64, 96]
    # The same record `genvis-trust scan --json` writes, provenance signals included.
    local = Scanner(str(detector_dir[0]), provenance=True, max_pixels=MAX_PIXELS, **SCANNER)
    try:
        expected = [x.to_dict() for x in local.scan([b, a], names=["b.png", "a.png"])]
    finally:
        local.close()
    for got, exp in zip(res, expected, strict=True):
        assert set(got) == set(exp) and got["schema_version"] == SCAN_SCHEMA_VERSION
        assert got["verdict"] in VERDICTS and got["error"] is None
        if abs(exp["detector"]["probability"] - 0.5) > 1e-3:  # not on the threshold (untrained net)
            assert got["verdict"] == exp["verdict"]
        assert [e["kind"] for e in got["evidence"]] == [e["kind"] for e in exp["evidence"]]
        assert {"c2pa", "metadata", "watermark", "detector"} <= {e["kind"] for e in got["evidence"]}
        assert got["image"]["sha256"] == exp["image"]["sha256"]
        assert got["detector"]["probability"] == pytest.approx(exp["detector"]["probability"], abs=1e-4)


def test_full_adds_the_provenance_report(url):
    r = post(url, [("a.png", png(), "image/png")], params={"full": "true"})
    assert r.status_code == 200
    assert r.json()["results"][0]["provenance"]["input"]["sha256"]


def test_bad_files_are_records_with_codes_not_failed_requests(url):
    good = png(64)
    files = [
        ("text.jpg", b"this is not an image", "image/jpeg"),
        ("cut.png", good[: len(good) // 2], "image/png"),
        ("empty.png", b"", "image/png"),
        ("big.png", png(200), "image/png"),  # 40,000 pixels > MAX_PIXELS
    ]
    r = post(url, files)
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert [x["input"] for x in res] == ["text.jpg", "cut.png", "empty.png", "big.png"]
    assert all(x["verdict"] == "error" and x["error"]["code"] for x in res)
    codes = [x["error"]["code"] for x in res]
    assert codes[0] == "not_an_image" and codes[1] in ("truncated", "corrupt")
    assert codes[2] == "empty" and codes[3] == "too_large"


def test_oversize_upload_is_413(url):
    big = np.random.default_rng(0).bytes(MAX_UPLOAD + 1)
    r = post(url, [("big.png", big, "image/png")])  # refused from Content-Length
    assert r.status_code == 413
    assert str(MAX_UPLOAD) in r.json()["detail"]
    # Without a Content-Length the body is counted as it arrives.
    head, tail, headers = multipart_body([("big.png", big)])
    r = httpx.post(f"{url}/scan", content=iter([head, tail]), headers={**AUTH, **headers}, timeout=TIMEOUT)
    assert r.status_code == 413 and "more than" in r.json()["detail"]


def test_too_many_files_is_refused_clearly(url):
    r = post(url, [(f"{i}.png", png(32), "image/png") for i in range(MAX_FILES + 1)])
    assert r.status_code == 413
    assert f"at most {MAX_FILES}" in r.json()["detail"]


def test_malformed_requests_get_json_details(url):
    r = httpx.post(f"{url}/scan", json={"x": 1}, headers=AUTH, timeout=TIMEOUT)
    assert r.status_code == 415 and "multipart" in r.json()["detail"]
    r = httpx.post(f"{url}/scan", files=[("image", ("a.png", png(), "image/png"))], headers=AUTH, timeout=TIMEOUT)
    assert r.status_code == 400 and "'files'" in r.json()["detail"]
    r = httpx.post(f"{url}/scan", data={"files": "abc"}, files=[("other", ("a", b"", "x/y"))], headers=AUTH, timeout=TIMEOUT)
    assert r.status_code == 400 and "detail" in r.json()
    r = httpx.get(f"{url}/nope", timeout=TIMEOUT)
    assert r.status_code == 404 and "detail" in r.json()


def test_token_is_enforced(url):
    r = post(url, [("a.png", png(), "image/png")], headers={})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert "missing" in r.json()["detail"]
    r = post(url, [("a.png", png(), "image/png")], headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and "wrong" in r.json()["detail"]


def _slow_client(port: int, body: bytes, ctype: str, rate_bps: int = 20) -> dict:
    """Send a request body at ``rate_bps`` bytes/s until the server answers; the answer's
    status and how long it took."""
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(f"POST /scan HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\n"
                  f"Content-Length: {len(body)}\r\n\r\n".encode())
        for i in range(0, len(body), rate_bps):
            try:
                s.sendall(body[i:i + rate_bps])
            except OSError:  # the server closed the connection: its answer is waiting
                break
            if select.select([s], [], [], 1.0)[0]:  # one chunk a second, or the answer
                break
            if time.monotonic() - t0 > 30:
                return {"status": None, "seconds": time.monotonic() - t0}
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < int(
                re.search(rb"content-length: *(\d+)", answer, re.I)[1]):
            more = s.recv(65536)
            if not more:
                break
            answer += more
        answer = answer.decode("latin-1")
    return {"status": int(answer.split()[1]) if answer else None, "seconds": time.monotonic() - t0, "answer": answer}


def test_slow_uploaders_do_not_starve_the_service(detector_dir):
    """Four clients sending 20 bytes/s once held all four scan slots, so normal requests
    got 503 for a minute. Now a slot is taken only once a body is in, and a client below the
    minimum rate gets 408 as soon as it falls short."""
    app = create_app(str(detector_dir[0]), max_concurrency=4, queue_timeout_s=1, provenance=False,
                     min_upload_rate=1024, upload_grace_s=1.0, **SCANNER)
    head, tail, headers = multipart_body([("slow.png", png())])
    with running(app) as base:
        port = int(base.rsplit(":", 1)[1])
        slow: list[dict] = []
        threads = [threading.Thread(target=lambda: slow.append(_slow_client(port, head + tail, headers["content-type"])))
                   for _ in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while (h := httpx.get(f"{base}/health", timeout=TIMEOUT).json())["receiving"] < 4:
            assert time.monotonic() < deadline, f"the slow clients never started sending: {h}"
            time.sleep(0.02)
        assert h["in_flight"] == 0  # receiving holds no scan slot
        t0 = time.monotonic()
        r = post(base, [("normal.png", png(), "image/png")], headers={})
        assert r.status_code == 200 and time.monotonic() - t0 < 10, r.text
        assert r.json()["results"][0]["input"] == "normal.png"
        for t in threads:
            t.join(30)
        assert [x["status"] for x in slow] == [408] * 4, slow
        assert all(x["seconds"] < 8 for x in slow), slow  # cut off near the 1 s grace, not after 60 s
        assert "too slow" in slow[0]["answer"]
        health = httpx.get(f"{base}/health", timeout=TIMEOUT).json()
        assert health["receiving"] == health["in_flight"] == 0


def test_a_full_scan_queue_gets_503_with_retry_after(detector_dir):
    """A long scan (a 4000x4000 image, every provenance check) holds the only slot; the next
    request, its body in, waits 0.05 s for the slot, then gets 503. (The scan must outlast the
    wait: the provenance checks got fast enough that a 2400x2400 image no longer did.)"""
    import cv2

    app = create_app(str(detector_dir[0]), max_concurrency=1, queue_timeout_s=0.05, provenance=True, **SCANNER)
    r = np.random.default_rng(0)
    big = encode_image(cv2.resize(r.integers(0, 256, (16, 16, 3)).astype(np.uint8), (4000, 4000),
                                  interpolation=cv2.INTER_CUBIC), "PNG")
    with running(app) as base:
        slow: dict = {}
        t = threading.Thread(target=lambda: slow.setdefault("r", post(base, [("big.png", big, "image/png")], headers={})))
        t.start()
        try:
            deadline = time.monotonic() + 30
            while httpx.get(f"{base}/health", timeout=TIMEOUT).json()["in_flight"] < 1:
                assert time.monotonic() < deadline and t.is_alive(), "the long scan never took the slot"
                time.sleep(0.02)
            r2 = post(base, [("a.png", png(), "image/png")], headers={})
            assert r2.status_code == 503, r2.text
            assert int(r2.headers["retry-after"]) >= 1 and "busy" in r2.json()["detail"]
        finally:
            t.join(60)
    assert slow["r"].status_code == 200 and slow["r"].json()["results"][0]["input"] == "big.png"


@contextmanager
def paused_upload(base: str):
    """An upload of ``paused.png`` that sends its head, then waits until the block exits;
    yields once the service counts it as being received, then the dict its response lands in."""
    release = threading.Event()
    head, tail, headers = multipart_body([("paused.png", png())])

    def paused_body():
        yield head
        release.wait(20)
        yield tail

    result: dict = {}
    t = threading.Thread(target=lambda: result.setdefault(
        "r", httpx.post(f"{base}/scan", content=paused_body(), headers=headers, timeout=TIMEOUT)))
    t.start()
    try:
        deadline = time.monotonic() + 20
        while httpx.get(f"{base}/health", timeout=TIMEOUT).json()["receiving"] < 1:
            assert time.monotonic() < deadline, "the paused upload never started"
            time.sleep(0.02)
        yield result
    finally:
        release.set()
        t.join(30)


def test_a_paused_upload_that_catches_up_is_scanned(busy_url):
    """A body paused within the grace period is fine; meanwhile the only scan slot is free."""
    with paused_upload(busy_url) as paused:
        r = post(busy_url, [("a.png", png(), "image/png")], headers={})
        assert r.status_code == 200, r.text  # the paused upload holds no scan slot
    assert paused["r"].status_code == 200 and paused["r"].json()["results"][0]["input"] == "paused.png"


def test_too_many_bodies_in_flight_get_503_at_once(detector_dir):
    """Receiving is bounded too (memory): past max_uploads a request is refused at once."""
    app = create_app(str(detector_dir[0]), max_concurrency=1, max_uploads=1, provenance=False, **SCANNER)
    with running(app) as base:
        with paused_upload(base) as paused:
            t0 = time.monotonic()
            r = post(base, [("a.png", png(), "image/png")], headers={})
            assert r.status_code == 503 and "being received" in r.json()["detail"] and time.monotonic() - t0 < 5
            assert int(r.headers["retry-after"]) >= 1
    assert paused["r"].status_code == 200


def test_api_docs_work_offline(url):
    """/docs and /redoc load their scripts and styles from the service, not a CDN."""
    for page in ("/docs", "/redoc"):
        r = httpx.get(f"{url}{page}", timeout=TIMEOUT)
        assert r.status_code == 200
        assets = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", r.text)
        assert assets and all(a.startswith("/") and not a.startswith("//") for a in assets), assets
        for a in assets:
            got = httpx.get(f"{url}{a}", timeout=TIMEOUT)
            assert got.status_code == 200 and len(got.content) > 100, a
    assert httpx.get(f"{url}/openapi.json", timeout=TIMEOUT).json()["paths"]["/scan"]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="no Chromium installed (apt-get install chromium)")
def test_api_docs_render_in_a_browser_without_internet(url):
    """Swagger UI draws the /scan operation from the service's own assets (on a machine that
    reaches no CDN, like the one this was written on, a page that needed one stays blank)."""
    r = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                        "--disable-background-networking", f"--user-data-dir={tempfile.mkdtemp()}",
                        "--virtual-time-budget=8000", "--dump-dom", f"{url}/docs"],
                       capture_output=True, text=True, timeout=120)
    assert "opblock" in r.stdout and "/scan" in r.stdout, r.stderr[-2000:]


async def _concurrent(base: str, n: int, headers: dict) -> tuple[list, float]:
    data = png(64, seed=3)
    async with httpx.AsyncClient(timeout=TIMEOUT, limits=httpx.Limits(max_connections=n)) as client:
        async def one(i):
            files = [("files", (f"u{i}.png", data, "image/png"))]
            return await client.post(f"{base}/scan", files=files, headers=headers)

        t0 = time.perf_counter()
        responses = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(n))), timeout=90)
        return responses, time.perf_counter() - t0


@pytest.mark.parametrize("which", ["patient", "impatient"])
def test_50_concurrent_uploads(which, url, busy_url):
    """50 uploads at once against 2 slots (20 s queue, provenance on) and 1 slot (0.3 s queue):
    each request is scanned (200) or refused by the concurrency limit (503 + Retry-After)."""
    base, headers = (url, AUTH) if which == "patient" else (busy_url, {})
    n = 50
    responses, dt = asyncio.run(_concurrent(base, n, headers))
    status = Counter(r.status_code for r in responses)
    print(f"\n{which}: {n} concurrent uploads in {dt:.2f} s ({n / dt:.1f} requests/s): {dict(status)}")
    assert set(status) <= {200, 503}, {r.status_code: r.text for r in responses}
    assert status[200] > 0
    for i, r in enumerate(responses):
        if r.status_code == 200:
            res = r.json()["results"]
            assert len(res) == 1 and res[0]["input"] == f"u{i}.png" and res[0]["verdict"] != "error"
        else:
            assert int(r.headers["retry-after"]) >= 1
    health = httpx.get(f"{base}/health", timeout=TIMEOUT).json()
    assert health["in_flight"] == 0 and health["waiting"] == 0


def test_cli_help_and_lazy_import(detector_dir, monkeypatch):
    import typer
    from typer.testing import CliRunner

    app = typer.Typer()
    app.command("serve")(serve_cmd)
    app.callback()(lambda: None)
    runner = CliRunner()
    res = runner.invoke(app, ["serve", "--help"], env={"GENVIS_TRUST_TOKEN": "hidden-value", "COLUMNS": "200"})
    assert res.exit_code == 0 and "GENVIS_TRUST_TOKEN" in res.output and "hidden-value" not in res.output
    assert runner.invoke(app, ["serve", "--detector", "/no/such/detector"]).exit_code == 2
    assert runner.invoke(app, ["serve", "--max-files", "0", "--detector", str(detector_dir[0])]).exit_code == 2
    assert _missing_serve_extra() is None
    monkeypatch.setattr("genvis_trust.cli.serve._missing_serve_extra", lambda: "fastapi")
    res = runner.invoke(app, ["serve"])
    assert res.exit_code == 2 and 'pip install "genvis-trust[serve]"' in " ".join(res.output.split())
    # The base CLI and the library never import FastAPI until a server is made.
    code = "import sys, genvis_trust.cli.serve, genvis_trust.service; assert 'fastapi' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_apps_keep_their_own_typed_state(detector_dir):
    from genvis_trust.service import Limits, ServiceState

    a = create_app(str(detector_dir[0]), max_files=3, token="x")
    b = create_app(str(detector_dir[0]), max_files=5, max_concurrency=2)
    sa, sb = a.state.service, b.state.service
    assert isinstance(sa, ServiceState) and isinstance(sa.limits, Limits)
    assert (sa.limits.max_files, sa.token, sa.limits.max_uploads) == (3, "x", 16)
    assert (sb.limits.max_files, sb.token, sb.limits.max_uploads) == (5, None, 8)
    assert sorted(a.openapi()["paths"]) == ["/health", "/scan"]
    with pytest.raises(ValueError, match="max_files must be at least 1"):
        create_app(str(detector_dir[0]), max_files=0)
