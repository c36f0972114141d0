"""The Ray Data engine gives the same records as the local audit (local Ray, CPU, small)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the ray extra is not installed")

from genvis_trust.audit import run_audit  # noqa: E402
from genvis_trust.detectors import Detector  # noqa: E402
from genvis_trust.io import encode_image  # noqa: E402
from genvis_trust.ray_engine import run_audit_ray  # noqa: E402


def test_ray_audit_matches_local(tmp_path):
    import torch

    torch.manual_seed(0)
    Detector.create("cnn", device="cpu").save(tmp_path / "det", card={"name": "t"})
    root = tmp_path / "data"
    (root / "a").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(6):
        (root / "a" / f"{i}.png").write_bytes(encode_image(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)))
    (root / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    os.symlink("a/0.png", root / "link.png")  # recorded under its own name by both engines
    os.symlink("link_loop", root / "link_loop")
    kw = {"detector": str(tmp_path / "det"), "device": "cpu", "provenance": False, "check_stability": False}
    local = run_audit(root, tmp_path / "local", scanner_kwargs=kw)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        dist = run_audit_ray(root, tmp_path / "ray", scanner_kwargs=kw, actors=2, batch_size=3)
        # --include/--exclude: the same walk as the local engine's
        flt = {"include": ["a/*", "*.jpg"], "exclude": ["a/[45].png"]}
        dist_f = run_audit_ray(root, tmp_path / "ray-f", scanner_kwargs=kw, actors=2, batch_size=3, **flt)
    finally:
        ray.shutdown()
    assert dist["records"] == local["records"] == 9
    assert dist["verdicts"] == local["verdicts"] and dist["error_codes"] == {"truncated": 1, "unreadable": 1}

    def recs(d):
        rows = [json.loads(x) for x in (d / "results.jsonl").read_text().splitlines()]
        return sorted((r["input"], r["verdict"], round((r["detector"] or {}).get("probability", -1), 4), str(r.get("link")))
                      for r in rows)

    assert recs(tmp_path / "ray") == recs(tmp_path / "local")

    local_f = run_audit(root, tmp_path / "local-f", scanner_kwargs=kw, **flt)
    assert recs(tmp_path / "ray-f") == recs(tmp_path / "local-f")
    assert sorted(r[0] for r in recs(tmp_path / "ray-f")) == ["a/0.png", "a/1.png", "a/2.png", "a/3.png", "bad.jpg"]
    assert dist_f["not_recorded"]["excluded"] == local_f["not_recorded"]["excluded"] > 0
