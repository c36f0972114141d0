"""Stacking: several families scored on the same tiles, combined by a fitted linear layer.

The bundled default combines the learned ``npr`` detector (trained on photographs vs their
aligned reconstructions) with the zero-shot ``zed`` coding-cost statistic (trained on real
photographs only). Each member maps a tile to a logit; the stack's logit is
``weights . member_logits + bias``, fitted as a logistic regression on *image-level* member
logits of validation images (``scripts/stack_realworld.py``). Because tile logits are averaged
per image, the image-level stack logit is the same linear combination of the members'
image-level logits that the regression saw.

A member with a smaller input than the stack's tiles (``zed`` at 64 px) reads each tile as a
grid of its own sub-tiles and averages them, as it would score the same area alone.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .registry import build_net, get_family, register_detector

SUB_BATCH = 16


def _chunked(net: nn.Module, sub: torch.Tensor) -> torch.Tensor:
    """``net`` on a member's sub-tiles, at most :data:`SUB_BATCH` per call when no gradient is
    needed. A 128 px tile is four 64 px sub-tiles, so a batch of 16 tiles gives the zero-shot
    member 64 inputs whose activations (64 x 32 x 64 x 64 floats, 34 MB a layer) no longer fit
    the caches: the same sub-tiles 16 at a time ran the whole default network 1.2x faster on 2
    cores (0.56 vs 0.69 s per 64 tiles: ``benchmarks/sub_batch.py``,
    ``benchmarks/results/sub-batch.json``), with identical logits (each sub-tile's result does
    not depend on its batch-mates; ``tests/test_detectors_stack.py`` checks it). Training, tracing and GPUs see one call."""
    if (torch.is_grad_enabled() or torch.jit.is_tracing() or torch.jit.is_scripting() or len(sub) <= SUB_BATCH
            or sub.device.type != "cpu"):  # a GPU wants its large batches whole
        return net(sub)
    return torch.cat([net(sub[i : i + SUB_BATCH]) for i in range(0, len(sub), SUB_BATCH)])


@register_detector("stack", "several families on the same tiles, combined by a fitted logistic regression (the bundled default)", patch=128)
class StackNet(nn.Module):
    def __init__(self, members: list[dict[str, Any]] | None = None, weights: list[float] | None = None, bias: float = 0.0):
        super().__init__()
        members = members or [{"family": "npr", "config": {}}, {"family": "zed", "config": {}}]
        if any(m["family"] == "stack" for m in members):
            raise ValueError("a stack cannot contain a stack")
        self.member_specs = [{"family": m["family"], "config": dict(m.get("config") or {}), "patch": int(m.get("patch") or get_family(m["family"]).patch)} for m in members]
        self.members = nn.ModuleList(build_net(m["family"], **m["config"]) for m in self.member_specs)
        w = weights if weights is not None else [1.0] * len(members)
        if len(w) != len(members):
            raise ValueError(f"{len(w)} weights for {len(members)} members")
        self.register_buffer("weights", torch.tensor(w, dtype=torch.float32))
        self.register_buffer("bias", torch.tensor(float(bias)))

    def member_logits(self, x: torch.Tensor) -> torch.Tensor:
        """``N x M`` logits, one column per member."""
        cols = []
        for spec, net in zip(self.member_specs, self.members, strict=True):
            p, (h, w) = spec["patch"], x.shape[-2:]
            if p < h and h % p == 0 and w % p == 0:  # sub-tiles, averaged per tile
                n, c = x.shape[:2]
                hi, wi = h // p, w // p
                # explicit sizes, no -1: torch.onnx's TorchScript exporter wrote the -1 of
                # unfold(...).reshape(-1, c, p, p) and view(n, -1) as 3 (ONNX Runtime then
                # rejected the graph); same elements, same order, identical logits
                sub = x.reshape(n, c, hi, p, wi, p).permute(0, 2, 4, 1, 3, 5).reshape(n * hi * wi, c, p, p)
                cols.append(_chunked(net, sub).reshape(n, hi * wi).mean(1))
            else:
                cols.append(net(x))
        return torch.stack(cols, 1)

    def forward_with_members(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(stack logits, ``N x M`` member logits) of one pass: what scoring runs, so that a
        domain head (its own combination of the members) needs no second pass."""
        m = self.member_logits(x)
        return m @ self.weights + self.bias, m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_members(x)[0]


__all__ = ["StackNet"]
