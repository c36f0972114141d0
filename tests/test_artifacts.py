"""One artifact reader/writer for every kind: config.json + model.safetensors + card.json."""

from __future__ import annotations

import json

import pytest
import torch

from genvis_trust.artifacts import (
    CARD,
    CONFIG,
    WEIGHTS,
    ArtifactError,
    load_artifact,
    read_config,
    save_artifact,
)


def _save(path, card=None, w=1.0):
    return save_artifact(path, kind="detector", family="demo", config={"width": 4},
                         tensors={"a": torch.full((3,), w), "b": torch.zeros(2)}, card=card, version=2)


def test_same_weights_same_sha_and_stale_card_fields_replaced(tmp_path):
    sha = _save(tmp_path / "a", card={"name": "x"})
    old_card = json.loads((tmp_path / "a" / CARD).read_text())
    # re-saved with the loaded card (as Detector.save does after fine-tuning): the hash is fresh
    sha2 = _save(tmp_path / "b", card={**old_card, "checkpoint_sha256": "00" * 32}, w=2.0)
    assert sha2 != sha and _save(tmp_path / "c", w=2.0) == sha2
    art = load_artifact(tmp_path / "b", kind="detector", family="demo", max_version=2)
    assert art.sha256 == sha2 and art.card["weights_sha256"] == sha2 and "checkpoint_sha256" not in art.card
    assert art.family_version == 2 and art.config == {"width": 4} and art.card["name"] == "x"


def test_kind_family_version_and_tampering_refused(tmp_path):
    _save(tmp_path)
    with pytest.raises(ArtifactError, match="expected a generator"):
        load_artifact(tmp_path, kind="generator")
    with pytest.raises(ArtifactError, match="expected 'other'"):
        load_artifact(tmp_path, kind="detector", family="other")
    with pytest.raises(ArtifactError, match="newer than this toolkit"):
        load_artifact(tmp_path, kind="detector", max_version=1)
    with pytest.raises(ArtifactError, match="older than this toolkit"):
        load_artifact(tmp_path, kind="detector", min_version=3)
    data = bytearray((tmp_path / WEIGHTS).read_bytes())
    data[-1] ^= 1
    (tmp_path / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="differs from the card"):
        load_artifact(tmp_path, kind="detector")


def test_earlier_generator_layout_is_read_as_the_kind_asked_for(tmp_path):
    _save(tmp_path, card={"checkpoint_sha256": None})
    cfg = json.loads((tmp_path / CONFIG).read_text())
    (tmp_path / CONFIG).write_text(json.dumps({"family": "demo", "version": 2, "config": cfg["config"],
                                               "toolkit_version": "0.1.0"}))
    assert read_config(tmp_path, "generator")["kind"] == "generator"
    art = load_artifact(tmp_path, kind="generator", family="demo", min_version=2, max_version=2)
    assert art.tensors["a"].tolist() == [1.0, 1.0, 1.0]
